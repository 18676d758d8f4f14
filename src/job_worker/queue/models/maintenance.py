"""queue.maintenance: the periodic housekeeping done by one elected worker.

The worker that holds the maintenance lock calls ``_run_maintenance`` every
few seconds, after the stale-job reclaim
(:func:`job_worker.worker.maintenance.reclaim_stale_jobs`). Modules extend it with
``_inherit = "queue.maintenance"`` and ``super()``, adding their own tasks (metric
snapshots, alert rules) and their counters to the result.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ...db.jobstore import job_store
from ...orm import models
from ...rates import MAX_PERIOD
from .. import config


class QueueMaintenance(models.AbstractModel):
    _name = "queue.maintenance"
    _description = "Queue maintenance"

    def _run_maintenance(self, settings: dict[str, Any]) -> dict[str, int]:
        """Run the periodic tasks; return counters of what was done.

        ``settings``: ``retention_days`` (the cluster setting of that name; 0 keeps
        every job), ``retention_batch`` (1000).
        """
        store = job_store(self.env.cr.backend)
        return {
            "jobs_purged": self._purge_old_jobs(
                settings.get("retention_days", config.RETENTION_DAYS),
                settings.get("retention_batch", 1000),
            ),
            # the start log of rate windows: a channel's claims forget its old starts,
            # these are those of channels that no longer start jobs or keep windows
            "starts_forgotten": store.forget_starts_before(
                self.env.cr, store.now(self.env.cr) - timedelta(seconds=MAX_PERIOD)
            ),
        }

    def _purge_old_jobs(self, retention_days: float, batch: int) -> int:
        """Delete one batch of done, failed and cancelled jobs last changed more than
        ``retention_days`` ago (oldest first); 0 days keeps everything."""
        deleted = job_store(self.env.cr.backend).purge(self.env.cr, retention_days, batch)
        if deleted:
            self.env.invalidate_all()
        return deleted
