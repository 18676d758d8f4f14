"""``job-worker limits list|set|delete|lift``: channel capacity and rate limits, and the
pauses (backoffs) jobs put on channels."""

from __future__ import annotations

import click

from ..monitoring import stats
from ..orm import SUPERUSER_ID, Environment
from ..orm.fields import INT_MAX
from .config import moved_option
from .main import database_options, fail, open_registry
from .output import TEXT, FiniteFloat, Output, json_option

COLUMNS = (
    "channel",
    "limit",
    "rate_limit",
    "configured",
    "running",
    "pending",
    "waiting",
    "max_depth",
    "depth",
    "depth_policy",
    "skipped",
    "backoff_until",
    "backoff_reason",
    "backoff_job_id",
)


@click.group()
def limits() -> None:
    """Channel limits (queue.limit): jobs running at once and starts per second; the
    backoffs jobs asked for (queue.channel)."""


@limits.command("list")
@database_options()
@moved_option("--default-limit", "default_limit")
@json_option
def list_(database: str, load: list[str], as_json: bool) -> None:
    """Every channel with a limit, with active jobs or with a backoff in force (others run
    `default_limit` jobs at once: see `job-worker config`). A backoff shows until when
    (UTC), why, and the job that asked for it."""
    with open_registry(database, load) as registry, registry.cursor(readonly=True) as cr:
        rows = stats.channel_rows(cr)
    for row in rows:
        row["channel"] = row["name"]
        row["configured"] = "yes" if row["configured"] else "default"
    Output(as_json).table(rows, COLUMNS)


@limits.command("set")
@database_options()
@click.argument("channel", type=TEXT)
@click.argument("limit", type=click.IntRange(0, INT_MAX))
@click.option("--rate", "rate_limit", type=FiniteFloat(min=0), help="Starts per second (0 = none).")
@click.option(
    "--max-depth",
    type=click.IntRange(0, INT_MAX),
    help="Jobs waiting or pending at most (0 = unbounded); unchanged if not given.",
)
@click.option(
    "--depth-policy",
    type=click.Choice(["raise", "skip"]),
    help="An enqueue into a full channel raises ChannelFullError (raise, the default) "
    "or is dropped and counted (skip).",
)
@json_option
def set_(
    database: str,
    load: list[str],
    channel: str,
    limit: int,
    rate_limit: float | None,
    max_depth: int | None,
    depth_policy: str | None,
    as_json: bool,
) -> None:
    """Set CHANNEL to run at most LIMIT jobs at once (0 pauses it)."""
    with open_registry(database, load) as registry, registry.cursor() as cr:
        env = Environment(cr, SUPERUSER_ID, {})
        try:
            record = env["queue.limit"].set_limit(
                channel, limit, rate_limit, max_depth=max_depth, depth_policy=depth_policy
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        values = {
            "channel": record.name,
            "limit": record.limit,
            "rate_limit": record.rate_limit,
            "max_depth": record.max_depth,
            "depth_policy": record.depth_policy,
        }
    out = Output(as_json)
    if as_json:
        out.json(values)
    else:
        rate = f", at most {values['rate_limit']:g} starts/s" if values["rate_limit"] else ""
        paused = " (paused)" if not values["limit"] else ""
        bound = (
            f", at most {values['max_depth']} waiting or pending ({values['depth_policy']} when full)"
            if values["max_depth"]
            else ""
        )
        out.say(f"channel {channel}: limit {values['limit']}{rate}{bound}{paused}", "green")


@limits.command()
@database_options()
@click.argument("channel", type=TEXT)
@json_option
def delete(database: str, load: list[str], channel: str, as_json: bool) -> None:
    """Remove CHANNEL's limit: it runs with the default limit again."""
    with open_registry(database, load) as registry, registry.cursor() as cr:
        env = Environment(cr, SUPERUSER_ID, {})
        record = env["queue.limit"].search([("name", "=", channel)])
        if not record:
            fail(f"channel {channel!r} has no limit")
        record.unlink()
    out = Output(as_json)
    if as_json:
        out.json({"channel": channel, "deleted": True})
    else:
        out.say(f"channel {channel}: limit removed (default limit applies)")


@limits.command()
@database_options()
@click.argument("channel", type=TEXT)
@json_option
def lift(database: str, load: list[str], channel: str, as_json: bool) -> None:
    """End CHANNEL's backoff now (the pause a job asked for with ChannelBackoff): its
    jobs start at once."""
    with open_registry(database, load) as registry, registry.cursor() as cr:
        env = Environment(cr, SUPERUSER_ID, {})
        lifted = env["queue.channel"].lift_backoff(channel)
    if not lifted:
        fail(f"channel {channel!r} has no backoff in force: nothing to lift")
    out = Output(as_json)
    if as_json:
        out.json({"channel": channel, "lifted": True})
    else:
        out.say(f"channel {channel}: backoff lifted, its jobs start again", "green")
