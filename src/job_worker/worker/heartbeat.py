"""The worker's row of one database: registered at start, heart-beaten, stopped at exit.

Each heartbeat also refreshes the heartbeat of the jobs this worker runs there
(one transaction), so that a live worker's jobs never look abandoned to the
stale-job reclaim. The interval is ``--heartbeat-interval``, or half the
database's stale window when that is shorter (logged once: ``config.conflict``).
Between heartbeats, every ``--cancel-check-interval``, the running jobs are checked
to still be this worker's: the ones cancelled (or otherwise taken away) meanwhile
are returned to the supervisor, which kills their executors.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..db import jobstore
from ..queue import config
from .backoff import Failed
from .database import Database

_logger = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, db: Database):
        self.db = db
        self.next_beat = 0.0
        self.next_cancel_check = 0.0

    def interval(self) -> float:
        """``--heartbeat-interval``, or half the stale window when that is shorter: a
        live worker's jobs never look abandoned."""
        return self._interval(self.db.cluster)

    def _interval(self, cluster: config.ClusterSettings) -> float:
        return min(self.db.settings.heartbeat_interval, cluster.stale_seconds / 2)

    def start(self, cr: Any) -> None:
        """Register the worker, in the transaction that starts serving the database."""
        assert self.db.store is not None
        settings = self.db.settings
        self.db.store.register_worker(
            cr,
            {
                "worker_id": self.db.worker_id,
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "concurrency": settings.concurrency,
                "channels": ",".join(settings.channels),
                "version": __version__,
                "heartbeat_interval": settings.heartbeat_interval,
            },
        )

    def on_settings(
        self, old: config.ClusterSettings, new: config.ClusterSettings, first: bool
    ) -> None:
        """A shorter stale window makes the next heartbeat due now; one not above
        ``--heartbeat-interval`` is a conflict, logged."""
        settings = self.db.settings
        if self._interval(new) < self._interval(old):
            self.next_beat = 0.0
        if (first or new.stale_seconds != old.stale_seconds) and (
            settings.heartbeat_interval >= new.stale_seconds
        ):
            _logger.warning(
                "database %s: stale_seconds %g is not above --heartbeat-interval %g:"
                " heart-beating every %g s instead",
                self.db.name,
                new.stale_seconds,
                settings.heartbeat_interval,
                self.interval(),
                extra={"event": "config.conflict", "database": self.db.name},
            )

    def next_timer(self) -> float:
        return self.next_beat

    def beat(self, now: float) -> bool:
        """The heartbeat, if due; false if the database failed it."""
        if now < self.next_beat:
            return True
        store, worker_id = self.db.store, self.db.worker_id
        assert store is not None

        def heartbeat() -> None:
            with self.db.cursor() as cr:
                store.heartbeat(cr, worker_id)

        if isinstance(self.db.guarded(now, "heartbeat", heartbeat), Failed):
            return False
        self.next_beat = now + self.interval()
        return True

    def cancelled(self, now: float, running: Sequence[jobstore.ClaimedJob]) -> set[int]:
        """The ids of ``running`` jobs no longer started by this worker, if a check is
        due (else none)."""
        if not running or now < self.next_cancel_check:
            return set()
        store, worker_id = self.db.store, self.db.worker_id
        assert store is not None

        def check() -> set[int]:
            with self.db.cursor(readonly=True) as cr:
                return store.not_running(cr, worker_id, [job.id for job in running])

        checked = self.db.guarded(now, "cancel check", check)
        self.next_cancel_check = now + self.db.settings.cancel_check_interval
        return set() if isinstance(checked, Failed) else checked

    def stop(self) -> None:
        """Mark the worker stopped (once: a database that does not answer now is left
        to see it stale)."""
        store, worker_id = self.db.store, self.db.worker_id
        assert store is not None

        def stop() -> None:
            with self.db.cursor() as cr:
                store.stop_worker(cr, worker_id)

        self.db.guarded(0.0, "stop", stop)
