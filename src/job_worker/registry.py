"""job_worker's registry: the record runtime's registry with the product's own modules.

The ORM (:mod:`job_worker.orm`) composes models for whatever modules it is given
and knows nothing of the queue. The product always needs its queue
(``queue.job``, ``queue.cron`` ...) and its monitoring (snapshots, alert rules):
:class:`Registry` here loads them first, before the modules it is given. It is
the one ``from job_worker import Registry`` gives, and the one every part of
job_worker (CLI, worker, dashboard) builds.
"""

from __future__ import annotations

from .orm import registry as _orm


class Registry(_orm.Registry):
    """Models composed from job_worker's own modules (users and companies, the queue,
    its monitoring), then ``modules``, for the database at ``database_url``; the rest
    is :class:`job_worker.orm.Registry`'s."""

    builtin_modules = (*_orm.Registry.builtin_modules, "job_worker.queue", "job_worker.monitoring")
