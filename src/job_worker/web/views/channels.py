"""Channels (limits, rate windows, running weight, utilisation, backoffs, fair keys;
managers edit limits, lift backoffs and weigh fair keys) and workers."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...monitoring import stats
from ...queue import config
from ...queue.models.limit import DEPTH_POLICIES as _POLICIES
from ...rates import parse_rates, rates_text
from .. import auth
from ..pages import Ctx, flash, read_form, redirect, render, run, to_float, to_int

DEPTH_POLICIES = tuple(dict(_POLICIES))
#: fair keys with work shown per channel on the page ("+" when there are more)
FAIR_KEYS_SHOWN = 20


async def channel_list(request: Request) -> Response:
    if request.method == "POST":
        return await _set_limit(request)

    def work(ctx: Ctx) -> dict[str, Any]:
        default_limit = config.read(ctx.cr).default_limit
        rows = stats.channel_rows(ctx.cr, default_limit)
        ctx.cr.execute("SELECT DISTINCT channel FROM queue_fair_key")
        weighted = {name for (name,) in ctx.cr.fetchall()}
        # a channel with pending jobs that have a fair key, or with weighted keys
        fair = [
            stats.fair_keys(ctx.cr, name, FAIR_KEYS_SHOWN)
            for name in sorted(weighted | {r["name"] for r in rows if r["pending"]})
            if name in weighted or stats.keyed(ctx.cr, name)
        ]
        return {
            "user": ctx.user,
            "channels": rows,
            "fair": fair,
            "fair_pending_cap": stats.FAIR_PENDING_CAP,
            "default_limit": default_limit,
            "depth_policies": DEPTH_POLICIES,
        }

    return render(request, "channels.html", await run(request, work))


async def _set_limit(request: Request) -> Response:
    form = await read_form(request)
    channel = str(form.get("name", "")).strip()

    def work(ctx: Ctx) -> tuple[bool, str]:
        auth.require_manager(ctx.user)
        try:
            limit = to_int(str(form.get("limit", "")).strip() or "0", "limit")
            rate = to_float(str(form.get("rate_limit", "")).strip() or "0", "rate limit")
            # a form without the depth fields keeps the channel's bound as it is
            given = str(form.get("max_depth", "")).strip()
            max_depth = to_int(given, "max depth") if given else None
            policy = str(form.get("depth_policy", "")).strip() or None
            # a form without the rates field keeps the channel's windows; empty clears them
            rates = form.get("rates")
            if rates is not None:
                try:
                    rates = rates_text(parse_rates(str(rates)))
                except ValueError as exc:
                    raise ValueError(f"rates: {exc}") from None
            if policy is not None and policy not in DEPTH_POLICIES:
                raise ValueError(
                    f"depth policy must be one of {', '.join(DEPTH_POLICIES)}, got {policy[:40]!r}"
                )
            with ctx.cr.savepoint():
                record = ctx.env["queue.limit"].set_limit(
                    channel, limit, rate, rates=rates, max_depth=max_depth, depth_policy=policy
                )
                max_depth, policy, rates = record.max_depth, record.depth_policy, record.rates
        except ValueError as exc:
            return False, str(exc)
        paused = " (paused)" if limit == 0 else ""
        bound = f", max depth {max_depth} ({policy} when full)" if max_depth else ""
        windows = f", rates {rates}" if rates else ""
        return True, f"channel {channel}: limit {limit}, rate {rate:g}/s{windows}{bound}{paused}"

    ok, message = await run(request, work, write=True)
    flash(request, message, "ok" if ok else "error")
    return redirect("/channels")


async def channel_delete(request: Request) -> Response:
    await read_form(request)
    channel = request.path_params["name"]

    def work(ctx: Ctx) -> tuple[bool, str]:
        auth.require_manager(ctx.user)
        record = ctx.env["queue.limit"].search([("name", "=", channel)])
        if not record:
            return False, f"channel {channel} has no limit"
        record.unlink()
        return True, f"channel {channel}: limit removed, the default limit applies"

    ok, message = await run(request, work, write=True)
    flash(request, message, "ok" if ok else "error")
    return redirect("/channels")


async def channel_lift(request: Request) -> Response:
    """End the backoff a job put on the channel (managers only)."""
    await read_form(request)
    channel = request.path_params["name"]

    def work(ctx: Ctx) -> tuple[bool, str]:
        auth.require_manager(ctx.user)
        if not ctx.env["queue.channel"].lift_backoff(channel):
            return False, f"channel {channel} has no backoff in force: nothing to lift"
        return True, f"channel {channel}: backoff lifted, its jobs start again"

    ok, message = await run(request, work, write=True)
    flash(request, message, "ok" if ok else "error")
    return redirect("/channels")


async def channel_fair(request: Request) -> Response:
    """Give a fair key of the channel a weight: turns per round (managers only; 1 removes
    the key's row)."""
    form = await read_form(request)
    channel = request.path_params["name"]
    key = str(form.get("key", ""))

    def work(ctx: Ctx) -> tuple[bool, str]:
        auth.require_manager(ctx.user)
        try:
            weight = to_int(str(form.get("weight", "")).strip(), "weight", minimum=1)
            with ctx.cr.savepoint():
                ctx.env["queue.fair.key"].set_weight(channel, key, weight)
        except ValueError as exc:
            return False, str(exc)
        turns = "1 turn per round (the default)" if weight == 1 else f"{weight} turns per round"
        return True, f"channel {channel}: fair key {key!r} has {turns}"

    ok, message = await run(request, work, write=True)
    flash(request, message, "ok" if ok else "error")
    return redirect("/channels")


async def worker_list(request: Request) -> Response:
    def work(ctx: Ctx) -> dict[str, Any]:
        stale_seconds = config.read(ctx.cr).stale_seconds
        rows = stats.workers(ctx.cr, ctx.now, stale_seconds)
        return {
            "user": ctx.user,
            "workers": rows,
            "stale_seconds": stale_seconds,
            "alive": sum(1 for row in rows if row["alive"]),
        }

    return render(request, "workers.html", await run(request, work))
