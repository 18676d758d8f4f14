"""The elected maintenance of one database, beside the supervisor's event loop.

Each run folds the kept counts of waiting and pending jobs (PostgreSQL:
:meth:`~job_worker.db.jobstore.JobStore.fold_counts`) and reclaims the jobs of
workers that died (:func:`reclaim_stale_jobs`), each in a transaction of its own,
then calls ``queue.maintenance._run_maintenance``: the purge of old jobs, and what
modules add there (metric snapshots, alert rules).

Maintenance can take seconds on a large queue: the purge deletes finished jobs in
batches, a snapshot reads the windows of finished jobs. Run on the
event loop, it would stop claims, heartbeats and timeouts for that long. It runs
in a thread of its own instead, on a database session of its own, which is also
the session that holds the maintenance role (the election is unchanged: one
holder per database). The thread mostly waits on the database, so the loop keeps
its pace meanwhile.

On PostgreSQL the session never waits more than 2 s on a row another transaction
holds, and compiles no statement to machine code (see ``ROLE_SETTINGS`` in
:mod:`job_worker.db.jobstore_postgres`). On SQLite the maintenance transaction
holds the database's one write lock like any writer: claims wait for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..db import jobstore
from ..exceptions import WorkerDiedJobError
from ..orm.api import SUPERUSER_ID, Environment
from ..queue import config, states
from .settings import WorkerSettings

if TYPE_CHECKING:
    from ..db import Cursor

_logger = logging.getLogger(__name__)

#: seconds a stopping worker waits for a maintenance run to end
STOP_TIMEOUT = 10.0
#: stale jobs reclaimed per run at most (the next run takes the next ones)
RECLAIM_BATCH = 100


def reclaim_stale_jobs(
    cr: Cursor,
    *,
    stale_after: float,
    max_backoff: float = states.DEFAULT_MAX_BACKOFF,
    batch: int = RECLAIM_BATCH,
) -> int:
    """The rescuer: started jobs whose heartbeat is older than ``stale_after`` seconds
    (by the database's clock) and whose executor is provably gone get their attempt
    counted with :class:`WorkerDiedJobError`, and are retried or fail as their budget
    says. Returns how many were reclaimed."""
    store = jobstore.job_store(cr.backend)
    stale = store.stale_jobs(cr, store.now(cr) - timedelta(seconds=stale_after), batch)
    reclaimed = 0
    for job in stale:
        error = WorkerDiedJobError(
            f"worker {job.worker_id} stopped heart-beating for more than {stale_after:g} s"
        )
        # guarded by the dead worker's id (None: no guard, the job had no worker)
        new_state = states.record_failure(
            cr, job.id, error, worker_id=job.worker_id, max_backoff=max_backoff
        )
        if new_state is None:
            continue
        reclaimed += 1
        _logger.log(
            logging.ERROR if new_state == "failed" else logging.WARNING,
            "reclaimed job %s of dead worker %s: now %s",
            job.id,
            job.worker_id,
            new_state,
            extra={
                "event": "job.reclaimed",
                "job_id": job.id,
                "worker": job.worker_id,
                "state": new_state,
            },
        )
    return reclaimed


class Maintenance:
    """Runs ``queue.maintenance._run_maintenance`` every ``maintenance_interval`` while
    this worker holds the maintenance role of the database; start and stop are
    idempotent."""

    def __init__(
        self,
        store: jobstore.JobStore,
        registry: Any,
        settings: WorkerSettings,
        worker_id: str,
        database: str,
        cluster: Callable[[], config.ClusterSettings] = config.ClusterSettings,
    ):
        self.store = store
        #: the cluster settings in force (retention, stale window), as the worker last read them
        self.cluster = cluster
        self.registry = registry
        self.settings = settings
        self.worker_id = worker_id
        self.database = database
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"job_worker maintenance {self.database}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop after the current run, if any (waiting at most ``timeout`` seconds for it:
        past that the thread, a daemon, ends with the process)."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        session = self.store.session(role="maintenance")
        interval = self.settings.maintenance_interval
        failing = False
        try:
            while not self._stopping.is_set():
                began = time.monotonic()
                try:
                    self.run_once(session)
                except Exception as exc:
                    broken = session.broken
                    if broken:
                        session.close()  # reconnects, and stands for election again
                    if not failing:
                        _logger.warning(
                            "maintenance of database %s failed: %s: %s; retrying every %g s",
                            self.database,
                            type(exc).__name__,
                            exc,
                            interval,
                            exc_info=not broken,  # a bug, not an outage: its traceback
                            extra={"event": "maintenance.failed", "database": self.database},
                        )
                    failing = True
                else:
                    if failing:
                        _logger.warning(
                            "maintenance of database %s runs again",
                            self.database,
                            extra={"event": "maintenance.recovered", "database": self.database},
                        )
                    failing = False
                self._stopping.wait(max(began + interval - time.monotonic(), 0.0))
        finally:
            session.close()  # gives the role up at once (PostgreSQL)

    def run_once(self, session: jobstore.Session) -> dict[str, int] | None:
        """One run if this worker holds (or takes) the role: its counters, else None.
        The reclaim commits first, in a transaction of its own: a slow task after it
        never holds it back."""
        interval = self.settings.maintenance_interval
        if not self.store.elect(session, "maintenance", self.worker_id, ttl=3 * interval):
            return None
        settings = {**self.settings.maintenance_settings(), **self.cluster().maintenance_settings()}
        self.store.fold_counts(session)  # the kept counts' deltas of the last interval
        with session.cursor(self.registry) as cr:
            reclaimed = reclaim_stale_jobs(
                cr,
                stale_after=settings.get("stale_after", config.STALE_SECONDS),
                max_backoff=settings.get("max_backoff", states.DEFAULT_MAX_BACKOFF),
            )
        with session.cursor(self.registry) as cr:
            env = Environment(cr, SUPERUSER_ID, {})
            counters = {
                "jobs_reclaimed": reclaimed,
                **env["queue.maintenance"]._run_maintenance(settings),
            }
        if any(counters.values()):
            _logger.info(
                "maintenance: %s",
                counters,
                extra={"event": "maintenance.run", "database": self.database, **counters},
            )
        return counters
