"""What workers coordinate through: leases, rate-limit state, and reclaiming the jobs
of workers that died.

The worker's SQL lives in :mod:`job_worker.db.jobstore`; this module gives it
the columns and indexes it needs and hooks stale-job reclaim into the
elected worker's maintenance run.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from ...db import jobstore
from ...exceptions import WorkerDiedJobError
from ...orm import fields, models
from .. import config, states

_logger = logging.getLogger(__name__)


class QueueJob(models.Model):
    _inherit = "queue.job"
    _indexes = [
        # running jobs of a channel, counted by every claim
        models.Index("queue_job_started_channel", ("channel",), where="state = 'started'"),
        # when the next scheduled job becomes due
        models.Index("queue_job_pending_due", ("scheduled_at",), where="state = 'pending'"),
        # stale-job reclaim
        models.Index("queue_job_started_heartbeat", ("heartbeat",), where="state = 'started'"),
    ]


class QueueLimit(models.Model):
    _inherit = "queue.limit"

    last_started_at = fields.Datetime(
        readonly=True,
        help="When the channel last started a job (rate-limited channels): the next start "
        "comes 1/rate_limit seconds later at the earliest.",
    )


class QueueLease(models.Model):
    """A named role held by one worker until ``expires_at`` unless renewed (SQLite's
    maintenance election; PostgreSQL uses a session advisory lock)."""

    _name = "queue.lease"
    _description = "Worker lease"
    _rec_name = "name"
    _indexes = [models.Index("queue_lease_name_unique", ("name",), unique=True)]

    name = fields.Char(required=True)
    holder = fields.Char(required=True, help="worker_id of the holder")
    expires_at = fields.Datetime(required=True)


class QueueMaintenance(models.AbstractModel):
    _inherit = "queue.maintenance"

    def _run_maintenance(self, settings: dict[str, Any]) -> dict[str, int]:
        """Adds ``jobs_reclaimed``; settings ``stale_after`` (the ``stale_seconds`` cluster
        setting) and ``max_backoff``."""
        counters = super()._run_maintenance(settings)  # type: ignore[misc]
        counters["jobs_reclaimed"] = self._reclaim_stale_jobs(
            settings.get("stale_after", config.STALE_SECONDS),
            settings.get("max_backoff", states.DEFAULT_MAX_BACKOFF),
        )
        return counters

    def _reclaim_stale_jobs(self, stale_after: float, max_backoff: float, batch: int = 100) -> int:
        """Started jobs whose heartbeat is older than ``stale_after`` seconds and whose
        executor is provably gone: the attempt counts with WorkerDiedJobError, and the
        job is retried or fails as its budget says."""
        store = jobstore.for_backend(self.env.cr.backend)
        now = store.now(self.env.cr)
        stale = store.stale_jobs(self.env.cr, now - timedelta(seconds=stale_after), batch)
        reclaimed = 0
        for job in stale:
            error = WorkerDiedJobError(
                f"worker {job.worker_id} stopped heart-beating for more than {stale_after:g} s"
            )
            # guarded by the dead worker's id (None: no guard, the job had no worker)
            new_state = states.record_failure(
                self.env.cr, job.id, error, worker_id=job.worker_id, max_backoff=max_backoff
            )
            if new_state is not None:
                reclaimed += 1
                _logger.log(
                    logging.ERROR if new_state == "failed" else logging.WARNING,
                    "reclaimed job %s of dead worker %s: now %s",
                    job.id,
                    job.worker_id,
                    new_state,
                    extra={
                        "event": "job.reclaimed",
                        "job_id": job.id,
                        "worker": job.worker_id,
                        "state": new_state,
                    },
                )
        return reclaimed
