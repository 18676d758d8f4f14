"""``job-worker limits list|set|delete|lift|fair``: channel capacity, rate windows and
depth, the pauses (backoffs) jobs put on channels, and the weights of fair keys."""

from __future__ import annotations

import math
from typing import Any

import click

from ..monitoring import stats
from ..orm import SUPERUSER_ID, Environment
from ..orm.fields import INT_MAX
from ..rates import ACCEPTED, RateWindow, parse_rates, parse_window, rates_text
from .config import moved_option
from .main import database_options, fail, open_registry
from .output import TEXT, Output, json_option

COLUMNS = (
    "channel",
    "limit",
    "rate_limit",
    "rates",
    "configured",
    "running",
    "running_weight",
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
        if not as_json:  # JSON keeps the windows text and the rate_limit number apart
            row["rates"] = rates_label(row["rates"], row["rate_limit"])
    Output(as_json).table(rows, COLUMNS)


def rates_label(rates: str | None, rate_limit: float | None) -> str:
    """A channel's rate windows and its rate_limit as one text: ``10/s 500/min, 2/s
    spaced`` (the rate_limit spaces starts 1/R seconds apart)."""
    parts = [rates] if rates else []
    if rate_limit:
        parts.append(f"{rate_limit:g}/s spaced")
    return ", ".join(parts)


class RateValue(click.ParamType):
    """One ``--rate``: a window ``COUNT/PERIOD`` (:mod:`job_worker.rates`), or a plain
    number of starts per second (the ``rate_limit``; 0 clears the channel's rates)."""

    name = "rate"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float | RateWindow):
            return value
        text = str(value).strip()
        if "/" in text:
            try:
                return parse_window(text)
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number >= 0):
            self.fail(
                f"{value!r} is not a rate: expected a plain number of starts per second"
                f" (0 clears the channel's rates) or {ACCEPTED}",
                param,
                ctx,
            )
        return number


def rate_settings(values: tuple[Any, ...]) -> tuple[float | None, str | None]:
    """(rate_limit, rates) for ``queue.limit.set_limit`` from the ``--rate`` values: None
    keeps what the channel has. The windows given replace the channel's; a plain number
    is its rate_limit (one at most); ``--rate 0`` alone clears both."""
    plain = [value for value in values if not isinstance(value, RateWindow)]
    windows = [value for value in values if isinstance(value, RateWindow)]
    if len(plain) > 1:
        shown = ", ".join(f"{value:g}" for value in plain)
        raise click.BadParameter(
            f"at most one plain number of starts per second, got {shown}; give the others as"
            f" windows: {ACCEPTED}",
            param_hint="'--rate'",
        )
    rate_limit = plain[0] if plain else None
    if windows:
        try:
            rates: str | None = rates_text(parse_rates(" ".join(w.text for w in windows)))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--rate'") from None
    else:
        rates = "" if rate_limit == 0 else None
    return rate_limit, rates


@limits.command("set")
@database_options()
@click.argument("channel", type=TEXT)
@click.argument("limit", type=click.IntRange(0, INT_MAX))
@click.option(
    "--rate",
    "rate_values",
    type=RateValue(),
    multiple=True,
    help="A rate window such as 10/s, 500/min or 20000/h (repeat it: the windows given "
    "replace the channel's), or a plain number of starts per second spaced 1/R s apart; "
    "--rate 0 clears both. Unchanged if not given.",
)
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
    rate_values: tuple[Any, ...],
    max_depth: int | None,
    depth_policy: str | None,
    as_json: bool,
) -> None:
    """Set CHANNEL to run at most LIMIT jobs at once, counted in weights (0 pauses it)."""
    rate_limit, rates = rate_settings(rate_values)
    with open_registry(database, load) as registry, registry.cursor() as cr:
        env = Environment(cr, SUPERUSER_ID, {})
        try:
            record = env["queue.limit"].set_limit(
                channel,
                limit,
                rate_limit,
                rates=rates,
                max_depth=max_depth,
                depth_policy=depth_policy,
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        values = {
            "channel": record.name,
            "limit": record.limit,
            "rate_limit": record.rate_limit,
            "rates": record.rates or "",
            "max_depth": record.max_depth,
            "depth_policy": record.depth_policy,
        }
    out = Output(as_json)
    if as_json:
        out.json(values)
    else:
        rate = f", at most {values['rate_limit']:g} starts/s" if values["rate_limit"] else ""
        if values["rates"]:
            rate = f", rates {values['rates']}{rate}"
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


@limits.command()
@database_options()
@click.argument("channel", type=TEXT)
@click.argument("key", type=TEXT, required=False)
@click.argument("weight", type=click.IntRange(1, INT_MAX), required=False)
@json_option
def fair(
    database: str,
    load: list[str],
    channel: str,
    key: str | None,
    weight: int | None,
    as_json: bool,
) -> None:
    """Fair share in CHANNEL. With KEY and WEIGHT: give the fair key KEY that many turns
    per round of the channel's rotation (1 = one, like every key: removes its row).
    Without: the keys with pending jobs now (the first 100, each counted up to 1000),
    the keys with a weight, and the key that had the channel's last turn."""
    if key is not None and weight is None:
        raise click.UsageError(f"give KEY and WEIGHT together (KEY {key!r} without a WEIGHT)")
    if key is not None and weight is not None:
        with open_registry(database, load) as registry, registry.cursor() as cr:
            env = Environment(cr, SUPERUSER_ID, {})
            try:
                env["queue.fair.key"].set_weight(channel, key, weight)
            except ValueError as exc:
                raise click.UsageError(str(exc)) from exc
        out = Output(as_json)
        if as_json:
            out.json({"channel": channel, "key": key, "weight": weight})
        else:
            turns = "1 turn per round (the default)" if weight == 1 else f"{weight} turns per round"
            out.say(f"channel {channel}: fair key {key!r} has {turns}", "green")
        return
    with open_registry(database, load) as registry, registry.cursor(readonly=True) as cr:
        share = stats.fair_keys(cr, channel)
    out = Output(as_json)
    if as_json:
        out.json(share.as_dict())
        return
    rows = [
        {
            "key": key_label(name),
            "weight": share.weights.get(name, 1),
            "pending": f"{stats.FAIR_PENDING_CAP}+"
            if pending >= stats.FAIR_PENDING_CAP
            else str(pending),
        }
        for name, pending in share.keys.items()
    ]
    rows += [
        {"key": key_label(name), "weight": weight, "pending": "0"}
        for name, weight in share.weights.items()
        if name not in share.keys
    ]
    out.table(rows, ("key", "weight", "pending"), title=f"channel {channel}: fair keys")
    if share.more:
        out.say(f"+ more keys with pending jobs (the first {stats.FAIR_KEYS_SHOWN} are shown)")
    if share.cursor is None:
        out.say("no key has had a turn yet")
    else:
        done = f"{share.turn} job(s) into its turn" if share.turn else "its turn is over"
        out.say(f"last turn: {key_label(share.cursor)} ({done})")


def key_label(key: str) -> str:
    """A fair key as shown: ``''`` is the jobs without a key."""
    return key if key else "(jobs without a key)"
