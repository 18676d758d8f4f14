"""Channels (limits, utilisation, backoffs; managers edit limits and lift backoffs) and
workers."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...monitoring import stats
from ...queue import config
from ...queue.models.limit import DEPTH_POLICIES as _POLICIES
from .. import auth
from ..pages import Ctx, flash, read_form, redirect, render, run, to_float, to_int

DEPTH_POLICIES = tuple(dict(_POLICIES))


async def channel_list(request: Request) -> Response:
    if request.method == "POST":
        return await _set_limit(request)

    def work(ctx: Ctx) -> dict[str, Any]:
        default_limit = config.read(ctx.cr).default_limit
        return {
            "user": ctx.user,
            "channels": stats.channel_rows(ctx.cr, default_limit),
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
            if policy is not None and policy not in DEPTH_POLICIES:
                raise ValueError(
                    f"depth policy must be one of {', '.join(DEPTH_POLICIES)}, got {policy[:40]!r}"
                )
            with ctx.cr.savepoint():
                record = ctx.env["queue.limit"].set_limit(
                    channel, limit, rate, max_depth=max_depth, depth_policy=policy
                )
                max_depth, policy = record.max_depth, record.depth_policy
        except ValueError as exc:
            return False, str(exc)
        paused = " (paused)" if limit == 0 else ""
        bound = f", max depth {max_depth} ({policy} when full)" if max_depth else ""
        return True, f"channel {channel}: limit {limit}, rate {rate:g}/s{bound}{paused}"

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
