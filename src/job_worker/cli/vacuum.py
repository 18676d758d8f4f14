"""``job-worker vacuum``: delete old finished jobs and metrics, then reclaim space."""

from __future__ import annotations

import time

import click

from ..monitoring import stats
from ..orm import SUPERUSER_ID, Environment
from ..orm.fields import INT_MAX
from ..queue import config
from ..registry import Registry
from .main import database_options, open_registry
from .output import FiniteFloat, Output, json_option


@click.command()
@database_options()
@click.option(
    "--retention-days",
    default=None,
    type=FiniteFloat(min=0, max=36_500),
    help="Delete done, failed and cancelled jobs last changed before this many days, for"
    " this run only (0 keeps all) [default: the retention_days setting, see job-worker config].",
)
@click.option(
    "--batch",
    default=5000,
    show_default=True,
    type=click.IntRange(1, INT_MAX),
    help="Jobs deleted per transaction.",
)
@click.option("--no-reclaim", is_flag=True, help="Skip VACUUM (reclaiming disk space).")
@json_option
def vacuum(
    database: str,
    load: list[str],
    retention_days: float | None,
    batch: int,
    no_reclaim: bool,
    as_json: bool,
) -> None:
    """Apply the retention now (what the workers' maintenance does a batch at a time)."""
    started = time.monotonic()
    purged = 0
    with open_registry(database, load) as registry:
        if retention_days is None:
            with registry.cursor(readonly=True) as cr:
                retention_days = config.read(cr).retention_days or 0
        while True:
            with registry.cursor() as cr:
                deleted = Environment(cr, SUPERUSER_ID, {})["queue.maintenance"]._purge_old_jobs(
                    retention_days, batch
                )
            purged += deleted
            if deleted < batch:
                break
        with registry.cursor() as cr:
            pruned = Environment(cr, SUPERUSER_ID, {})["queue.metric.snapshot"]._prune(stats.now())
        if not no_reclaim:
            _reclaim(registry)
    result = {
        "retention_days": retention_days or config.FOREVER,
        "jobs_deleted": purged,
        "snapshots_deleted": pruned,
        "reclaimed": not no_reclaim,
        "seconds": round(time.monotonic() - started, 2),
    }
    out = Output(as_json)
    if as_json:
        out.json(result)
    else:
        out.say(
            f"deleted {purged} finished job(s) and {pruned} old snapshot row(s)"
            f"{', reclaimed space' if not no_reclaim else ''} in {result['seconds']} s",
            "green",
        )


def _reclaim(registry: Registry) -> None:
    """The tables that purging shrinks give their space back."""
    registry.backend.reclaim_space(("queue_job", "queue_job_dependency", "queue_metric_snapshot"))
