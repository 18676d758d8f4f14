"""``job-worker jobs list|show|requeue|cancel|done|fail|explain``."""

from __future__ import annotations

import json
from typing import Any

import click

from ..monitoring import joblist, stats
from ..orm import SUPERUSER_ID, Environment
from ..orm.fields import INT_MAX
from ..queue import describe
from ..queue.explain import explain
from ..queue.lifecycle import ALL
from .config import moved_option
from .main import database_options, fail, open_registry
from .output import RECORD_ID, TEXT, Output, json_option, state_style, text

LIST_COLUMNS = ("id", "state", "channel", "priority", "call", "attempts", "created", "exception")


@click.group()
def jobs() -> None:
    """List, inspect and act on jobs."""


def _call(row: dict[str, Any]) -> str:
    call = f"{row['model_name']}.{row['method_name']}"
    return f"{row['name']} [{call}]" if row.get("name") else call


def _user_id(env: Environment, user: str | None) -> int | None:
    if not user:
        return None
    if user.isascii() and user.isdigit():
        if int(user) > INT_MAX:
            fail(f"no user with id {user}")
        return int(user)
    found = env["res.users"].search([("login", "=", user)], limit=1)
    if not found:
        fail(f"no user with login {user!r}")
    return found.id


@jobs.command("list")
@database_options()
@click.option(
    "--state", type=click.Choice([state.value for state in ALL]), help="Only jobs in this state."
)
@click.option("--channel", type=TEXT, help="Only jobs of this channel.")
@click.option("--model", type=TEXT, help="Only jobs on this model.")
@click.option("--method", type=TEXT, help="Only jobs calling this method.")
@click.option("--user", type=TEXT, help="Only jobs of this user (login or id).")
@click.option(
    "--exception", "exc_name", type=TEXT, help="Only jobs whose last exception has this name."
)
@click.option("--graph", type=TEXT, help="Only jobs of this graph (graph_uuid).")
@click.option(
    "--cron",
    type=RECORD_ID,
    help="Only jobs of this periodic job (see `job-worker cron list`).",
)
@click.option(
    "--search",
    "-q",
    "q",
    type=TEXT,
    help="Id (4242 or #4242), uuid, or text in the description, model, method or"
    " exception (a text search reads the newest jobs, a window at a time).",
)
@click.option("--finished", help="Only jobs finished within this span: 15m, 1h, 7d.")
@click.option("--stuck", is_flag=True, help="Started jobs whose worker went silent.")
@click.option("--aged", is_flag=True, help="Pending jobs due for more than 10 minutes.")
@click.option("--exhausted", is_flag=True, help="Failed jobs that spent their retries.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, joblist.MAX_PAGE))
@click.option(
    "--before", type=RECORD_ID, help="Page of jobs older than this id (keyset pagination)."
)
@click.option("--after", type=RECORD_ID, help="Page of jobs newer than this id.")
@json_option
def list_(
    database: str,
    load: list[str],
    user: str | None,
    limit: int,
    before: int | None,
    after: int | None,
    as_json: bool,
    **filters: Any,
) -> None:
    """List jobs, newest first, one page at a time (--finished: latest finished first;
    --aged: latest due first)."""
    out = Output(as_json)
    with open_registry(database, load) as registry, registry.cursor(readonly=True) as cr:
        env = Environment(cr, SUPERUSER_ID, {})
        try:
            flt = joblist.JobFilter(user_id=_user_id(env, user), **filters)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        page = joblist.list_jobs(cr, flt, before=before, after=after, limit=limit)
    if as_json:
        out.json(
            {
                "jobs": page.rows,
                "next_before": page.next_before,
                "prev_after": page.prev_after,
                "searched": list(page.searched) if page.searched else None,
            }
        )
        return
    rows = [
        {
            **row,
            "call": _call(row),
            "attempts": describe.attempts_text(row["attempts"], row["max_retries"], short=True),
            "created": row["create_date"],
            "exception": row["exc_name"],
        }
        for row in page.rows
    ]
    out.table(rows, LIST_COLUMNS, styles={"state": state_style})
    if not rows:
        out.say("no jobs match", "dim")
    if page.searched:
        low, high = page.searched
        out.say(
            f"searched jobs #{low} to #{high} ({joblist.SEARCH_WINDOW:,} ids at most per page)",
            "dim",
        )
    if page.next_before:
        more = "older jobs" if page.searched else "more"
        out.say(f"{more}: add --before {page.next_before}", "dim")


def _load_job(env: Environment, job_id: int) -> Any:
    job = env["queue.job"].browse(job_id).exists()
    if not job:
        fail(f"no job with id {job_id}")
    return job


@jobs.command()
@database_options()
@click.argument("job_id", type=RECORD_ID)
@json_option
def show(database: str, load: list[str], job_id: int, as_json: bool) -> None:
    """Everything about one job: call, state, timeline, error, dependencies, why it waits."""
    out = Output(as_json)
    with open_registry(database, load) as registry, registry.cursor(readonly=True) as cr:
        env = Environment(cr, SUPERUSER_ID, {})
        job = _load_job(env, job_id)
        values = job.read()[0]
        for key, value in values.items():
            if value is False and job._fields[key].type != "boolean":
                values[key] = None  # an empty field, not a boolean
        for key in ("user_id", "company_id", "cascaded_from_id", "cron_id"):
            value = values.get(key)
            values[key] = value[0] if isinstance(value, list | tuple) else value
        values.pop("dependency_ids", None)
        values.pop("dependent_ids", None)
        values["depends_on"] = [
            {"id": dep.parent_id.id, "kind": dep.kind, "state": dep.parent_id.state}
            for dep in job.dependency_ids
        ]
        values["dependents"] = [
            {"id": dep.job_id.id, "kind": dep.kind, "state": dep.job_id.state}
            for dep in job.dependent_ids
        ]
        values["explain"] = [reason.as_dict() for reason in explain(env, job_id)]
        events = describe.timeline(job)
        user = f"{job.user_id.login} (id {job.user_id.id})" if job.user_id else None
        company = job.company_id.name if job.company_id else None
    if as_json:
        out.json(values)
        return
    _print_job(out, {**values, "user": user, "company": company}, events)


def _print_job(out: Output, job: dict[str, Any], events: list[describe.Event]) -> None:
    """The job as the dashboard's detail page shows it: call, state, timeline, error,
    why it waits, then the diagnoses."""
    fields: dict[str, Any] = {
        "call": describe.call_text(
            job["model_name"], job["method_name"], job["record_ids"], job["args"], job["kwargs"]
        ),
        "description": job["name"],
        "state": job["state"],
        "channel": job["channel"],
        "priority": job["priority"],
        "weight": job.get("weight") or 1,
        "fair key": job.get("fair_key") or None,
        "attempts": describe.attempts_text(job["attempts"], job["max_retries"]),
        "channel backoffs": job.get("backoffs") or None,
        "timeout": f"{job['timeout']:g} s" if job["timeout"] else "none",
        "uuid": job["uuid"],
        "identity key": job["identity_key"],
        "user": job["user"],
        "company": job["company"],
        "worker": job["worker_id"],
        "graph": job["graph_uuid"],
        "periodic job": _occurrence_text(job),
        "depends on": ", ".join(
            f"{d['id']} ({d['kind']}, {d['state']})" for d in job["depends_on"]
        ),
        "dependents": ", ".join(
            f"{d['id']} ({d['kind']}, {d['state']})" for d in job["dependents"]
        ),
        "context": json.dumps(job["context"], sort_keys=True) if job["context"] else None,
    }
    out.fields({k: v for k, v in fields.items() if v not in (None, "")}, title=f"Job {job['id']}")
    out.say("")
    out.say("Timeline", "bold")
    for event in events:
        out.say(f"  {text(event.at)}  {event.label}", state_style(event.state))
    if job["state"] == "done":
        out.say("")
        out.say(f"Result: {json.dumps(job['result'], default=str)}")
    if job["exc_name"]:
        out.say("")
        out.say("Error", "bold")
        out.say(f"  {job['exc_name']}: {job['exc_message'] or ''}", "red")
    out.say("")
    out.say("Why", "bold")
    for reason in job["explain"]:
        out.say(f"  - {reason['message']}  [{reason['code']}]")
    if job["exc_info"]:
        out.say("")
        out.say("Traceback and diagnoses", "bold")
        out.block(job["exc_info"])


def _occurrence_text(job: dict[str, Any]) -> str | None:
    if not job.get("cron_id"):
        return None
    when = job.get("cron_occurrence")
    which = f"occurrence of {text(when)} UTC" if when else "run now, outside the schedule"
    return f"{job['cron_id']}, {which}"


def _action(name: str, method: str, help_text: str, message: bool = False) -> click.Command:
    @database_options()
    @click.argument("job_ids", type=RECORD_ID, nargs=-1, required=True)
    @json_option
    def command(
        database: str, load: list[str], job_ids: tuple[int, ...], as_json: bool, **kwargs: Any
    ) -> None:
        out = Output(as_json)
        with open_registry(database, load) as registry, registry.cursor() as cr:
            env = Environment(cr, SUPERUSER_ID, {})
            found = env["queue.job"].browse(list(job_ids)).exists()
            missing = sorted(set(job_ids) - set(found.ids))
            if missing:
                fail(f"no job with id {', '.join(map(str, missing))}")
            try:
                getattr(found, method)(**kwargs)
            except ValueError as exc:
                fail(str(exc))
            states = {job.id: job.state for job in found}
        if as_json:
            out.json([{"id": job_id, "state": state} for job_id, state in states.items()])
            return
        for job_id, state in states.items():
            out.say(f"job {job_id}: {state}", state_style(state))

    command.__doc__ = help_text
    if message:
        command = click.option(
            "--message",
            type=TEXT,
            default="set failed by hand",
            show_default=True,
            help="Recorded as the job's exception message.",
        )(command)
    return click.command(name)(command)


jobs.add_command(
    _action("requeue", "requeue", "Put failed, cancelled or done jobs back to pending.")
)
jobs.add_command(
    _action("cancel", "cancel", "Cancel waiting, pending or started jobs (and their dependents).")
)
jobs.add_command(
    _action("done", "set_done", "Mark jobs done by hand (their on_done dependents run).")
)
jobs.add_command(
    _action(
        "fail",
        "set_failed",
        "Mark jobs failed by hand (dependents fail or run on_error).",
        message=True,
    )
)


@jobs.command("explain")
@database_options()
@click.argument("job_id", type=RECORD_ID)
@moved_option("--stale-seconds", "stale_seconds")
@moved_option("--default-limit", "default_limit")
@json_option
def explain_(database: str, load: list[str], job_id: int, as_json: bool) -> None:
    """Say in words why a job is not running (or that nothing holds it back)."""
    out = Output(as_json)
    with open_registry(database, load) as registry, registry.cursor(readonly=True) as cr:
        env = Environment(cr, SUPERUSER_ID, {})
        try:
            reasons = explain(env, job_id, now=stats.now())
        except KeyError:
            fail(f"no job with id {job_id}")
    if as_json:
        out.json({"id": job_id, "reasons": [r.as_dict() for r in reasons]})
        return
    for reason in reasons:
        out.say(f"- {reason.message}  [{reason.code}]")
