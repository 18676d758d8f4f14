"""Every state change of a job, as named operations: one interface, one class per database.

The engine never writes SQL of its own for a job's state: the worker, ``run_now()``
and the manual actions call the store (``store.claim(...)``, ``store.finish(...)``,
``store.retry(...)``, ``store.heartbeat(...)``...), and the policy of what comes next
lives in :mod:`job_worker.queue.states`. Each database's module holds its SQL whole,
every statement a named constant at its top: :mod:`.jobstore_postgres` and
:mod:`.jobstore_sqlite`. This module holds the interface, the dataclasses, and the
capacity rules, which are Python code between two queries.

One clock: every time written into a job's row (start, end, cancel, retry due time,
heartbeat, the attempt headers of ``exc_info``) is the database's (:meth:`JobStore.now`),
on PostgreSQL read in the statement itself, so that workers on several hosts never
mix their clocks in one row.

Capacity of a channel (PRODUCT.md 6): ``limit`` jobs started at once (the
``queue.limit`` row, else the worker's default limit; 0 pauses the channel)
and, with a ``rate_limit`` of R starts per second, at most one start every
1/R seconds. Starts spaced by at least 1/R can never put more than R of them
in any one-second window, so the rate limit is exact without keeping a log
of starts. Both limits are decided while the claimer holds the database's
claim lock, so no interleaving of claimers can exceed them. A channel whose
``queue_channel.backoff_until`` (a backoff a job signalled) is still ahead starts no
job, decided under the same lock; the claim's ``retry_in`` then includes the time
until the pause ends.
"""

from __future__ import annotations

import importlib
import json
import threading
import weakref
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache, partial
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
    for name, limit, rate_limit, last_started_at, running, backoff_until in rows:
        if channels is not None and name not in channels:
            continue
        if backoff_until is not None and (until := _as_datetime(backoff_until)) > now:
            wait = (until - now).total_seconds()  # a job's backoff pauses the channel
            plan.retry_in = wait if plan.retry_in is None else min(plan.retry_in, wait)
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


@dataclass
class FailingJob:
    """A job whose attempt failed, as :func:`job_worker.queue.states.record_failure`
    needs it to decide what comes next; ``now`` is the database's clock, read with it."""

    attempts: int
    max_retries: int
    exc_info: str | None
    started_at: datetime | None
    has_dependents: bool
    worker_id: str | None
    now: datetime
    channel: str = ""
    #: the channel backoffs it signalled that did not count an attempt
    backoffs: int = 0


@dataclass
class ChannelBackoffState:
    """A channel's pause in force (``queue_channel``), as the readers show it."""

    until: datetime
    reason: str | None
    job_id: int | None
    set_at: datetime | None


@dataclass
class FailureRecord:
    """What a failed attempt leaves in the job's row (exc_* columns and attempts)."""

    exc_name: str
    exc_message: str
    exc_info: str
    attempts: int


