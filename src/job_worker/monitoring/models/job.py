"""Indexes on queue.job that the dashboard's job list and KPIs read through."""

from __future__ import annotations

from ...orm import models

PG = ("postgresql",)


class QueueJob(models.Model):
    _inherit = "queue.job"
    _indexes = [
        # the job list filtered by state, newest first (keyset pagination on id)
        models.Index("queue_job_state_id", ("state", "id")),
        # a Queue Job User's own jobs, newest first
        models.Index("queue_job_user_id", ("user_id", "id")),
        # failed jobs that spent their retries (the KPI and its list, for anyone): only
        # those rows are in it, so the count never reads the other failed jobs' rows
        models.Index(
            "queue_job_exhausted",
            ("user_id", "id"),
            where="state = 'failed' AND max_retries > 0 AND attempts > max_retries",
        ),
        # PostgreSQL, for 10^7 jobs: a plain user's jobs in one state (their lists and
        # overview's counts) and finished in a window (its throughput and failures),
        # and a channel's jobs in one state (also every channel's name, one probe each).
        # On SQLite each index a job's change touches is one page more written at every
        # commit of the worker (about 25 us a job each, measured): there the lists of a
        # user or a channel read (user_id, id) and (channel).
        models.Index("queue_job_user_state", ("user_id", "state", "id"), dialects=PG),
        models.Index("queue_job_user_state_date", ("user_id", "state", "write_date"), dialects=PG),
        models.Index("queue_job_channel_state", ("channel", "state", "id"), dialects=PG),
        models.Index("queue_job_channel_index", ("channel",), dialects=("sqlite",)),
    ]
