"""``job-worker enqueue MODEL METHOD``: enqueue a job from the shell."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from ..exceptions import ChannelFullError
from ..orm import SUPERUSER_ID, Environment
from .main import database_options, fail, open_registry
from .output import TEXT, Output, json_option


def _json(value: str | None, param: str, kind: type) -> Any:
    if value is None:
        return kind()
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=param) from exc
    if not isinstance(parsed, kind):
        raise click.BadParameter(
            f"must be a JSON {'list' if kind is list else 'object'}, got {value}", param_hint=param
        )
    return parsed


def _ids(value: str | None) -> list[int]:
    if not value:
        return []
    try:
        return [int(part) for part in value.replace(",", " ").split()]
    except ValueError:
        raise click.BadParameter(
            f"record ids are integers separated by commas, got {value!r}", param_hint="--ids"
        ) from None


def _eta(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"seconds from now or an ISO datetime, got {value!r}", param_hint="--eta"
        ) from None


@click.command()
@database_options()
@click.argument("model")
@click.argument("method")
@click.option("--ids", help="Record ids, comma separated.")
@click.option("--args", "args_json", help="Positional arguments as a JSON list, e.g. '[1, \"a\"]'.")
@click.option(
    "--kwargs", "kwargs_json", help="Keyword arguments as a JSON object, e.g. '{\"force\": true}'."
)
@click.option("--channel", help="Channel (default root).")
@click.option("--priority", type=int, help="Lower runs first (default 10).")
@click.option(
    "--eta", help="Run after this many seconds, or at this ISO datetime (UTC when naive)."
)
@click.option("--max-retries", type=int, help="Failed attempts allowed (default 5; 0 = forever).")
@click.option("--description", help="The job's description.")
@click.option("--identity-key", help="Do not enqueue when an active job has this key.")
@click.option("--timeout", type=float, help="Seconds before the worker kills the job (0 = none).")
@click.option("--weight", type=int, help="Share of the channel's limit the job takes (default 1).")
@click.option("--fair-key", help="Fair-share key: jobs with other keys take turns with it.")
@click.option(
    "--user", "user_login", type=TEXT, help="Run as this user (login); default the superuser."
)
@json_option
def enqueue(
    database: str,
    load: list[str],
    model: str,
    method: str,
    ids: str | None,
    args_json: str | None,
    kwargs_json: str | None,
    user_login: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Enqueue MODEL(ids).METHOD(*args, **kwargs) as a job."""
    record_ids = _ids(ids)
    args = _json(args_json, "--args", list)
    kwargs = _json(kwargs_json, "--kwargs", dict)
    options["eta"] = _eta(options["eta"])
    options = {k: v for k, v in options.items() if v is not None}
    skipped: str | None = None
    with open_registry(database, load) as registry, registry.cursor() as cr:
        env = Environment(cr, SUPERUSER_ID, {})
        if user_login:
            user = env["res.users"].search([("login", "=", user_login)], limit=1)
            if not user:
                raise click.BadParameter(f"no user with login {user_login!r}", param_hint="--user")
            env = Environment(cr, user.id, {})
        try:
            job = env["queue.job"].enqueue(model, method, record_ids, args, kwargs, **options)
        except (ValueError, TypeError) as exc:
            raise click.UsageError(str(exc)) from exc
        except ChannelFullError as exc:
            fail(str(exc))
        if not job:  # the skip, counted, commits with the block
            skipped = options.get("channel", "root")
        values = (
            {}
            if skipped
            else {
                "id": job.id,
                "uuid": job.uuid,
                "state": job.state,
                "channel": job.channel,
                "priority": job.priority,
                "scheduled_at": job.scheduled_at,
            }
        )
    if skipped:
        fail(f"channel {skipped} is full: the enqueue was skipped (its depth policy is skip)")
    out = Output(as_json)
    if as_json:
        out.json(values)
    else:
        out.say(
            f"job {values['id']} ({values['uuid']}) {values['state']} in channel {values['channel']}",
            "green",
        )
