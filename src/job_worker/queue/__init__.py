"""The queue module: queue.job, queue.limit, job graphs, loaded by every registry."""

from __future__ import annotations

from typing import Any

from ..db.jobstore import job_store
from ..orm.schema import Migration
from . import models  # noqa: F401  (defines the models)

DEPENDS = ["job_worker.base"]


def _rebuild_pending_index(cr: Any) -> None:
    """The pending index gained the fair key: the schema sync creates it anew."""
    cr.execute("DROP INDEX IF EXISTS queue_job_pending")


def _drop_redundant_indexes(cr: Any) -> None:
    """``(state)`` leads ``(state, id)`` and ``(state, write_date)``; ``(channel)`` leads
    ``(channel, state, id)``, which replaces it on PostgreSQL; ``(cron_id)`` is read through the unique
    ``(cron_id, cron_occurrence)``: each cost every job change an index entry for
    nothing."""
    names = ["queue_job_state_index", "queue_job_cron_id_index"]
    if cr.backend.dialect == "postgresql":  # SQLite keeps (channel): see monitoring's
        names.append("queue_job_channel_index")
    for name in names:
        cr.execute(f"DROP INDEX IF EXISTS {name}")


def _install_counts(env: Any) -> None:
    """The waiting and pending jobs of each channel, kept by triggers (counted once now)."""
    job_store(env.cr.backend).install_counts(env.cr)


MIGRATIONS = [
    Migration(
        1,
        "the pending jobs' index leads each priority with the fair key",
        pre=_rebuild_pending_index,
    ),
    Migration(
        2,
        "waiting and pending jobs counted by channel in queue_job_count, kept by triggers",
        post=_install_counts,
    ),
    Migration(
        3,
        "indexes for a plain user's jobs, a channel's jobs by state and the jobs that spent"
        " their retries; the indexes on state, channel and cron_id alone are dropped",
        pre=_drop_redundant_indexes,
    ),
]

GROUPS = [
    ("queue_job.group_user", "Queue Job User"),
    ("queue_job.group_manager", "Queue Job Manager"),
]


def init_data(env: Any) -> None:
    """The dashboard roles, as res.groups; the kept counts of the jobs."""
    env["res.groups"].create([{"key": key, "name": name} for key, name in GROUPS])
    _install_counts(env)


def sync_data(env: Any) -> None:
    """The periodic jobs declared in code with ``@api.periodic``, as queue.cron rows."""
    env["queue.cron"]._sync_declared()
