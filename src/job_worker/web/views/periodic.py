"""Periodic jobs: schedule, next occurrences, last job, lag; managers pause, resume,
run now, add and delete them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import auth
from ..app import Ctx, flash, path_id, read_form, redirect, render, run, to_int

#: next occurrences shown per periodic job
UPCOMING = 3

ACTIONS = {
    "pause": "Pause",
    "resume": "Resume",
    "run_now": "Run now",
    "delete": "Delete",
}


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
    }


async def periodic_list(request: Request) -> Response:
    if request.method == "POST":
        return await _add(request)

    def work(ctx: Ctx) -> dict[str, Any]:
        crons = ctx.env["queue.cron"].search([])
        return {"user": ctx.user, "crons": [_row(c, ctx.now) for c in crons]}

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

    ok, message = await run(request, work, write=True)
    flash(request, message, "ok" if ok else "error")
    return redirect("/periodic")


async def periodic_action(request: Request) -> Response:
    cron_id = path_id(request, "cron_id")
    form = await read_form(request)
    action = str(form.get("action", ""))

    def work(ctx: Ctx) -> tuple[bool, str]:
        auth.require_manager(ctx.user)
        cron = ctx.env["queue.cron"].browse(cron_id).exists()
        if not cron:
            return False, f"no periodic job with id {cron_id}"
        label = f"periodic job {cron.id} ({cron.name})"
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

    ok, message = await run(request, work, write=True)
    flash(request, message, "ok" if ok else "error")
    return redirect("/periodic")
