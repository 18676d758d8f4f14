"""``job-worker cron list|add|set|pause|resume|delete|run-now``: periodic jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..orm import SUPERUSER_ID, Environment, fields
from .enqueue import _ids, _json
from .main import database_options, fail, open_registry
from .output import Output, json_option

COLUMNS = (
    "id",
    "name",
    "schedule",
    "tz",
    "active",
    "next_at",
    "lag",
    "last_enqueued_at",
    "last_job",
    "last_state",
    "enqueued",
    "skipped",
    "declared_in",
)


def cron_values(cron: Any, now: Any = None) -> dict[str, Any]:
    """One cron as the CLI (and ``--json``) shows it."""
    job = cron.last_job_id
    return {
        "id": cron.id,
        "name": cron.name,
        "call": f"{cron.model_name}.{cron.method_name}",
        "record_ids": cron.record_ids or [],
        "args": cron.args or [],
        "kwargs": cron.kwargs or {},
        "schedule": cron.cron or f"every {cron.interval} s",
        "cron": cron.cron or None,
        "interval": cron.interval or None,
        "tz": cron.tz,
        "active": cron.active,
        "catch_up": cron.catch_up,
        "max_catch_up": cron.max_catch_up,
        "no_overlap": cron.no_overlap,
        "channel": cron.channel,
        "priority": cron.priority,
        "max_retries": cron.max_retries,
        "timeout": cron.timeout,
        "description": cron.description or None,
        "next_at": cron.next_at if cron.active else None,
        "lag": round(cron.lag_seconds(now), 3),
        "last_enqueued_at": cron.last_enqueued_at or None,
        "last_job": job.id or None,
        "last_state": job.state or None,
        "enqueued": cron.enqueued_count,
        "skipped": cron.skipped_count,
        "declared_in": cron.code_key or None,
    }


def _find(env: Environment, ref: str) -> Any:
    """The cron with id or name ``ref``."""
    Cron = env["queue.cron"]
    found = Cron.browse(int(ref)).exists() if ref.isdigit() else Cron.browse(())
    if not found:
        found = Cron.search([("name", "=", ref)])
    if not found:
        fail(f"no periodic job with id or name {ref!r} (see `job-worker cron list`)")
    if len(found) > 1:
        fail(f"{len(found)} periodic jobs are named {ref!r}: give the id")
    return found


def schedule_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``add`` and ``set``: schedule, call and job options."""
    options = [
        click.option("--cron", "cron", help="5-field cron expression, e.g. '0 3 * * *'."),
        click.option("--interval", type=int, help="Seconds between occurrences (exact, UTC)."),
        click.option("--tz", help="IANA time zone of the cron expression (default UTC)."),
        click.option("--ids", help="Record ids, comma separated."),
        click.option("--args", "args_json", help="Positional arguments as a JSON list."),
        click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object."),
        click.option("--channel", help="Channel of the jobs (default root)."),
        click.option("--priority", type=int, help="Lower runs first (default 10)."),
        click.option("--max-retries", type=int, help="Failed attempts allowed (default 5)."),
        click.option("--timeout", type=float, help="Seconds before a job is killed (0 = none)."),
        click.option("--description", help="The jobs' description (default: the name)."),
        click.option(
            "--catch-up",
            type=click.Choice(["latest", "all", "skip"]),
            help="After downtime: one job (latest), one per occurrence (all), or none (skip).",
        ),
        click.option("--max-catch-up", type=int, help="catch-up all: jobs at most (default 100)."),
        click.option(
            "--no-overlap/--overlap",
            default=None,
            help="Skip an occurrence while the previous job is not finished.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _values(options: dict[str, Any]) -> dict[str, Any]:
    values = {k: v for k, v in options.items() if v is not None}
    ids, args_json, kwargs_json = (values.pop(k, None) for k in ("ids", "args_json", "kwargs_json"))
    if ids is not None:
        values["record_ids"] = _ids(ids)
    if args_json is not None:
        values["args"] = _json(args_json, "--args", list)
    if kwargs_json is not None:
        values["kwargs"] = _json(kwargs_json, "--kwargs", dict)
    return values


def _show(out: Output, values: dict[str, Any], message: str) -> None:
    if out.as_json:
        out.json(values)
    else:
        out.say(message, "green")


@click.group()
def cron() -> None:
    """Periodic jobs (queue.cron): one job per occurrence, across every worker."""


@cron.command("list")
@database_options()
@json_option
def list_(database: str, load: list[str], as_json: bool) -> None:
    """Every periodic job: schedule, next occurrence, lag and last job."""
    with open_registry(database, load) as registry, registry.cursor(readonly=True) as cr:
        env = Environment(cr, SUPERUSER_ID, {})
        now = fields.Datetime.now()
        rows = [cron_values(c, now) for c in env["queue.cron"].search([])]
    out = Output(as_json)
    if as_json:
        out.json(rows)
    else:
        out.table(rows, COLUMNS)


@cron.command()
@database_options()
@click.argument("name")
@click.argument("model")
@click.argument("method")
@schedule_options
@click.option("--paused", is_flag=True, help="Create it paused.")
@json_option
def add(
    database: str,
    load: list[str],
    name: str,
    model: str,
    method: str,
    paused: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Add periodic job NAME calling MODEL(ids).METHOD(*args, **kwargs) on --cron or
    --interval."""
    values = _values(options)
    values.update(name=name, model_name=model, method_name=method, active=not paused)
    with open_registry(database, load) as registry, registry.cursor() as cr:
        env = Environment(cr, SUPERUSER_ID, {})
        try:
            record = env["queue.cron"].create(values)
        except (ValueError, TypeError) as exc:
            raise click.UsageError(str(exc)) from exc
        shown = cron_values(record)
    _show(
        Output(as_json),
        shown,
        f"periodic job {shown['id']} ({name}): {shown['schedule']} {shown['tz']}, "
        + (f"next at {shown['next_at']:%Y-%m-%d %H:%M:%S} UTC" if shown["next_at"] else "paused"),
    )


@cron.command("set")
@database_options()
@click.argument("ref", metavar="ID_OR_NAME")
@click.option("--name", help="A new name.")
@schedule_options
@json_option
def set_(database: str, load: list[str], ref: str, as_json: bool, **options: Any) -> None:
    """Change a periodic job (one declared in code is changed in code: here it can only
    be paused, resumed or run now)."""
    values = _values(options)
    if not values:
        raise click.UsageError("nothing to change: give at least one option")
    with open_registry(database, load) as registry, registry.cursor() as cr:
        record = _find(Environment(cr, SUPERUSER_ID, {}), ref)
        try:
            record.edit(values)
        except (ValueError, TypeError) as exc:
            raise click.UsageError(str(exc)) from exc
        shown = cron_values(record)
    _show(Output(as_json), shown, f"periodic job {shown['id']} ({shown['name']}) changed")


def _set_active(database: str, load: list[str], ref: str, active: bool, as_json: bool) -> None:
    with open_registry(database, load) as registry, registry.cursor() as cr:
        record = _find(Environment(cr, SUPERUSER_ID, {}), ref)
        record.edit({"active": active})
        shown = cron_values(record)
    state = f"resumed, next at {shown['next_at']:%Y-%m-%d %H:%M:%S} UTC" if active else "paused"
    _show(Output(as_json), shown, f"periodic job {shown['id']} ({shown['name']}) {state}")


@cron.command()
@database_options()
@click.argument("ref", metavar="ID_OR_NAME")
@json_option
def pause(database: str, load: list[str], ref: str, as_json: bool) -> None:
    """Pause a periodic job: no occurrence becomes a job until it is resumed (a redeploy
    does not resume it)."""
    _set_active(database, load, ref, False, as_json)


@cron.command()
@database_options()
@click.argument("ref", metavar="ID_OR_NAME")
@json_option
def resume(database: str, load: list[str], ref: str, as_json: bool) -> None:
    """Resume a paused periodic job from its next occurrence (missed ones are not owed)."""
    _set_active(database, load, ref, True, as_json)


@cron.command()
@database_options()
@click.argument("ref", metavar="ID_OR_NAME")
@json_option
def delete(database: str, load: list[str], ref: str, as_json: bool) -> None:
    """Delete a periodic job (its jobs stay). One declared in code is removed from the
    code; pause it meanwhile."""
    with open_registry(database, load) as registry, registry.cursor() as cr:
        record = _find(Environment(cr, SUPERUSER_ID, {}), ref)
        if record.code_key:
            fail(
                f"periodic job {record.id} ({record.name}) is declared in code by @api.periodic "
                f"on {record.code_key}: remove it there (the next init or worker start deletes "
                "the row), or pause it"
            )
        shown = {"id": record.id, "name": record.name, "deleted": True}
        record.unlink()
    _show(Output(as_json), shown, f"periodic job {shown['id']} ({shown['name']}) deleted")


@cron.command("run-now")
@database_options()
@click.argument("ref", metavar="ID_OR_NAME")
@json_option
def run_now(database: str, load: list[str], ref: str, as_json: bool) -> None:
    """Enqueue one job of a periodic job now, outside its schedule (the next occurrence
    does not move)."""
    with open_registry(database, load) as registry, registry.cursor() as cr:
        record = _find(Environment(cr, SUPERUSER_ID, {}), ref)
        job = record.run_now()
        shown = {"cron": record.id, "job": job.id, "uuid": job.uuid, "state": job.state}
    _show(
        Output(as_json),
        shown,
        f"job {shown['job']} ({shown['uuid']}) enqueued for periodic job {shown['cron']}",
    )
