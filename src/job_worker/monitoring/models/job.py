"""Indexes on queue.job that the dashboard's job list and KPIs read through."""

from __future__ import annotations

from ...orm import models


class QueueJob(models.Model):
    _inherit = "queue.job"
    _indexes = [
        # the job list filtered by state, newest first (keyset pagination on id)
        models.Index("queue_job_state_id", ("state", "id")),
        # ... in one channel (also every channel's name, one probe each: the filter's list)
        models.Index("queue_job_channel_state", ("channel", "state", "id")),
        # a Queue Job User's own jobs, newest first
        models.Index("queue_job_user_id", ("user_id", "id")),
        # ... in one state (their lists and the counts of their overview)
        models.Index("queue_job_user_state", ("user_id", "state", "id")),
        # ... finished in a window (their overview's throughput and failures)
        models.Index("queue_job_user_state_date", ("user_id", "state", "write_date")),
        # failed jobs that spent their retries (the KPI and its list, for anyone): only
        # those rows are in it, so the count never reads the other failed jobs' rows
        models.Index(
            "queue_job_exhausted",
            ("user_id", "id"),
            where="state = 'failed' AND max_retries > 0 AND attempts > max_retries",
        ),
    ]