class JobStore(ABC):
    """Every operation of the engine that changes a job's state, on one database. Get
    the store of a backend with :func:`job_store`.

    What the subclasses write in SQL, each in its own module with every statement a
    named constant: the claim's statements, the heartbeat, and each state change of
    a job (start, finish, retry or fail, return to pending, force by hand, requeue,
    the graph cascade's reads and writes, reclaim, purge). Times written into a row
    come from the database's clock (:meth:`now`)."""

    #: the statements the claim and the begin share on every database (set by each
    #: database's store, from the constants of its module)
    next_scheduled_sql: str
    mark_rate_limited_start_sql: str
    check_jobs_sql: str
    stale_candidates_sql: str

    def __init__(self, backend: Backend):
        self.backend = backend

    # -- sessions -------------------------------------------------------------

    @abstractmethod
    def session(self, *, role: str) -> Session:
        """A dedicated connection for a worker component (``supervisor`` or ``executor``)."""

    # -- acquisition ----------------------------------------------------------

    @abstractmethod
    def now(self, cr: Cursor) -> datetime:
        """The database's clock (naive UTC): every time the engine writes into a job's
        row comes from it, whichever host the writer runs on."""

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
            cr.execute(self.mark_rate_limited_start_sql, (now, channel))
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
        check = (f"{self.check_jobs_sql} AND {in_sql}", (worker_id, *params))
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

    def not_running(self, cr: Cursor, worker_id: str, job_ids: Sequence[int]) -> set[int]:
        """Those of ``job_ids`` that are no longer started by ``worker_id`` (cancelled,
        set done or failed by hand, reclaimed)."""
        if not job_ids:
            return set()
        sql, params = self.backend.in_ids("id", list(job_ids))
        cr.execute(f"{self.check_jobs_sql} AND {sql}", [worker_id, *params])
        return set(job_ids) - {row[0] for row in cr.fetchall()}

    # -- state changes --------------------------------------------------------
    # Each names the state it expects (and, given a ``worker_id``, the worker that owns
    # the started job) in its WHERE clause: a stale actor never overwrites a newer truth.

    @abstractmethod
    def start(self, cr: Cursor, job_id: int, worker_id: str | None) -> bool:
        """pending -> started (``run_now()``); whether it applied."""

    @abstractmethod
    def finish(
        self,
        cr: Cursor,
        finished: Sequence[tuple[int, str | None, float | None]],
        worker_id: str | None,
    ) -> dict[int, bool]:
        """started -> done for ``(job_id, result as JSON text, duration)``, in one round
        trip: the jobs marked, each with whether it has dependents."""

    @abstractmethod
    def failing_job(
        self, cr: Cursor, job_id: int, expected_state: str, worker_id: str | None
    ) -> FailingJob | None:
        """The job whose attempt failed, with the database's clock; None when it is not
        in ``expected_state`` (by ``worker_id``): someone else decided."""

    #: the statements of :meth:`retry` and :meth:`fail` (each database's module has
    #: them, as RETRY and FAIL): the same parameters on both databases
    retry_sql: str
    fail_sql: str

    def retry(
        self,
        cr: Cursor,
        job_id: int,
        expected_state: str,
        worker_id: str | None,
        outcome: FailureRecord,
        *,
        at: datetime,
        retry_at: datetime,
    ) -> bool:
        """The failed attempt is retried: -> pending, due at ``retry_at``."""
        return self._record(
            cr, self.retry_sql, outcome, (at, retry_at), job_id, expected_state, worker_id
        )

    def fail(
        self,
        cr: Cursor,
        job_id: int,
        expected_state: str,
        worker_id: str | None,
        outcome: FailureRecord,
        *,
        at: datetime,
        duration: float | None,
    ) -> bool:
        """The failed attempt was the last: -> failed, completed at ``at``."""
        return self._record(
            cr, self.fail_sql, outcome, (at, at, duration), job_id, expected_state, worker_id
        )

    @staticmethod
    def _record(
        cr: Cursor,
        sql: str,
        outcome: FailureRecord,
        values: tuple[Any, ...],
        job_id: int,
        expected_state: str,
        worker_id: str | None,
    ) -> bool:
        params = (
            outcome.exc_name,
            outcome.exc_message,
            outcome.exc_info,
            outcome.attempts,
            *values,
            job_id,
            expected_state,
            worker_id,
            worker_id,
        )
        cr.execute(sql, params, write=True)
        return cr.rowcount == 1

    #: the statements of a channel backoff (BACK_OFF and BACK_OFF_CHANNEL of each
    #: database's module): the same parameters on both databases
    back_off_sql: str
    back_off_channel_sql: str

    def back_off(
        self,
        cr: Cursor,
        job_id: int,
        expected_state: str,
        worker_id: str | None,
        outcome: FailureRecord,
        *,
        at: datetime,
    ) -> bool:
        """The job paused its channel: -> pending, no attempt counted (``outcome.attempts``
        is the job's own), ``backoffs`` + 1, due as it was (the pause is the channel's)."""
        return self._record(
            cr, self.back_off_sql, outcome, (at,), job_id, expected_state, worker_id
        )

    def back_off_channel(
        self, cr: Cursor, channel: str, *, until: datetime, reason: str, job_id: int, at: datetime
    ) -> datetime:
        """Pause ``channel`` until ``until`` (upsert of its ``queue_channel`` row): a pause
        already in force that ends later is kept (with its reason and job); its backoff
        counter grows either way. Returns when the pause in force ends."""
        cr.execute(
            self.back_off_channel_sql,
            (channel, until, reason, job_id, at, at, at),
            write=True,
        )
        row = cr.fetchone()
        assert row is not None
        return _as_datetime(row[0])

    @abstractmethod
    def channel_backoffs(self, cr: Cursor, now: datetime) -> dict[str, ChannelBackoffState]:
        """The channels whose pause ends after ``now``."""

    @abstractmethod
    def lift_channel_backoff(self, cr: Cursor, channel: str) -> bool:
        """End ``channel``'s pause now; whether it had one in force."""

    @abstractmethod
    def return_to_pending(
        self, cr: Cursor, job_ids: Sequence[int], worker_id: str | None
    ) -> list[int]:
        """started -> pending without counting an attempt: the ids returned."""

    @abstractmethod
    def exc_infos(self, cr: Cursor, job_ids: Sequence[int]) -> dict[int, str | None]:
        """The ``exc_info`` of jobs (a manual action appends to it)."""

    @abstractmethod
    def set_exc_info(self, cr: Cursor, job_id: int, exc_info: str) -> None: ...

    @abstractmethod
    def force(
        self,
        cr: Cursor,
        job_ids: Sequence[int],
        state: str,
        *,
        exc_name: str | None = None,
        exc_message: str | None = None,
    ) -> list[int]:
        """Set ``state`` (done, failed or cancelled) by hand, whatever the job's state:
        those of the jobs that have dependents. ``exc_name`` (kept if the job has one)
        and ``exc_message`` for ``failed``."""

    @abstractmethod
    def requeue(self, cr: Cursor, job_ids: Sequence[int]) -> None:
        """-> pending and due now, attempts reset, error, result and times cleared."""

    # -- graph cascades -------------------------------------------------------

    @abstractmethod
    def dependents(self, cr: Cursor, parent_ids: Sequence[int]) -> list[int]:
        """The jobs that depend on any of ``parent_ids``."""

    @abstractmethod
    def lock_dependents(
        self, cr: Cursor, job_ids: Sequence[int], states: Sequence[str]
    ) -> list[int]:
        """Lock those of ``job_ids`` in ``states`` until the transaction ends, in id
        order: two parents finishing at once in two transactions must not both see the
        other unfinished (the second to lock re-reads the first one's committed state)."""

    @abstractmethod
    def edges(self, cr: Cursor, job_ids: Sequence[int]) -> list[tuple[int, int, str, str]]:
        """``(job_id, parent_id, kind, parent's state)`` of every edge of ``job_ids``."""

    @abstractmethod
    def release(self, cr: Cursor, job_ids: Sequence[int]) -> None:
        """waiting -> pending: every parent the jobs wait for let them run."""

    @abstractmethod
    def wait_back(self, cr: Cursor, job_ids: Sequence[int]) -> None:
        """pending -> waiting (re-evaluated after a requeue of a parent)."""

    #: the statement of :meth:`fail_dependents` (FAIL_DEPENDENTS of each database's
    #: module), and how it takes a list of job ids as one parameter
    fail_dependents_sql: str

    @staticmethod
    @abstractmethod
    def _id_list(job_ids: Sequence[int]) -> Any:
        """``job_ids`` as the one parameter the database's statements take for a list."""

    def fail_dependents(
        self,
        cr: Cursor,
        job_ids: Sequence[int],
        parent_id: int,
        outcome: FailureRecord,
        *,
        at: datetime,
    ) -> None:
        """waiting/pending -> failed because ``parent_id`` failed; ``outcome.exc_info``
        is appended to the jobs' diagnoses."""
        cr.execute(
            self.fail_dependents_sql,
            (
                outcome.exc_name,
                outcome.exc_message,
                f"\n{outcome.exc_info}",
                outcome.exc_info,
                at,
                at,
                parent_id,
                self._id_list(job_ids),
            ),
            write=True,
        )

    @abstractmethod
    def cancel_dependents(self, cr: Cursor, job_ids: Sequence[int], parent_id: int) -> None:
        """waiting/pending -> cancelled because of ``parent_id``."""

    @abstractmethod
    def wait_again(self, cr: Cursor, parent_ids: Sequence[int]) -> list[int]:
        """After a requeue of ``parent_ids``: their dependents that failed or were
        cancelled because of them, and their on_error dependents released but not yet
        started, wait again. The ids that wait again (whose own dependents come next)."""

    # -- bookkeeping ----------------------------------------------------------

    @abstractmethod
    def register_worker(self, cr: Cursor, values: dict[str, Any]) -> None:
        """Insert the ``queue_worker`` row: ``worker_id``, ``hostname``, ``pid``,
        ``concurrency``, ``channels``, ``version`` and (optional) ``heartbeat_interval``."""

    @abstractmethod
    def heartbeat(self, cr: Cursor, worker_id: str) -> None:
        """The worker and its started jobs are alive now."""

    @abstractmethod
    def stop_worker(self, cr: Cursor, worker_id: str) -> None: ...

    # -- crash recovery and housekeeping ----------------------------------------

    def stale_jobs(self, cr: Cursor, stale_before: datetime, limit: int = 100) -> list[StaleJob]:
        """Started jobs whose heartbeat is older than ``stale_before`` and whose executor
        is provably gone (see :meth:`executor_gone`)."""
        cr.execute(self.stale_candidates_sql, (stale_before, limit))
        candidates = [StaleJob(*row) for row in cr.fetchall()]
        return [job for job in candidates if self._stale_executor_gone(cr, job)]

    def _stale_executor_gone(self, cr: Cursor, job: StaleJob) -> bool:
        return self.executor_gone(cr, job.id)

    @abstractmethod
    def purge(self, cr: Cursor, retention_days: float, batch: int) -> int:
        """Delete up to ``batch`` done, failed and cancelled jobs last changed more than
        ``retention_days`` ago, oldest first; how many."""

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


