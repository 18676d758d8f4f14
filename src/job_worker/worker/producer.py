"""The supervisor's side of one database: claims, heartbeats, cancellation checks,
state changes on behalf of killed executors; it starts and stops the elected
maintenance, which runs beside the event loop (:mod:`.maintenance`).

Every database operation here is short and may fail: the database may be
restarting, or (SQLite) another process may hold the write lock. A failure
logs once, backs off (0.1 s doubling to 5 s) and the operation is tried again
later; nothing the producer owes the database is dropped meanwhile
(:class:`PendingChange` stays queued until it commits).

The cluster settings (default limit, stale window, retention) are read from the
database at start and again every ``config.REFRESH_SECONDS``: a change made with
``job-worker config set`` reaches the claims and the maintenance within that time.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from .. import __version__
from ..db import jobstore, redact_url
from ..exceptions import TimeoutJobError, WorkerDiedJobError
from ..orm.api import SUPERUSER_ID, Environment
from ..orm.schema import installed_modules
from ..queue import config, states
from ..registry import Registry
from .executor import FailureReport
from .maintenance import Maintenance
from .scheduler import Scheduler
from .settings import WorkerSettings

_logger = logging.getLogger(__name__)
T = TypeVar("T")

MIN_BACKOFF = 0.1


class Failed:
    """What :meth:`Producer.guarded` returns when the operation failed."""


FAILED = Failed()
MAX_BACKOFF = 5.0


@dataclass
class PendingChange:
    """A state change the supervisor owes a job whose executor it lost.

    ``kind``: ``timeout`` and ``died`` count an attempt (TimeoutJobError,
    WorkerDiedJobError); ``stop`` returns the job to pending without counting
    one; ``failure`` records an executor's failure it could not record itself.
    """

    kind: str
    job: jobstore.ClaimedJob
    detail: str = ""
    session_id: int | None = None
    report: FailureReport | None = None
    attempts: int = 0


class Producer:
    def __init__(self, db_index: int, url: str, settings: WorkerSettings, worker_id: str):
        self.db_index = db_index
        self.url = url
        self.settings = settings
        self.worker_id = worker_id
        self.registry: Registry | None = None
        self.store: jobstore.JobStore | None = None
        self.session: jobstore.Session | None = None
        self.listener: jobstore.Listener | None = None
        self.maintenance: Maintenance | None = None
        #: seconds between claims when nothing woke the worker
        self.fallback_interval = settings.poll_interval or 1.0
        #: seconds between looks at the listener, if it must be polled (SQLite)
        self.listener_poll: float | None = None
        self.pending: list[PendingChange] = []
        self.woken = True
        self.due_at: float | None = None
        self.next_fallback = 0.0
        self.next_poll = 0.0
        self.down_until = 0.0
        self.backoff = 0.0
        self.failing_since: float | None = None
        self.next_heartbeat = 0.0
        self.next_cancel_check = 0.0
        self.next_settings_read = 0.0
        #: the cluster settings of this database, as last read
        self.cluster = config.ClusterSettings()
        self.registered = False
        #: periodic jobs: enqueues their occurrences on time
        self.scheduler = Scheduler(self._name())

    # -- guarded database work ----------------------------------------------------

    def available(self, now: float) -> bool:
        return now >= self.down_until

    def guarded(self, now: float, what: str, func: Callable[[], T]) -> T | Failed:
        """Run ``func``; on failure log, back off and return :data:`FAILED`."""
        try:
            result = func()
        except Exception as exc:
            if self.session is not None and self.session.broken:
                self.session.close()
            self.backoff = min(max(self.backoff * 2, MIN_BACKOFF), MAX_BACKOFF)
            self.down_until = now + self.backoff
            if self.failing_since is None:
                self.failing_since = now
                _logger.warning(
                    "database %s unavailable during %s: %s: %s; retrying",
                    self._name(),
                    what,
                    type(exc).__name__,
                    exc,
                    extra={"event": "db.unavailable", "database": self._name(), "during": what},
                )
            else:
                _logger.debug(
                    "database %s still unavailable (%s)",
                    self._name(),
                    exc,
                    extra={"event": "db.retry", "database": self._name()},
                )
            return FAILED
        if self.failing_since is not None:
            _logger.warning(
                "database %s available again after %.1f s",
                self._name(),
                now - self.failing_since,
                extra={"event": "db.recovered", "database": self._name()},
            )
            self.failing_since = None
        self.backoff = 0.0
        return result

    def _name(self) -> str:
        return redact_url(self.url.split("@")[-1])  # no user, no password

    def cursor(self, *, readonly: bool = False) -> Any:
        assert self.session is not None
        return self.session.cursor(self.registry, readonly=readonly)

    # -- start and stop -------------------------------------------------------------

    def ensure_started(self, now: float) -> bool:
        if self.registered:
            return True
        if not self.available(now):
            return False
        return self.guarded(now, "start", self._start) is True

    def open(self) -> None:
        """Build the registry and bring the schema up to date, once, as the worker starts.

        The database must exist and have been set up by ``job-worker init``: one that
        cannot be opened now raises (``DatabaseOpenError``) and stops the worker, as a
        mistake of configuration; failures after this are outages, retried."""
        # updates the schema, never creates one
        registry = Registry(self.url, list(self.settings.modules), create=False)
        try:
            self._warn_missing_modules(registry)
        finally:
            registry.backend.close()  # the supervisor works on sessions of its own
        self.registry = registry
        self.store = jobstore.for_backend(registry.backend)
        self.session = self.store.session(role="supervisor")
        self.listener = self.store.listener()
        self.listener_poll = self.listener.poll_interval
        self.maintenance = Maintenance(
            self.store,
            registry,
            self.settings,
            self.worker_id,
            self._name(),
            cluster=lambda: self.cluster,
        )

    def _warn_missing_modules(self, registry: Registry) -> None:
        """The database was set up with modules this worker does not load: jobs on their
        models would fail with "unknown model" (a worker started without ``--load``)."""
        with registry.cursor(readonly=True) as cr:
            installed = installed_modules(cr)
        loaded = {module.__name__ for module in registry.modules}
        missing = sorted(set(installed) - loaded)
        if missing:
            _logger.warning(
                "database %s has module(s) %s installed that this worker does not load:"
                " their jobs will fail; start it with --load %s",
                self._name(),
                ", ".join(missing),
                ",".join(missing),
                extra={"event": "worker.modules_missing", "database": self._name()},
            )

    def _start(self) -> bool:
        if self.registry is None:
            self.open()
        assert self.store is not None and self.listener is not None
        self.listener.open()
        with self.cursor() as cr:
            self.store.register_worker(
                cr,
                {
                    "worker_id": self.worker_id,
                    "hostname": socket.gethostname(),
                    "pid": os.getpid(),
                    "concurrency": self.settings.concurrency,
                    "channels": ",".join(self.settings.channels),
                    "version": __version__,
                },
            )
            env = Environment(cr, SUPERUSER_ID, {})
            env["queue.worker"].search([("worker_id", "=", self.worker_id)]).write(
                {"heartbeat_interval": self.settings.heartbeat_interval}
            )
            self._use_settings(config.read(cr), first=True)
        self.registered = True
        _logger.info(
            "serving database %s",
            self._name(),
            extra={"event": "worker.database", "database": self._name()},
        )
        return True

    def stop(self) -> None:
        if self.maintenance is not None:
            self.maintenance.stop()
        if self.registered and self.store is not None:
            store = self.store

            def stop() -> None:
                with self.cursor() as cr:
                    store.stop_worker(cr, self.worker_id)

            self.guarded(0.0, "stop", stop)
        if self.listener is not None:
            self.listener.close()
        if self.session is not None:
            self.session.close()
        if self.registry is not None:
            self.registry.close()

    # -- acquisition ------------------------------------------------------------------

    def wakeup_fd(self) -> int | None:
        return self.listener.fileno() if self.listener is not None and self.registered else None

    def on_wakeup_fd(self) -> None:
        assert self.listener is not None
        if self.listener.woken():
            self.woken = True
            self.scheduler.changed()

    def wants_to_claim(self, now: float) -> bool:
        """Whether a claim could find jobs: woken up, a scheduled job or a rate-limited
        channel became due, the listener's poll saw a change, or the fallback poll."""
        if not self.registered or not self.available(now):
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
            self.woken = self.guarded(now, "poll", self.listener.woken) is True
            if self.woken:
                self.scheduler.changed()
        return self.woken

    def claim(self, now: float, wanted: int) -> list[jobstore.ClaimedJob]:
        store = self.store
        assert store is not None

        def claim() -> jobstore.Claim:
            cr = self.cursor()
            try:
                return store.claim(
                    cr,
                    worker_id=self.worker_id,
                    wanted=wanted,
                    default_limit=self.cluster.default_limit,
                    channels=self.settings.channels or None,
                )
            finally:
                cr.close()

        result = self.guarded(now, "claim", claim)
        if isinstance(result, Failed):
            return []
        if len(result.jobs) < wanted:  # nothing more for now: sleep until told otherwise
            self.woken = False
            self.next_fallback = now + self.fallback_interval
            if result.retry_in is not None:
                self.due_at = now + result.retry_in + 0.001
        return result.jobs

    # -- periodic bookkeeping ------------------------------------------------------------

    def tick(self, now: float, running: Sequence[jobstore.ClaimedJob]) -> set[int]:
        """Heartbeats and owed changes (and the maintenance thread started); returns the
        ids of running jobs that were cancelled (or otherwise taken away) meanwhile."""
        if not self.registered or not self.available(now):
            return set()
        assert self.store is not None and self.listener is not None
        assert self.maintenance is not None
        self.maintenance.start()  # once; again if its thread ever ended
        store = self.store
        if (
            self.listener.fileno() is None
            and self.guarded(now, "listen", self.listener.open) is FAILED
        ):
            return set()
        if now >= self.next_heartbeat:

            def heartbeat() -> None:
                with self.cursor() as cr:
                    store.heartbeat(cr, self.worker_id)

            if self.guarded(now, "heartbeat", heartbeat) is FAILED:
                return set()
            self.next_heartbeat = now + self.heartbeat_interval()
        if now >= self.next_settings_read:
            self.next_settings_read = now + config.REFRESH_SECONDS
            self.guarded(now, "settings", self._read_settings)
        taken: set[int] = set()
        if running and now >= self.next_cancel_check:

            def check() -> set[int]:
                with self.cursor(readonly=True) as cr:
                    return store.not_running(cr, self.worker_id, [job.id for job in running])

            checked = self.guarded(now, "cancel check", check)
            taken = set() if isinstance(checked, Failed) else checked
            self.next_cancel_check = now + self.settings.cancel_check_interval
        self.apply_pending(now)
        if self.scheduler.due(now):
            self.guarded(
                now, "periodic jobs", partial(self.scheduler.tick, now, self.cursor, store)
            )
        return taken

    def next_timer(self, now: float, idle_slots: bool) -> float:
        """When :meth:`tick` (or a poll, with idle slots) next has something to do."""
        if not self.registered or not self.available(now):
            return max(self.down_until, now + 0.05)
        timers = [self.next_heartbeat, self.next_settings_read]
        timers.append(self.scheduler.next_timer())
        if idle_slots:
            timers.append(self.next_fallback)
            if self.due_at is not None:
                timers.append(self.due_at)
            if self.listener_poll is not None:
                timers.append(self.next_poll)
        if self.pending:
            timers.append(now + 0.1)
        return min(timers)

    # -- cluster settings -------------------------------------------------------------------

    def heartbeat_interval(self) -> float:
        """``--heartbeat-interval``, or half the stale window when that is shorter: a
        live worker's jobs never look abandoned."""
        return min(self.settings.heartbeat_interval, self.cluster.stale_seconds / 2)

    def _read_settings(self) -> None:
        with self.cursor(readonly=True) as cr:
            self._use_settings(config.read(cr))

    def _use_settings(self, new: config.ClusterSettings, first: bool = False) -> None:
        interval = self.heartbeat_interval()
        old, self.cluster = self.cluster, new
        if self.heartbeat_interval() < interval:
            self.next_heartbeat = 0.0  # a shorter stale window: the next one is due now
        if not first and new != old:
            changes = [
                f"{key} {known.as_text(getattr(old, key))} -> {known.as_text(getattr(new, key))}"
                for key, known in config.SETTINGS.items()
                if getattr(old, key) != getattr(new, key)
            ]
            _logger.info(
                "database %s: cluster settings changed: %s",
                self._name(),
                ", ".join(changes),
                extra={"event": "config.changed", "database": self._name()},
            )
            self.woken = True  # a higher default limit may let jobs start now
        if (first or new.stale_seconds != old.stale_seconds) and (
            self.settings.heartbeat_interval >= new.stale_seconds
        ):
            _logger.warning(
                "database %s: stale_seconds %g is not above --heartbeat-interval %g:"
                " heart-beating every %g s instead",
                self._name(),
                new.stale_seconds,
                self.settings.heartbeat_interval,
                self.heartbeat_interval(),
                extra={"event": "config.conflict", "database": self._name()},
            )

    # -- changes owed for lost executors ------------------------------------------------------

    def owe(self, change: PendingChange) -> None:
        self.pending.append(change)

    def apply_pending(self, now: float) -> None:
        while self.pending and self.available(now):
            change = self.pending[0]
            applied = self.guarded(now, f"record {change.kind}", partial(self._apply, change))
            if applied is FAILED:
                return
            if applied is False:  # the executor's session is not gone yet: try again soon
                change.attempts += 1
                return
            self.pending.pop(0)

    def _apply(self, change: PendingChange) -> bool:
        store = self.store
        assert store is not None
        job = change.job
        if change.session_id is not None:
            with self.cursor() as cr:
                store.terminate_session(cr, change.session_id)
            change.session_id = None
        with self.cursor() as cr:
            if not store.executor_gone(cr, job.id):
                return False
            if change.kind == "stop":
                returned = states.return_to_pending(cr, [job.id], worker_id=self.worker_id)
                new_state: str | None = "pending" if returned else None
            else:
                exc: BaseException
                text: str | None = None
                if change.kind == "timeout":
                    exc = TimeoutJobError(change.detail)
                elif change.kind == "died":
                    exc = WorkerDiedJobError(change.detail)
                else:
                    assert change.report is not None
                    exc, text = change.report.exception(), change.report.traceback
                new_state = states.record_failure(
                    cr,
                    job.id,
                    exc,
                    traceback=text,
                    worker_id=self.worker_id,
                    max_backoff=self.settings.max_backoff,
                )
        level = logging.ERROR if new_state == "failed" else logging.WARNING  # final, or retried
        _logger.log(
            logging.INFO if change.kind == "stop" else level,
            "job %s (%s): %s, now %s",
            job.uuid,
            change.kind,
            change.detail or "-",
            new_state,
            extra={
                "event": f"job.{change.kind}",
                "job_id": job.id,
                "job_uuid": job.uuid,
                "state": new_state,
                "database": self._name(),
            },
        )
        return True
