"""The worker's named operations on the job table: one interface, one class per database.

The worker never writes SQL of its own: it calls ``store.claim(...)``,
``store.begin_job(...)``, ``store.heartbeat(...)``, ``store.stale_jobs(...)``
and so on. What the databases share (the channel capacity rules, the channel
state query) is written once here; what differs lives in
:mod:`.jobstore_postgres` and :mod:`.jobstore_sqlite`, with the reason at the
spot.

Capacity of a channel (PRODUCT.md 6): ``limit`` jobs started at once (the
``queue.limit`` row, else the worker's default limit; 0 pauses the channel)
and, with a ``rate_limit`` of R starts per second, at most one start every
1/R seconds. Starts spaced by at least 1/R can never put more than R of them
in any one-second window, so the rate limit is exact without keeping a log
of starts. Both limits are decided while the claimer holds the database's
claim lock, so no interleaving of claimers can exceed them.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import Backend
    from .cursor import Cursor

#: the columns a claim returns; JSON columns are decoded by the executor, not the supervisor
CLAIM_COLUMNS = (
    "id",
    "uuid",
    "channel",
    "priority",
    "scheduled_at",
    "timeout",
    "model_name",
    "method_name",
    "record_ids",
    "args",
    "kwargs",
    "user_id",
    "company_id",
    "context",
)
_JSON_COLUMNS = ("record_ids", "args", "kwargs", "context")

# -- name: channel_state
# Every channel that has pending jobs (a loose index scan: one index probe per
# channel, however many jobs wait), with its limit row and how many of its jobs
# are started right now.
CHANNEL_STATE = """
WITH RECURSIVE channels(name) AS (
    SELECT (SELECT min(channel) FROM queue_job WHERE state = 'pending')
  UNION ALL
    SELECT (SELECT min(channel) FROM queue_job WHERE state = 'pending' AND channel > c.name)
      FROM channels c WHERE c.name IS NOT NULL
)
SELECT c.name, l."limit", l.rate_limit, l.last_started_at,
       (SELECT count(*) FROM queue_job r WHERE r.state = 'started' AND r.channel = c.name)
  FROM channels c LEFT JOIN queue_limit l ON l.name = c.name
 WHERE c.name IS NOT NULL
"""

# -- name: next_scheduled
# When the next pending job that is not due yet becomes due (the caller adds a
# condition on the channels it asks about).
NEXT_SCHEDULED = (
    "SELECT min(scheduled_at) FROM queue_job WHERE state = 'pending' AND scheduled_at > %s"
)

# -- name: mark_rate_limited_start
MARK_RATE_LIMITED_START = (
    "UPDATE queue_limit SET last_started_at = %s WHERE name = %s AND rate_limit > 0"
)

# -- name: check_jobs
# Run after the jobs' locks, in a statement of its own: it sees a reclaim that committed
# before we got them. (The caller adds the condition on the ids.)
CHECK_JOBS = "SELECT id FROM queue_job WHERE state = 'started' AND worker_id = %s"

# -- name: heartbeat_worker
HEARTBEAT_WORKER = "UPDATE queue_worker SET heartbeat = %s WHERE worker_id = %s"

# -- name: heartbeat_jobs
HEARTBEAT_JOBS = "UPDATE queue_job SET heartbeat = %s WHERE state = 'started' AND worker_id = %s"

# -- name: register_worker
REGISTER_WORKER = """
INSERT INTO queue_worker (worker_id, hostname, pid, concurrency, channels, started_at, heartbeat,
                          version, create_date, write_date)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""

# -- name: stop_worker
STOP_WORKER = "UPDATE queue_worker SET stopped_at = %s, heartbeat = %s WHERE worker_id = %s"

# -- name: stale_candidates
# Started jobs whose heartbeat stopped: their worker died, or lost the database
# for longer than the stale window.
STALE_CANDIDATES = """
SELECT j.id, j.worker_id, w.hostname, w.pid
  FROM queue_job j LEFT JOIN queue_worker w ON w.worker_id = j.worker_id
 WHERE j.state = 'started' AND (j.heartbeat IS NULL OR j.heartbeat < %s)
 ORDER BY j.id LIMIT %s
"""


