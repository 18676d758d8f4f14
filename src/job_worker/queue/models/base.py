"""What every model gains from the queue: ``with_delay()``, ``delayable()`` and
the ``_job_store_values()`` hook."""

from __future__ import annotations

from typing import Any

from ...orm import models
from ..delayable import Delayable, DelayProxy


class Base(models.AbstractModel):
    _inherit = "base"

    def with_delay(self, **options: Any) -> DelayProxy:
        """``records.with_delay(priority=5).method(*args)`` enqueues the call and
        returns the queue.job record."""
        return DelayProxy(Delayable(self, **options))

    def delayable(self, **options: Any) -> Delayable:
        """A :class:`Delayable` capturing one call, to be enqueued with ``.delay()``,
        alone or in a graph."""
        return Delayable(self, **options)

    def _job_store_values(self, job_vals: dict[str, Any]) -> dict[str, Any]:
        """The values given to ``queue.job.create()`` for a job on these records.

        Override to add fields or change ``company_id``, ``name``, ``channel``
        or ``priority``; the call itself (model, method, ids, args, kwargs,
        state, uuid) cannot be changed.
        """
        return job_vals

    @classmethod
    def _job_store_values_is_default(cls) -> bool:
        """No model overrides ``_job_store_values``: the queue may skip calling it."""
        return cls._job_store_values is Base._job_store_values
