"""``job-worker config list|get|set|unset``: the cluster settings every worker, command
and dashboard of a database reads (:mod:`job_worker.queue.config`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..orm import SUPERUSER_ID, Environment
from ..queue import config as cluster
from .main import database_options, fail, open_registry
from .output import Output, json_option

COLUMNS = ("key", "value", "source", "default", "accepted")


@click.group()
def config() -> None:
    """Cluster settings kept in the database: default limit, stale window, retention.

    Set once, read by every worker (within a few seconds, no restart), by `stats`,
    `jobs explain`, `limits list`, the dashboard and /metrics.
    """


def _describe(database: str, load: list[str]) -> list[dict[str, Any]]:
    with open_registry(database, load) as registry, registry.cursor(readonly=True) as cr:
        return Environment(cr, SUPERUSER_ID, {})["queue.config"].describe()


def _check_key(key: str) -> None:
    try:
        cluster.setting(key)
    except ValueError as exc:
        fail(str(exc), code=2)


@config.command("list")
@database_options()
@json_option
def list_(database: str, load: list[str], as_json: bool) -> None:
    """Every setting, its value in force and whether it is set or the default."""
    rows = _describe(database, load)
    if as_json:
        Output(as_json).json(rows)
        return
    Output(as_json).table(rows, COLUMNS)


@config.command()
@database_options()
@click.argument("key")
@json_option
def get(database: str, load: list[str], key: str, as_json: bool) -> None:
    """Print the value in force of setting KEY."""
    _check_key(key)
    row = next(row for row in _describe(database, load) if row["key"] == key)
    if as_json:
        Output(as_json).json(row)
    else:
        click.echo(row["value"])


# a negative VALUE is a value to refuse with its reason, not an unknown option
@config.command("set", context_settings={"ignore_unknown_options": True})
@database_options()
@click.argument("key")
@click.argument("value")
@json_option
def set_(database: str, load: list[str], key: str, value: str, as_json: bool) -> None:
    """Set KEY to VALUE for every worker and reader of the database."""
    _check_key(key)
    with open_registry(database, load) as registry, registry.cursor() as cr:
        try:
            typed = Environment(cr, SUPERUSER_ID, {})["queue.config"].set_value(key, value)
        except ValueError as exc:
            fail(str(exc), code=2)  # leaving the block rolls back: nothing changed
    text = cluster.SETTINGS[key].as_text(typed)
    out = Output(as_json)
    if as_json:
        out.json({"key": key, "value": text})
    else:
        out.say(f"{key} = {text} (workers use it within {cluster.REFRESH_SECONDS:g} s)", "green")


@config.command()
@database_options()
@click.argument("key")
@json_option
def unset(database: str, load: list[str], key: str, as_json: bool) -> None:
    """Give KEY its default value again."""
    _check_key(key)
    with open_registry(database, load) as registry, registry.cursor() as cr:
        try:
            was_set = Environment(cr, SUPERUSER_ID, {})["queue.config"].unset(key)
        except ValueError as exc:
            fail(str(exc), code=2)  # leaving the block rolls back: nothing changed
    default = cluster.SETTINGS[key].as_text(cluster.SETTINGS[key].default)
    out = Output(as_json)
    if as_json:
        out.json({"key": key, "value": default, "was_set": was_set})
    else:
        out.say(f"{key} = {default} (the default{'' if was_set else '; it was not set'})")


def moved_option(flag: str, key: str, **kwargs: Any) -> Callable[..., Any]:
    """A former option whose value is now the cluster setting ``key``: hidden, and
    refused with the command to use instead (a process-local value would disagree
    with the other workers and readers of the database)."""

    def refuse(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            fail(
                f"{flag} is no longer an option: {key} is a cluster setting kept in the"
                f" database, set once for every worker and reader with"
                f" `job-worker config set {key} {value}`",
                code=2,
            )

    return click.option(
        flag, f"moved_{key}", hidden=True, expose_value=False, callback=refuse, **kwargs
    )