@dataclass
class ClaimedJob:
    """A job this worker has just moved to ``started``, as the executor needs it."""

    id: int
    uuid: str
    channel: str
    priority: int
    scheduled_at: Any
    timeout: float
    call: dict[str, Any]  # the values of queue.job._call_values(), JSON still encoded

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ClaimedJob:
        values = dict(zip(CLAIM_COLUMNS, row, strict=True))
        return cls(
            id=values["id"],
            uuid=values["uuid"],
            channel=values["channel"],
            priority=values["priority"],
            scheduled_at=values["scheduled_at"],
            timeout=float(values["timeout"] or 0.0),
            call={
                k: values[k]
                for k in (
                    "uuid",
                    "model_name",
                    "method_name",
                    "user_id",
                    "company_id",
                    *_JSON_COLUMNS,
                )
            },
        )

    def decoded_call(self) -> dict[str, Any]:
        """The call values with their JSON columns decoded (done in the executor)."""
        call = dict(self.call)
        for key in _JSON_COLUMNS:
            if isinstance(call[key], str):
                call[key] = json.loads(call[key])
        return call


@dataclass
class ChannelPlan:
    """How many jobs each channel may start now, and when to look again."""

    free: dict[str, int] = field(default_factory=dict)
    rate_limited: set[str] = field(default_factory=set)
    #: seconds until a rate-limited channel may start its next job
    retry_in: float | None = None


def plan_channels(
    rows: Iterable[Sequence[Any]],
    *,
    default_limit: int,
    now: datetime,
    channels: Sequence[str] | None = None,
) -> ChannelPlan:
    """The capacity rules of the module docstring, applied to ``CHANNEL_STATE`` rows."""
    plan = ChannelPlan()
    for name, limit, rate_limit, last_started_at, running in rows:
        if channels is not None and name not in channels:
            continue
        free = (default_limit if limit is None else int(limit)) - int(running)
        if free <= 0:
            continue
        if rate_limit and rate_limit > 0:
            if isinstance(last_started_at, str):
                last_started_at = datetime.fromisoformat(last_started_at)
            interval = timedelta(seconds=1.0 / float(rate_limit))
            if last_started_at is not None and now < last_started_at + interval:
                wait = (last_started_at + interval - now).total_seconds()
                plan.retry_in = wait if plan.retry_in is None else min(plan.retry_in, wait)
                continue
            free = 1  # one start per interval: never two starts closer than 1/R
            plan.rate_limited.add(name)
        plan.free[name] = free
    return plan


def _short(plan: ChannelPlan, jobs: Sequence[ClaimedJob], wanted: int) -> bool:
    """Whether a channel with room gave fewer jobs than it could, with the claim
    wanting more: it has no due job left, so when does its next one become due?
    (Full channels wait for a job to end instead.)"""
    taken = Counter(job.channel for job in jobs)
    return len(jobs) < wanted and any(taken[name] < free for name, free in plan.free.items())


@dataclass
class Claim:
    """What a claim returned: the jobs, and when a new claim could find more."""

    jobs: list[ClaimedJob]
    retry_in: float | None = None


@dataclass
class StaleJob:
    id: int
    worker_id: str | None
    hostname: str | None
    pid: int | None


