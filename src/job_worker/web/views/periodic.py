"""Periodic jobs: schedule, next occurrences, last job, lag; managers pause, resume,
run now, add, edit and delete them."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...queue.models.cron import CATCH_UP
from .. import auth
from ..pages import Ctx, flash, path_id, read_form, redirect, render, run, to_float, to_int

#: next occurrences shown per periodic job
UPCOMING = 3

ACTIONS = {
    "pause": "Pause",
    "resume": "Resume",
    "run_now": "Run now",
    "delete": "Delete",
}

#: what the edit form changes, as ``job-worker cron set`` does (call and arguments stay)
EDITABLE = (
    "name",
    "cron",
    "interval",
    "tz",
    "catch_up",
    "max_catch_up",
    "no_overlap",
    "channel",
    "priority",
    "max_retries",
    "timeout",
    "description",
)

_SIGNED = re.compile(r"-?[0-9]{1,19}")


def _row(cron: Any, now: Any) -> dict[str, Any]:
    job = cron.last_job_id
    upcoming = []
    if cron.active and cron.next_at:
        upcoming = [cron.next_at, *cron.schedule().upcoming(cron.next_at, UPCOMING - 1)]
    return {
        "id": cron.id,
        "name": cron.name,
        "call": f"{cron.model_name}.{cron.method_name}",
        "schedule": cron.cron or f"every {cron.interval} s",
        "tz": cron.tz,
        "active": cron.active,
        "catch_up": cron.catch_up,
        "no_overlap": cron.no_overlap,
        "channel": cron.channel,
        "upcoming": upcoming,
        "lag": cron.lag_seconds(now),
        "last_enqueued_at": cron.last_enqueued_at or None,
        "last_job": {"id": job.id, "state": job.state} if job else None,
        "enqueued": cron.enqueued_count,
        "skipped": cron.skipped_count,
        "code_key": cron.code_key or None,
        "edit": _current(cron),
    }


def _current(cron: Any) -> dict[str, Any]:
    """The editable values of ``cron``, an empty one as None."""
    return {key: cron[key] for key in EDITABLE} | {
        "cron": cron.cron or None,
        "interval": cron.interval or None,
        "description": cron.description or None,
        "no_overlap": bool(cron.no_overlap),
    }


def _edited(form: Any) -> dict[str, Any]:
    """The edit form's values, typed; ValueError naming a field that is not a number."""

    def text(key: str) -> str:
        return str(form.get(key, "")).strip()

    priority = text("priority")
    if not _SIGNED.fullmatch(priority):
        raise ValueError(f"priority must be a whole number, got {priority[:40]!r}")
    interval = text("interval")
    return {
        "name": text("name"),
        "cron": text("cron") or None,
        "interval": to_int(interval, "interval", minimum=1) if interval else None,
        "tz": text("tz") or "UTC",
        "catch_up": text("catch_up"),
        "max_catch_up": to_int(text("max_catch_up"), "max_catch_up", minimum=1),
        "no_overlap": bool(form.get("no_overlap")),
        "channel": text("channel"),
        "priority": int(priority),
        "max_retries": to_int(text("max_retries"), "max_retries"),
        "timeout": to_float(text("timeout"), "timeout"),
        "description": text("description") or None,
    }


def _managed(ctx: Ctx, cron_id: int) -> tuple[Any, str]:
    """A periodic job a manager acts on, and how messages name it (an empty recordset
    and "no periodic job" when there is none)."""
    auth.require_manager(ctx.user)
    cron = ctx.env["queue.cron"].browse(cron_id).exists()
    if not cron:
        return cron, f"no periodic job with id {cron_id}"
    return cron, f"periodic job {cron.id} ({cron.name})"


async def _answer(request: Request, work: Any) -> Response:
    """Run a manager's change, say how it went on the page, and go back to it."""
    ok, message = await run(request, work, write=True)
    flash(request, message, "ok" if ok else "error")
    return redirect("/periodic")


async def periodic_list(request: Request) -> Response:
    if request.method == "POST":
        return await _add(request)

    def work(ctx: Ctx) -> dict[str, Any]:
        crons = ctx.env["queue.cron"].search([])
        return {
            "user": ctx.user,
            "crons": [_row(c, ctx.now) for c in crons],
            "catch_up_choices": CATCH_UP,
        }

    return render(request, "periodic.html", await run(request, work))


async def _add(request: Request) -> Response:
    form = await read_form(request)

    def work(ctx: Ctx) -> tuple[bool, str]:
        auth.require_manager(ctx.user)
        values: dict[str, Any] = {
            key: str(form.get(key, "")).strip()
            for key in ("name", "model_name", "method_name", "cron", "tz", "channel")
        }
        values = {k: v for k, v in values.items() if v}
        try:
            interval = str(form.get("interval", "")).strip()
            if interval:
                values["interval"] = to_int(interval, "interval", minimum=1)
            with ctx.cr.savepoint():
                cron = ctx.env["queue.cron"].create(values)
        except (ValueError, TypeError) as exc:
            return False, str(exc)
        return True, f"periodic job {cron.id} ({cron.name}) added"

    return await _answer(request, work)


async def periodic_action(request: Request) -> Response:
    cron_id = path_id(request, "cron_id")
    form = await read_form(request)
    action = str(form.get("action", ""))

    def work(ctx: Ctx) -> tuple[bool, str]:
        cron, label = _managed(ctx, cron_id)
        if not cron:
            return False, label
        try:
            with ctx.cr.savepoint():
                if action in ("pause", "resume"):
                    cron.edit({"active": action == "resume"})
                    return True, f"{label} {action}d"
                if action == "run_now":
                    job = cron.run_now()
                    return True, f"{label}: job {job.id} enqueued now"
                if action == "delete":
                    if cron.code_key:
                        return False, (
                            f"{label} is declared in code by @api.periodic on {cron.code_key}: "
                            "remove it there, or pause it"
                        )
                    cron.unlink()
                    return True, f"{label} deleted"
        except (ValueError, TypeError) as exc:
            return False, str(exc)
        return False, f"unknown action {action!r}: one of {', '.join(ACTIONS)}"

    return await _answer(request, work)


async def periodic_edit(request: Request) -> Response:
    """Change a periodic job's schedule and options through :meth:`edit`, the write path
    of ``job-worker cron set``: a row declared in code refuses what its code owns."""
    cron_id = path_id(request, "cron_id")
    form = await read_form(request)

    def work(ctx: Ctx) -> tuple[bool, str]:
        cron, label = _managed(ctx, cron_id)
        if not cron:
            return False, label
        try:
            current = _current(cron)
            changes = {k: v for k, v in _edited(form).items() if v != current[k]}
            if not changes:
                return False, f"{label}: nothing to change"
            with ctx.cr.savepoint():
                cron.edit(changes)
        except (ValueError, TypeError) as exc:
            return False, f"{label} not changed: {exc}"
        return True, f"{label} changed: {', '.join(changes)}"

    return await _answer(request, work)
