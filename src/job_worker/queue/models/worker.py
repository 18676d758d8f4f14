"""queue.worker: the worker processes alive (or recently alive) on this database."""

from __future__ import annotations

from ...orm import fields, models


class QueueWorker(models.Model):
    _name = "queue.worker"
    _description = "Worker"
    _order = "heartbeat desc"
    _rec_name = "worker_id"
    _indexes = [models.Index("queue_worker_worker_id_unique", ("worker_id",), unique=True)]

    worker_id = fields.Char(
        "Worker", required=True, help="hostname:pid:random, also written on the jobs it runs"
    )
    hostname = fields.Char()
    pid = fields.Integer()
    concurrency = fields.Integer(help="Executor processes of this worker.")
    channels = fields.Char(help="Channels this worker takes jobs from (empty: all).")
    started_at = fields.Datetime()
    heartbeat = fields.Datetime(index=True, help="Last sign of life; stale after the stale window.")
    heartbeat_interval = fields.Float(
        help="Seconds between its heartbeats: the stale window (stale_seconds) must exceed it."
    )
    stopped_at = fields.Datetime(help="Set when the worker stopped cleanly.")
    version = fields.Char()