class JobStore(ABC):
    """The worker's operations on one database. Get one with :func:`for_backend`."""

    dialect: str
    next_scheduled_sql = NEXT_SCHEDULED
    heartbeat_jobs_sql = HEARTBEAT_JOBS

    def __init__(self, backend: Backend):
        self.backend = backend

    # -- sessions -------------------------------------------------------------

    @abstractmethod
    def session(self, *, role: str) -> Session:
        """A dedicated connection for a worker component (``supervisor`` or ``executor``)."""

    # -- acquisition ----------------------------------------------------------

    @abstractmethod
    def now(self, cr: Cursor) -> datetime:
        """The clock the queue's times are compared with (naive UTC)."""

    def claim(
        self,
        cr: Cursor,
        *,
        worker_id: str,
        wanted: int,
        default_limit: int,
        channels: Sequence[str] | None = None,
    ) -> Claim:
        """Move up to ``wanted`` due pending jobs to ``started`` for ``worker_id``, in order
        of priority, due time and id, within every channel's limits; commit the claim."""
        if wanted <= 0:
            return Claim([])
        rows, now = self._lock_and_read(cr)
        plan = plan_channels(rows, default_limit=default_limit, now=now, channels=channels)
        jobs, due = self._take_and_commit(cr, plan, wanted, worker_id, now)
        retry_in = plan.retry_in
        if due is not None and _short(plan, jobs, wanted):
            wait = max((due - now).total_seconds(), 0.0)
            retry_in = wait if retry_in is None else min(retry_in, wait)
        jobs.sort(key=lambda job: (job.priority, _as_datetime(job.scheduled_at), job.id))
        return Claim(jobs, retry_in)

    def _take_and_commit(
        self, cr: Cursor, plan: ChannelPlan, wanted: int, worker_id: str, now: datetime
    ) -> tuple[list[ClaimedJob], datetime | None]:
        """Take the jobs of ``plan``, mark the starts in rate-limited channels, and
        commit; with the jobs, when the next job of a channel that came up short
        becomes due (None: no such job, or no channel came up short)."""
        jobs = self._take(cr, plan, wanted, worker_id, now) if plan.free else []
        for channel in {job.channel for job in jobs} & plan.rate_limited:
            cr.execute(MARK_RATE_LIMITED_START, (now, channel))
        due = None
        if _short(plan, jobs, wanted):
            cr.execute(*self._next_due(plan, now))
            row = cr.fetchone()
            due = _as_datetime(row[0]) if row and row[0] is not None else None
        cr.commit()
        return jobs, due

    def _next_due(self, plan: ChannelPlan, now: datetime) -> tuple[str, Sequence[Any]]:
        """The statement that reads when the next pending job of the plan's channels
        that is not due yet becomes due."""
        in_sql, params = self.backend.in_values("channel", list(plan.free))
        return f"{self.next_scheduled_sql} AND {in_sql}", (now, *params)

    @abstractmethod
    def _lock_and_read(self, cr: Cursor) -> tuple[list[Any], datetime]:
        """Serialise claimers until the claiming transaction ends (the claim lock), then
        read the state of the channels (``CHANNEL_STATE`` rows), then the clock.

        The clock is read after the channel state: every job that state saw finish
        finished before ``now``, so recorded start and end times agree with the limits.
        """

    @abstractmethod
    def _take(
        self, cr: Cursor, plan: ChannelPlan, wanted: int, worker_id: str, now: datetime
    ) -> list[ClaimedJob]:
        """The best ``wanted`` due jobs of the channels in ``plan``, marked started."""

    # -- execution ------------------------------------------------------------

    def begin_job(self, cr: Cursor, job_id: int, worker_id: str) -> bool:
        """Begin the job in ``cr``'s transaction as its one executor: false when the job
        is no longer started by ``worker_id`` (cancelled or reclaimed meanwhile)."""
        return job_id in self.begin_jobs(cr, [job_id], worker_id)

    def begin_jobs(self, cr: Cursor, job_ids: Sequence[int], worker_id: str) -> set[int]:
        """Begin jobs that are to run one after the other in ``cr``'s transaction, in one
        round trip: which of them are still started by ``worker_id``. Until the
        transaction ends, no reclaim can take them (:meth:`executor_gone` is false)."""
        in_sql, params = self.backend.in_ids("id", job_ids)
        check = (f"{CHECK_JOBS} AND {in_sql}", (worker_id, *params))
        rows = cr.execute_together([*self._run_locks(job_ids), check], prepared=True)[-1]
        return {row[0] for row in rows}

    def _run_locks(self, job_ids: Sequence[int]) -> list[tuple[str, Sequence[Any]]]:
        """Statements that take the proof that the jobs' executor is alive, held until
        the transaction ends (none where the write lock is that proof: SQLite)."""
        return []

    @abstractmethod
    def executor_gone(self, cr: Cursor, job_id: int) -> bool:
        """Whether no live executor can still commit the job's effects; holds the proof
        (a lock) until ``cr``'s transaction ends."""

    @abstractmethod
    def terminate_session(self, cr: Cursor, session_id: int | None) -> None:
        """End an executor's database session after its process was killed."""

    # -- bookkeeping ----------------------------------------------------------

    def register_worker(self, cr: Cursor, values: dict[str, Any]) -> None:
        now = self.now(cr)
        cr.execute(
            REGISTER_WORKER,
            (
                values["worker_id"],
                values["hostname"],
                values["pid"],
                values["concurrency"],
                values["channels"],
                now,
                now,
                values["version"],
                now,
                now,
            ),
        )

    def heartbeat(self, cr: Cursor, worker_id: str) -> None:
        now = self.now(cr)
        cr.execute(HEARTBEAT_WORKER, (now, worker_id))
        cr.execute(self.heartbeat_jobs_sql, (now, worker_id))

    def stop_worker(self, cr: Cursor, worker_id: str) -> None:
        now = self.now(cr)
        cr.execute(STOP_WORKER, (now, now, worker_id))

    def not_running(self, cr: Cursor, worker_id: str, job_ids: Sequence[int]) -> set[int]:
        """Those of ``job_ids`` that are no longer started by ``worker_id`` (cancelled,
        set done or failed by hand, reclaimed)."""
        if not job_ids:
            return set()
        sql, params = self.backend.in_ids("id", list(job_ids))
        cr.execute(
            f"SELECT id FROM queue_job WHERE {sql} AND state = 'started' AND worker_id = %s",
            [*params, worker_id],
        )
        return set(job_ids) - {row[0] for row in cr.fetchall()}

    def stale_jobs(self, cr: Cursor, stale_before: datetime, limit: int = 100) -> list[StaleJob]:
        """Started jobs whose heartbeat is older than ``stale_before`` and whose executor
        is provably gone (see :meth:`executor_gone`)."""
        cr.execute(STALE_CANDIDATES, (stale_before, limit))
        candidates = [StaleJob(*row) for row in cr.fetchall()]
        return [job for job in candidates if self._stale_executor_gone(cr, job)]

    def _stale_executor_gone(self, cr: Cursor, job: StaleJob) -> bool:
        return self.executor_gone(cr, job.id)

    # -- election ---------------------------------------------------------------

    @abstractmethod
    def elect(self, session: Session, name: str, holder: str, ttl: float) -> bool:
        """Whether ``holder`` holds the named role (taken now or kept), for ``ttl`` seconds
        at least unless it keeps renewing."""

    # -- wake-ups -----------------------------------------------------------------

    @abstractmethod
    def notify_at_commit(self, cr: Cursor) -> None:
        """Wake idle workers when ``cr``'s transaction commits (it enqueued jobs)."""

    @abstractmethod
    def listener(self) -> Listener:
        """Something a worker waits on to learn that jobs may be waiting."""


