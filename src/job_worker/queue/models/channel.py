"""queue.channel: what a channel's jobs asked of the channel as a whole (a backoff).

A job raises :class:`~job_worker.exceptions.ChannelBackoff`: its channel starts no job
until ``backoff_until`` (the database's clock), on any worker. The row is written by
the job store (:meth:`job_worker.db.jobstore.JobStore.back_off_channel`, an upsert by
name that only ever moves ``backoff_until`` later) in the transaction that returns the
job to pending; the claim reads it under its lock, like the channel's limits.
"""

from __future__ import annotations

from datetime import datetime

from ...db.jobstore import ChannelBackoffState, job_store, notify_jobs_enqueued
from ...orm import fields, models


class QueueChannel(models.Model):
    _name = "queue.channel"
    _description = "Channel state"
    _order = "name"
    _indexes = [models.Index("queue_channel_name_unique", ("name",), unique=True)]

    name = fields.Char("Channel", required=True, readonly=True)
    backoff_until = fields.Datetime(
        readonly=True, help="The channel starts no job before this moment (UTC)."
    )
    backoff_reason = fields.Text(readonly=True, help="Why the job that paused it asked.")
    backoff_job_id = fields.Many2one(
        "queue.job", "Backoff asked by", readonly=True, ondelete="set null"
    )
    backoff_set_at = fields.Datetime(readonly=True, help="When the current pause was asked for.")
    backoff_count = fields.Integer(
        default=0, readonly=True, help="Backoffs its jobs signalled, ever (a counter)."
    )

    def active_backoffs(self, now: datetime | None = None) -> dict[str, ChannelBackoffState]:
        """The channels paused now (the database's clock unless ``now`` is given), each
        with until when, why and the job that asked."""
        store = job_store(self.env.cr.backend)
        if now is None:
            now = store.now(self.env.cr)
        return store.channel_backoffs(self.env.cr, now)

    def lift_backoff(self, channel: str) -> bool:
        """End the pause of ``channel`` now; whether it had one. Idle workers are woken
        (at commit) so that its jobs start at once."""
        cr = self.env.cr
        lifted = job_store(cr.backend).lift_channel_backoff(cr, channel)
        cr.cache.pop(self._name, None)  # its row changed under the record cache
        if lifted:
            notify_jobs_enqueued(cr)
        return lifted


class QueueJob(models.Model):
    _inherit = "queue.job"

    backoffs = fields.Integer(
        default=0,
        readonly=True,
        help="Times the job paused its channel and returned to pending without counting"
        " an attempt (bounded by the max_channel_backoffs setting).",
    )
