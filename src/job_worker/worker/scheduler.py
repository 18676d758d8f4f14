"""The worker's side of periodic jobs: enqueue each occurrence of ``queue.cron`` on time.

The scheduler of one database knows the earliest ``next_at`` of the active crons
and tells the supervisor when to wake for it (:attr:`Scheduler.wake_at`), so an
occurrence is enqueued within moments of its time, without polling. It learns of
crons made or changed elsewhere from the producer's wake-ups (PostgreSQL:
``queue.cron`` changes NOTIFY on a channel of their own, so that the wake-ups of
enqueued jobs do not make it read the crons again; SQLite: any change seen by the
listener's ``data_version`` poll) and, as a safety net, re-reads every
:data:`REFRESH_SECONDS`.

Every worker runs one: which of them enqueues an occurrence does not matter, as
the cron row's compare-and-set on ``next_at`` and the unique (cron, occurrence)
key of ``queue.job`` make each occurrence one job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..db import jobstore
from ..orm.api import SUPERUSER_ID, Environment

_logger = logging.getLogger(__name__)

#: seconds between looks at the crons when nothing said they changed
REFRESH_SECONDS = 5.0
#: a change notice re-reads the crons at most this often (seconds): on SQLite every
#: write to the file is one
MIN_REREAD = 0.2


class Scheduler:
    """Due occurrences of periodic jobs, for one database."""

    def __init__(self, database: str = "") -> None:
        self.database = database
        #: monotonic time of the next look: the earliest next_at, or the refresh
        self.wake_at = 0.0
        self.stale = True
        self.last_read = 0.0
        #: what the last look enqueued and skipped, summed since the start
        self.enqueued = 0
        self.skipped = 0

    def changed(self) -> None:
        """Crons may have changed elsewhere: look again soon."""
        self.stale = True

    def next_timer(self) -> float:
        """When :meth:`tick` next has something to do (monotonic)."""
        if self.stale:
            return min(self.wake_at, self.last_read + MIN_REREAD)
        return self.wake_at

    def due(self, now: float) -> bool:
        return now >= self.wake_at or (self.stale and now >= self.last_read + MIN_REREAD)

    def tick(self, now: float, cursor: Callable[[], Any], store: jobstore.JobStore) -> None:
        """Enqueue what is due and learn when the next occurrence falls."""
        if not self.due(now):
            return
        self.stale = False
        self.last_read = now
        with cursor() as cr:
            crons = Environment(cr, SUPERUSER_ID, {})["queue.cron"]
            db_now: datetime = store.now(cr)
            counters = crons._run_due(db_now)
            next_due = crons._next_due()
        self.enqueued += counters["enqueued"]
        self.skipped += counters["skipped"]
        if counters["enqueued"] or counters["skipped"]:
            _logger.info(
                "periodic jobs: %s enqueued, %s skipped",
                counters["enqueued"],
                counters["skipped"],
                extra={"event": "cron.enqueued", "database": self.database, **counters},
            )
        wait = REFRESH_SECONDS
        if next_due is not None:
            wait = min(wait, max((next_due - db_now).total_seconds(), 0.0))
        self.wake_at = now + wait
