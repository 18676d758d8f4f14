"""queue.channel: what a channel's jobs asked of the channel as a whole (a backoff), and
where its fair keys' rotation stands; queue.fair.key: the weights managers give fair keys.

A job raises :class:`~job_worker.exceptions.ChannelBackoff`: its channel starts no job
until ``backoff_until`` (the database's clock), on any worker. The row is written by
the job store (:meth:`job_worker.db.jobstore.JobStore.back_off_channel`, an upsert by
name that only ever moves ``backoff_until`` later) in the transaction that returns the
job to pending; the claim reads it under its lock, like the channel's limits. The claim
also writes ``fair_cursor`` and ``fair_turn`` there (:mod:`job_worker.db.jobstore`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...db.jobstore import ChannelBackoffState, job_store, notify_jobs_enqueued
from ...orm import fields, models
from ...orm.fields import INT_MAX, short_repr
from ..options import CHANNEL_RE, MAX_CHANNEL_LENGTH, MAX_FAIR_KEY_LENGTH


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
    fair_cursor = fields.Char(
        readonly=True,
        help="The fair key that had the channel's last turn: the next claim starts after it.",
    )
    fair_turn = fields.Integer(
        readonly=True,
        help="Jobs the key of fair_cursor has started in its turn (a key of weight w has w).",
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


class QueueFairKey(models.Model):
    """A fair key given more than one turn per round in its channel."""

    _name = "queue.fair.key"
    _description = "Fair key weight"
    _order = "channel, fair_key"
    _indexes = [
        models.Index("queue_fair_key_unique", ("channel", "fair_key"), unique=True),
    ]

    channel = fields.Char(required=True)
    fair_key = fields.Char(required=True)
    weight = fields.Integer(
        required=True,
        default=1,
        help="Jobs the key may start per round of its channel's rotation (1 = one, like "
        "every key without a row).",
    )

    def _check_values(self, vals: dict[str, Any]) -> None:
        channel = vals.get("channel")
        if "channel" in vals and (not isinstance(channel, str) or not CHANNEL_RE.match(channel)):
            raise ValueError(
                f"queue.fair.key channel must be a channel name (1 to {MAX_CHANNEL_LENGTH} "
                f"letters, digits, '.', '_' or '-'), got {short_repr(channel)}"
            )
        key = vals.get("fair_key")
        if "fair_key" in vals and (
            not isinstance(key, str) or not 1 <= len(key) <= MAX_FAIR_KEY_LENGTH
        ):
            raise ValueError(
                f"queue.fair.key fair_key must be a text of 1 to {MAX_FAIR_KEY_LENGTH} "
                f"characters, got {short_repr(key)}"
            )
        weight = vals.get("weight")
        if "weight" in vals and (
            isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= INT_MAX
        ):
            raise ValueError(
                f"queue.fair.key weight must be an int from 1 to {INT_MAX}, got {short_repr(weight)}"
            )

    def create(self, vals_list: Any) -> Any:
        for vals in [vals_list] if isinstance(vals_list, dict) else vals_list:
            self._check_values(vals)
        return super().create(vals_list)

    def write(self, vals: dict[str, Any]) -> bool:
        self._check_values(vals)
        return super().write(vals)

    def set_weight(self, channel: str, fair_key: str, weight: int) -> Any:
        """Give ``fair_key`` of ``channel`` ``weight`` turns per round; weight 1 removes
        the row (every key has 1 turn without one). Returns the record (empty for 1)."""
        self._check_values({"channel": channel, "fair_key": fair_key, "weight": weight})
        record = self.search([("channel", "=", channel), ("fair_key", "=", fair_key)])
        if weight == 1:
            record.unlink()
            return self.browse(())
        if record:
            record.write({"weight": weight})
            return record
        return self.create({"channel": channel, "fair_key": fair_key, "weight": weight})


class QueueJob(models.Model):
    _inherit = "queue.job"

    backoffs = fields.Integer(
        default=0,
        readonly=True,
        help="Times the job paused its channel and returned to pending without counting"
        " an attempt (bounded by the max_channel_backoffs setting).",
    )
