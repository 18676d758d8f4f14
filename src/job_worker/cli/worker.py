"""``job-worker worker``: run jobs until stopped (PRODUCT.md 6)."""

from __future__ import annotations

import click

from ..orm.registry import load_modules
from ..worker import WorkerSettings, logs, run_worker
from .config import moved_option
from .main import split_modules


@click.command()
@click.option(
    "--database",
    "-d",
    "databases",
    multiple=True,
    required=True,
    envvar="JOB_WORKER_DATABASE_URL",
    help="Database URL (sqlite:///file.db or postgresql://...); repeat to serve several.",
)
@click.option(
    "--load",
    "-l",
    "load",
    multiple=True,
    envvar="JOB_WORKER_LOAD",
    help="Python module(s) with your models, comma separated or repeated.",
)
@click.option(
    "--concurrency",
    "-c",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Executor processes, each running one job at a time.",
)
@click.option(
    "--batch",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help=(
        "Jobs an executor holds at most under a backlog of short jobs (sharing its"
        " transactions; about 250 ms of work at their average time). On PostgreSQL each"
        " holds an advisory lock in its executor's transaction."
    ),
)
@moved_option("--default-limit", "default_limit")
@click.option(
    "--channel",
    "channels",
    multiple=True,
    help="Only take jobs of this channel (repeatable; default: every channel).",
)
@click.option(
    "--grace",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds running jobs get to finish after SIGTERM/SIGINT.",
)
@click.option(
    "--heartbeat-interval",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds between heartbeats.",
)
@click.option(
    "--cancel-check-interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds between checks that running jobs were not cancelled meanwhile.",
)
@moved_option("--stale-after", "stale_seconds")
@click.option(
    "--poll-interval",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds between claims when no wake-up comes [default: 1].",
)
@click.option(
    "--maintenance-interval",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds between maintenance runs (by the elected worker).",
)
@click.option(
    "--max-backoff",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Longest wait before a retry, in seconds.",
)
@moved_option("--retention-days", "retention_days")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
def worker(
    databases: tuple[str, ...],
    load: tuple[str, ...],
    concurrency: int,
    batch: int,
    channels: tuple[str, ...],
    grace: float,
    heartbeat_interval: float,
    cancel_check_interval: float,
    poll_interval: float | None,
    maintenance_interval: float,
    max_backoff: float,
    log_format: str,
    log_level: str,
) -> None:
    """Run jobs from one or more databases until SIGTERM/SIGINT.

    The default limit, stale window and retention are cluster settings kept in each
    database (`job-worker config`); a running worker reads them every few seconds.
    Each database must exist and have been set up by ``job-worker init``; one that
    cannot be opened when the worker starts is an error (exit 1), while one that
    goes away later is waited for."""
    modules = split_modules(load)
    try:
        load_modules(modules)  # a module that is missing now would be missing at every retry
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--load'") from exc
    try:
        settings = WorkerSettings(
            databases=tuple(databases),
            modules=tuple(modules),
            concurrency=concurrency,
            batch=batch,
            channels=tuple(channels),
            grace=grace,
            heartbeat_interval=heartbeat_interval,
            cancel_check_interval=cancel_check_interval,
            poll_interval=poll_interval,
            maintenance_interval=maintenance_interval,
            max_backoff=max_backoff,
            log_format=log_format,
            log_level=log_level.upper(),
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    logs.configure(settings.log_format, settings.log_level)
    raise SystemExit(run_worker(settings))