def on_local_enqueue(url: str, hook: Callable[[], Any]) -> Callable[[], None]:
    """Call ``hook`` whenever a transaction of this process that enqueued jobs on the
    database at ``url`` commits, until the function returned is called (or
    :func:`off_local_enqueue`)."""
    with _local_lock:
        _local_hooks.setdefault(url, []).append(hook)
    return partial(off_local_enqueue, url, hook)


def off_local_enqueue(url: str, hook: Callable[[], Any]) -> None:
    """Stop calling ``hook`` (given to :func:`on_local_enqueue`); no error if it is not
    called any more."""
    with _local_lock:
        hooks = _local_hooks.get(url, [])
        if hook in hooks:
            hooks.remove(hook)
        if not hooks:
            _local_hooks.pop(url, None)


def fire_local_enqueue(url: str) -> None:
    with _local_lock:
        hooks = list(_local_hooks.get(url, ()))
    for hook in hooks:
        hook()


def notify_jobs_enqueued(cr: Cursor) -> None:
    """Called by the enqueueing code: wake workers once the transaction commits."""
    job_store(cr.backend).notify_at_commit(cr)


# -- the store of a backend ----------------------------------------------------------------

_stores: weakref.WeakKeyDictionary[Backend, JobStore] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def job_store(backend: Backend) -> JobStore:
    """The job store of ``backend`` (one per backend object), of the class the backend
    names (``Backend.job_store_class``)."""
    store = _stores.get(backend)
    if store is None:
        with _stores_lock:
            store = _stores.get(backend)
            if store is None:
                store = _stores[backend] = store_class(backend.job_store_class)(backend)
    return store


#: the name existing callers know
for_backend = job_store


@lru_cache(maxsize=8)
def store_class(name: str) -> type[JobStore]:
    """The class named ``module:Class`` (a module of this package when it starts with a
    dot): a backend names its store without importing it, so the store's module may
    import the backend's."""
    module_name, _, class_name = name.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"a job store is named as module:Class, got {name!r}")
    module = importlib.import_module(module_name, package=__package__)
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, JobStore)):
        raise TypeError(f"{name} is not a job store class (a subclass of JobStore)")
    return cls


def _as_datetime(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value
