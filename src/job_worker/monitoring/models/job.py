"""Indexes on queue.job that the dashboard's job list and KPIs read through."""

from __future__ import annotations

from ...orm import models


class QueueJob(models.Model):
    _inherit = "queue.job"
    _indexes = [
        # the job list filtered by state, newest first (keyset pagination on id)
        models.Index("queue_job_state_id", ("state", "id")),
        # a Queue Job User's own jobs, newest first
        models.Index("queue_job_user_id", ("user_id", "id")),
    ]
