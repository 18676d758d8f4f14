"""The monitoring module: metric snapshots, counters and alert rules, loaded by every registry.

Its models are kept up to date by the worker that holds the maintenance lock
(``queue.maintenance`` is extended here); the dashboard, ``/metrics`` and
``job-worker stats`` read them together with the live queue (:mod:`.stats`).
"""

from __future__ import annotations

from . import models  # noqa: F401  (defines the models)

DEPENDS = ["job_worker.queue"]
