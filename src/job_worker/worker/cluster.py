"""The cluster settings of one database, read at start and every ``config.REFRESH_SECONDS``.

The default limit, stale window and retention live in the database
(:mod:`job_worker.queue.config`): a change made with ``job-worker config set``
reaches the claims, the heartbeat and the maintenance of every running worker
within ``config.REFRESH_SECONDS``. A change is logged once (``config.changed``)
and passed to the services that subscribed (the heartbeat shortens its interval,
the producer claims again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..queue import config
from .database import Database

_logger = logging.getLogger(__name__)

#: what a subscriber is called with: the settings before and after a read
OnChange = Callable[[config.ClusterSettings, config.ClusterSettings, bool], None]


class ClusterWatch:
    """Reads the cluster settings into ``db.cluster`` and tells the subscribers."""

    def __init__(self, db: Database):
        self.db = db
        self.next_read = 0.0
        self.subscribers: list[OnChange] = []

    def subscribe(self, on_change: OnChange) -> None:
        """Call ``on_change(old, new, first)`` after each read (``first``: at start)."""
        self.subscribers.append(on_change)

    def start(self, cr: Any) -> None:
        """The first read, in the transaction that registers the worker."""
        self._use(config.read(cr), first=True)

    def next_timer(self) -> float:
        return self.next_read

    def tick(self, now: float) -> None:
        if now < self.next_read:
            return
        self.next_read = now + config.REFRESH_SECONDS
        self.db.guarded(now, "settings", self._read)

    def _read(self) -> None:
        with self.db.cursor(readonly=True) as cr:
            self._use(config.read(cr))

    def _use(self, new: config.ClusterSettings, first: bool = False) -> None:
        old, self.db.cluster = self.db.cluster, new
        if not first and new != old:
            changes = [
                f"{key} {known.as_text(getattr(old, key))} -> {known.as_text(getattr(new, key))}"
                for key, known in config.SETTINGS.items()
                if getattr(old, key) != getattr(new, key)
            ]
            _logger.info(
                "database %s: cluster settings changed: %s",
                self.db.name,
                ", ".join(changes),
                extra={"event": "config.changed", "database": self.db.name},
            )
        for on_change in self.subscribers:
            on_change(old, new, first)
