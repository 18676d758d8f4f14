"""Alert rules: managers read, create, change, delete and test them (a plain user
sees none of them: a webhook URL may carry a token)."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ...monitoring.models.alert import KINDS
from .. import auth
from ..pages import Ctx, flash, path_id, read_form, redirect, render, run, to_float, to_int

_COLUMNS = (
    "id",
    "name",
    "kind",
    "channel",
    "threshold",
    "window_minutes",
    "cooldown_minutes",
    "webhook_url",
    "active",
    "state",
    "last_value",
    "last_evaluated_at",
    "last_fired_at",
)
_NUMBERS: dict[str, Any] = {
    "threshold": to_float,
    "window_minutes": lambda raw, key: to_int(raw, key),
    "interval_seconds": lambda raw, key: to_int(raw, key),
    "cooldown_minutes": lambda raw, key: to_int(raw, key),
}


def _values(form: FormData) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": str(form.get("name", "")).strip(),
        "kind": str(form.get("kind", "")),
        "channel": str(form.get("channel", "")).strip() or None,
        "webhook_url": str(form.get("webhook_url", "")).strip() or None,
        "active": form.get("active") in ("1", "on", "true"),
    }
    if not values["name"]:
        raise ValueError("an alert rule needs a name")
    for key, parse in _NUMBERS.items():
        raw = str(form.get(key, "")).strip()
        if raw:
            values[key] = parse(raw, key)
    return values


async def alert_list(request: Request) -> Response:
    if request.method == "POST":
        form = await read_form(request)

        def create(ctx: Ctx) -> tuple[bool, str]:
            auth.require_manager(ctx.user)
            try:
                with ctx.cr.savepoint():
                    rule = ctx.env["queue.alert.rule"].create(_values(form))
            except ValueError as exc:
                return False, str(exc)
            return True, f"alert rule {rule.name} created"

        ok, message = await run(request, create, write=True)
        flash(request, message, "ok" if ok else "error")
        return redirect("/alerts")

    def work(ctx: Ctx) -> dict[str, Any]:
        auth.require_manager(ctx.user)  # webhook URLs carry tokens
        rules = ctx.env["queue.alert.rule"].search([])
        rows = [{name: rule[name] for name in _COLUMNS} for rule in rules]
        return {"user": ctx.user, "rules": rows, "kinds": KINDS, "now": ctx.now}

    return render(request, "alerts.html", await run(request, work))


async def alert_update(request: Request) -> Response:
    form = await read_form(request)
    rule_id = path_id(request, "rule_id")

    def work(ctx: Ctx) -> tuple[bool, str]:
        auth.require_manager(ctx.user)
        rule = ctx.env["queue.alert.rule"].browse(rule_id).exists()
        if not rule:
            raise HTTPException(404, f"no alert rule {rule_id}")
        try:
            with ctx.cr.savepoint():
                if form.get("evaluate"):
                    fired = rule._evaluate(ctx.now, force=True)
                    value = rule.last_value
                    return True, (
                        f"{rule.name}: value {value:g}, fired"
                        if fired
                        else f"{rule.name}: value {value:g}, not fired"
                    )
                rule.write(_values(form))
        except ValueError as exc:
            return False, str(exc)
        return True, f"alert rule {rule.name} saved"

    ok, message = await run(request, work, write=True)
    flash(request, message, "ok" if ok else "error")
    return redirect("/alerts")


async def alert_delete(request: Request) -> Response:
    await read_form(request)
    rule_id = path_id(request, "rule_id")

    def work(ctx: Ctx) -> str:
        auth.require_manager(ctx.user)
        rule = ctx.env["queue.alert.rule"].browse(rule_id).exists()
        if not rule:
            raise HTTPException(404, f"no alert rule {rule_id}")
        name = rule.name
        rule.unlink()
        return f"alert rule {name} deleted"

    flash(request, await run(request, work, write=True))
    return redirect("/alerts")