class Session(ABC):
    """One dedicated database connection of a worker component, reopened after a failure."""

    #: the database's id of the session (PostgreSQL backend pid), once connected
    session_id: int | None = None

    @abstractmethod
    def cursor(self, registry: Any, *, readonly: bool = False) -> Cursor:
        """A transaction on this session's connection (connecting first if needed);
        ``readonly`` ones never wait for SQLite's write lock."""

    @abstractmethod
    def close(self) -> None: ...

    @property
    @abstractmethod
    def broken(self) -> bool:
        """Whether the connection was lost (the database went away)."""


class Listener(ABC):
    """Wake-ups for a worker: a file descriptor to wait on, and whether to claim now."""

    @abstractmethod
    def open(self) -> None:
        """Connect, if the wake-ups need a connection (may raise if the database is down)."""

    @abstractmethod
    def fileno(self) -> int | None:
        """A descriptor that becomes readable on a wake-up, or None (poll only)."""

    @abstractmethod
    def woken(self) -> bool:
        """Consume wake-ups; true if jobs may have become available."""

    #: seconds between calls of :meth:`woken` if it must be polled; None: wait on fileno
    poll_interval: float | None = None

    @abstractmethod
    def close(self) -> None: ...


# -- in-process wake-ups -------------------------------------------------------------

_local_hooks: dict[str, list[Callable[[], Any]]] = {}
_local_lock = threading.Lock()


def on_local_enqueue(url: str, hook: Callable[[], Any]) -> None:
    """Call ``hook`` whenever a transaction of this process that enqueued jobs on the
    database at ``url`` commits."""
    with _local_lock:
        _local_hooks.setdefault(url, []).append(hook)


def fire_local_enqueue(url: str) -> None:
    with _local_lock:
        hooks = list(_local_hooks.get(url, ()))
    for hook in hooks:
        hook()


def notify_jobs_enqueued(cr: Cursor) -> None:
    """Called by the enqueueing code: wake workers once the transaction commits."""
    for_backend(cr.backend).notify_at_commit(cr)


# -- helpers -----------------------------------------------------------------------------


def for_backend(backend: Backend) -> JobStore:
    """The job store of ``backend`` (one per backend object)."""
    store = getattr(backend, "_job_store", None)
    if store is None:
        if backend.dialect == "postgresql":
            from .jobstore_postgres import PostgresJobStore

            store = PostgresJobStore(backend)
        else:
            from .jobstore_sqlite import SqliteJobStore

            store = SqliteJobStore(backend)
        backend._job_store = store  # type: ignore[attr-defined]
    return store


def _as_datetime(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value
