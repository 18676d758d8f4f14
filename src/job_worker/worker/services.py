"""The supervisor's side of one database: its services, started and stopped together.

===============  ====================================================================
service          what it does
===============  ====================================================================
producer         claims, and the wake-ups that say when (:mod:`.producer`)
heartbeat        the worker's row: register, heartbeats, stop; cancel checks
                 (:mod:`.heartbeat`)
cluster          the cluster settings, re-read every ``config.REFRESH_SECONDS``
                 (:mod:`.cluster`)
recorder         state changes owed to jobs of lost executors (:mod:`.recorder`)
scheduler        periodic jobs enqueued on time (:mod:`.scheduler`)
maintenance      the elected maintenance, in a thread of its own (:mod:`.maintenance`)
===============  ====================================================================

They share a :class:`~.database.Database` (session, store, cluster settings, and
one backoff: an outage seen by one holds the others back). The supervisor's event
loop drives them: :meth:`DatabaseServices.tick` when :meth:`next_timer` is due,
:meth:`~.producer.Producer.claim` when executors want jobs. Nothing here runs on a
thread of its own but the maintenance.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

from ..db import jobstore
from ..queue import config
from .cluster import ClusterWatch
from .database import Database
from .heartbeat import Heartbeat
from .maintenance import Maintenance
from .producer import Producer
from .recorder import Recorder
from .scheduler import Scheduler
from .settings import WorkerSettings

_logger = logging.getLogger(__name__)


class DatabaseServices:
    def __init__(self, index: int, url: str, settings: WorkerSettings, worker_id: str):
        self.db = Database(index, url, settings, worker_id)
        self.scheduler = Scheduler(self.db.name)
        self.producer = Producer(self.db, on_crons_changed=self.scheduler.changed)
        self.heartbeat = Heartbeat(self.db)
        self.recorder = Recorder(self.db)
        self.cluster = ClusterWatch(self.db)
        self.cluster.subscribe(self.heartbeat.on_settings)
        self.cluster.subscribe(self._on_settings)
        self.maintenance: Maintenance | None = None
        #: registered in the database, the services running
        self.started = False

    @property
    def index(self) -> int:
        return self.db.index

    def open(self) -> None:
        """Open the database, once, as the worker starts (raises if it cannot be:
        see :meth:`.database.Database.open`)."""
        db = self.db
        db.open()
        assert db.store is not None
        self.maintenance = Maintenance(
            db.store, db.registry, db.settings, db.worker_id, db.name, cluster=lambda: db.cluster
        )

    def ensure_started(self, now: float) -> bool:
        """Start serving the database if it answers (or not yet: false)."""
        if self.started:
            return True
        if not self.db.available(now):
            return False
        return self.db.guarded(now, "start", self._start) is True

    def _start(self) -> bool:
        if self.db.registry is None:
            self.open()
        self.producer.start()
        with self.db.cursor() as cr:  # registered with the settings it starts with
            self.heartbeat.start(cr)
            self.cluster.start(cr)
        self.started = True
        _logger.info(
            "serving database %s",
            self.db.name,
            extra={"event": "worker.database", "database": self.db.name},
        )
        return True

    def _on_settings(
        self, old: config.ClusterSettings, new: config.ClusterSettings, first: bool
    ) -> None:
        if not first and new != old:
            self.producer.wake()  # a higher default limit may let jobs start now

    def tick(self, now: float, running: Sequence[jobstore.ClaimedJob]) -> set[int]:
        """Whatever is due but claims: heartbeats, settings, cancel checks, owed changes,
        periodic jobs (and the maintenance thread started). Returns the ids of
        ``running`` jobs that were cancelled (or otherwise taken away) meanwhile."""
        db = self.db
        if not self.started or not db.available(now):
            return set()
        assert self.maintenance is not None and db.store is not None
        self.maintenance.start()  # once; again if its thread ever ended
        if not self.producer.tick(now) or not self.heartbeat.beat(now):
            return set()
        self.cluster.tick(now)
        taken = self.heartbeat.cancelled(now, running)
        self.recorder.apply(now)
        if self.scheduler.due(now):
            db.guarded(now, "periodic jobs", partial(self.scheduler.tick, now, db.cursor, db.store))
        return taken

    def next_timer(self, now: float, idle_slots: bool) -> float:
        """When :meth:`tick` (or, with idle slots, a claim) next has something to do."""
        if not self.started or not self.db.available(now):
            return max(self.db.backoff.down_until, now + 0.05)
        timers = [
            self.heartbeat.next_timer(),
            self.cluster.next_timer(),
            self.scheduler.next_timer(),
        ]
        if idle_slots:
            timers.append(self.producer.next_timer())
        owed = self.recorder.next_timer(now)
        if owed is not None:
            timers.append(owed)
        return min(timers)

    def wants_to_claim(self, now: float) -> bool:
        return self.started and self.producer.wants_to_claim(now)

    def wakeup_fd(self) -> int | None:
        return self.producer.wakeup_fd() if self.started else None

    def on_wakeup_fd(self, now: float) -> None:
        self.db.guarded(now, "wake-up", self.producer.on_wakeup_fd)

    def stop(self) -> None:
        """Stop every service and close the database (once the worker is done with it:
        owed changes are the supervisor's to apply before)."""
        if self.maintenance is not None:
            self.maintenance.stop()
        if self.started:
            self.heartbeat.stop()
        self.producer.stop()
        self.db.close()
