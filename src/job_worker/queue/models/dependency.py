"""queue.job.dependency: one row per edge of a job graph."""

from __future__ import annotations

from ...orm import fields, models


class QueueJobDependency(models.Model):
    _name = "queue.job.dependency"
    _description = "Job dependency"
    _indexes = [
        models.Index("queue_job_dependency_pair", ("job_id", "parent_id"), unique=True),
        models.Index("queue_job_dependency_parent", ("parent_id",)),
    ]

    job_id = fields.Many2one(
        "queue.job", required=True, ondelete="cascade", help="The job that waits."
    )
    parent_id = fields.Many2one(
        "queue.job", required=True, ondelete="cascade", help="The job it waits for."
    )
    kind = fields.Selection(
        [("done", "On done"), ("error", "On error")],
        required=True,
        default="done",
        help="done: runs once every such parent is done; error: runs once one such parent failed.",
    )
