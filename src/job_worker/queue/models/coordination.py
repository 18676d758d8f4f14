"""What workers coordinate through: leases, the start log of rate windows, and the
indexes of the claim and of the stale-job reclaim.

The worker's SQL lives in the job store (:mod:`job_worker.db.jobstore`); this module
gives it the columns and indexes it needs. The reclaim itself is the worker's
maintenance (:func:`job_worker.worker.maintenance.reclaim_stale_jobs`).
"""

from __future__ import annotations

from ...orm import fields, models


class QueueJob(models.Model):
    _inherit = "queue.job"
    _indexes = [
        # running jobs of a channel, counted by every claim
        models.Index("queue_job_started_channel", ("channel",), where="state = 'started'"),
        # when the next scheduled job becomes due
        models.Index("queue_job_pending_due", ("scheduled_at",), where="state = 'pending'"),
        # whether a channel has pending jobs with a fair key (one probe per claim: the
        # smallest key, read from the index whatever the statistics say)
        models.Index(
            "queue_job_pending_keyed",
            ("channel", "fair_key"),
            where="state = 'pending' AND fair_key <> ''",
        ),
        # stale-job reclaim
        models.Index("queue_job_started_heartbeat", ("heartbeat",), where="state = 'started'"),
    ]


class QueueChannelStart(models.Model):
    """One start of a job in a channel with rate windows: the claim counts the starts
    of each window from them, and forgets those older than the channel's longest."""

    _name = "queue.channel.start"
    _description = "Channel start"
    _order = "started_at desc"
    _indexes = [models.Index("queue_channel_start_time", ("channel", "started_at"))]

    channel = fields.Char(required=True, readonly=True)
    started_at = fields.Datetime(required=True, readonly=True)


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
