"""The producer of one database: when to claim, and the claim.

It claims when something says jobs may be waiting: a wake-up from the database
(PostgreSQL LISTEN/NOTIFY; SQLite: the listener's poll of ``data_version``), an
enqueue by one of this worker's own jobs, a finished job (a slot, and maybe a
channel's capacity, came free), a scheduled or rate-limited job falling due, a
change of the cluster settings, and otherwise every ``--poll-interval``. A claim
that finds fewer jobs than wanted puts it to sleep until one of those.
"""

from __future__ import annotations

from collections.abc import Callable

from ..db import jobstore
from .backoff import FAILED, Failed
from .database import Database


class Producer:
    """Claims (exact limits: see ``JobStore.claim``) and wake-ups of one database."""

    def __init__(self, db: Database, on_crons_changed: Callable[[], None] = lambda: None):
        self.db = db
        #: called when the database says periodic jobs may have changed (the scheduler
        #: reads them again); a wake-up for jobs alone does not call it
        self.on_crons_changed = on_crons_changed
        self.listener: jobstore.Listener | None = None
        #: seconds between claims when nothing woke the worker
        self.fallback_interval = db.settings.poll_interval or 1.0
        #: seconds between looks at the listener, if it must be polled (SQLite)
        self.listener_poll: float | None = None
        #: whether a claim may find jobs now
        self.woken = True
        #: when a scheduled or rate-limited job falls due (monotonic), if known
        self.due_at: float | None = None
        self.next_fallback = 0.0
        self.next_poll = 0.0
        #: whether the last claim left no job a claim could take (only limits hold
        #: jobs back): executors may then hand their capacity on
        self.exhausted = False

    def start(self) -> None:
        """Listen (the database is open): may raise while the database is down."""
        if self.listener is None:
            assert self.db.store is not None
            self.listener = self.db.store.listener()
            self.listener_poll = self.listener.poll_interval
        self.listener.open()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()

    def tick(self, now: float) -> bool:
        """Listen again if the listener lost its connection; false if that failed."""
        assert self.listener is not None
        if self.listener.fileno() is None:
            return self.db.guarded(now, "listen", self.listener.open) is not FAILED
        return True

    def wake(self) -> None:
        """Claim at the next turn of the loop."""
        self.woken = True

    # -- wake-ups -------------------------------------------------------------------

    def wakeup_fd(self) -> int | None:
        return self.listener.fileno() if self.listener is not None else None

    def on_wakeup_fd(self) -> None:
        assert self.listener is not None
        if self.listener.woken():
            self.woken = True
        if self.listener.crons_changed():
            self.on_crons_changed()

    def wants_to_claim(self, now: float) -> bool:
        """Whether a claim could find jobs: woken up, a scheduled job or a rate-limited
        channel became due, the listener's poll saw a change, or the fallback poll."""
        if not self.db.available(now):
            return False
        if self.woken:
            return True
        if self.due_at is not None and now >= self.due_at:
            self.due_at = None
            self.woken = True
        elif now >= self.next_fallback:
            self.woken = True
        elif self.listener_poll is not None and now >= self.next_poll:
            assert self.listener is not None
            self.next_poll = now + self.listener_poll
            self.woken = self.db.guarded(now, "poll", self.listener.woken) is True
            if self.listener.crons_changed():
                self.on_crons_changed()
        return self.woken

    def next_timer(self) -> float:
        """When :meth:`wants_to_claim` may next say yes without a wake-up."""
        timers = [self.next_fallback]
        if self.due_at is not None:
            timers.append(self.due_at)
        if self.listener_poll is not None:
            timers.append(self.next_poll)
        return min(timers)

    # -- the claim -------------------------------------------------------------------

    def claim(self, now: float, wanted: int) -> list[jobstore.ClaimedJob]:
        db, store = self.db, self.db.store
        assert store is not None
        channels = db.settings.channels or None

        def claim() -> jobstore.Claim:
            cr = db.cursor()
            try:
                return store.claim(
                    cr,
                    worker_id=db.worker_id,
                    wanted=wanted,
                    default_limit=db.cluster.default_limit,
                    channels=channels,
                )
            finally:
                cr.close()

        result = db.guarded(now, "claim", claim)
        if isinstance(result, Failed):
            self.exhausted = False
            return []
        self.exhausted = result.exhausted
        if len(result.jobs) < wanted:  # nothing more for now: sleep until told otherwise
            self.woken = False
            self.next_fallback = now + self.fallback_interval
            if result.retry_in is not None:
                self.due_at = now + result.retry_in + 0.001
        return result.jobs
