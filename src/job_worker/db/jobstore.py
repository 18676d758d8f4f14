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

Capacity of a channel (PRODUCT.md 6 and 12), every rule decided while the claimer
holds the database's claim lock, so no interleaving of claimers can exceed it:

- **Weighted limit.** ``limit`` (the ``queue.limit`` row, else the default limit; 0
  pauses the channel) counts the weights of the channel's started jobs (a job's
  ``weight`` is 1 unless enqueued heavier). A channel takes its due jobs strictly in
  order (priority, due time, id) while their weights fit: a job that does not fit
  yet stops the channel's line, so a heavy job at the head is never overtaken by
  lighter jobs behind it, and starts as soon as enough of the running weight ends.
- **Rate windows.** Each window "N starts in any T seconds" of the channel
  (:mod:`job_worker.rates`) counts the starts of the last T seconds in the
  channel's start log (``queue_channel_start``, one row per start, kept for the
  longest window); a claim starts at most N minus that count. Every start is
  checked against the window that ends at it, so no window of length T, wherever
  it lies, holds more than N.
- **Fair share.** In a channel with pending jobs that have a ``fair_key``, each claim
  serves the best due priority first and, at that priority, turns between the keys
  with due jobs (jobs without a key share the key ``''``), one job per key per round
  (a key's ``queue.fair.key`` weight: that many), starting after the key that had the
  channel's last turn (``queue_channel.fair_cursor``). Finding the next keys walks
  the pending index key by key: a claim costs in proportion to the keys it looks
  at, never to the jobs waiting.
- **Backoff.** A channel whose ``queue_channel.backoff_until`` (a backoff a job
  signalled) is still ahead starts no job; the claim's ``retry_in`` then includes
  the time until the pause ends.
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

from ..orm.fields import INT_MAX, INT_MIN
from ..rates import RateWindow, channel_windows

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


#: a job that ran to its end, for :meth:`JobStore.finish`: ``(id, result as JSON text,
#: duration)``, or with ``(seconds since its code ended, whether a slot's run took it)``
#: (see :class:`HandOff`): its completion is then dated when its code ended, and the
#: start of a job a slot's run took when its code began
FinishedRow = (
    tuple[int, str | None, float | None] | tuple[int, str | None, float | None, float, bool]
)


@dataclass(frozen=True)
class HandOff:
    """The capacity that the jobs finishing in a transaction free in their channel,
    handed in that transaction to the channel's next due jobs (:meth:`JobStore.finish`):
    at most ``jobs`` of them, within the channel's limit (``default_limit`` for a channel
    without a ``queue.limit`` row).

    ``freeing``: the jobs whose weight is freed, those whose start was committed (None:
    all the finished ones). ``serial``: a slot's run: the jobs taken are to run one
    after the other in this same transaction, each in the weight freed on its own, and
    the transaction hands the slot on (a hand-off that is not serial) before it commits;
    until then no other transaction sees them started."""

    channel: str
    jobs: int
    default_limit: int
    freeing: tuple[int, ...] | None = None
    serial: bool = False


@dataclass
class ChannelPlan:
    """How much each channel may start now, and when to look again."""

    #: weight each channel with room may still start (its limit minus its running weight)
    free: dict[str, int] = field(default_factory=dict)
    #: jobs at most a channel may start now, where its rate windows say fewer than free
    most: dict[str, int] = field(default_factory=dict)
    #: the rate windows of the channels with room that have any
    windows: dict[str, tuple[RateWindow, ...]] = field(default_factory=dict)
    #: seconds until a channel held back by a rule of time may start its next job
    retry_in: float | None = None
    #: channels with room and pending jobs with a fair key, with the key that had their
    #: last turn ('' when none did) and how many jobs it has had in that turn
    fair: dict[str, tuple[str, int]] = field(default_factory=dict)

    def jobs_at_most(self, channel: str, wanted: int) -> int:
        """How many jobs ``channel`` may give a claim that wants ``wanted``: every job
        weighs at least 1, so never more than its free weight."""
        return min(self.free[channel], wanted, self.most.get(channel, wanted))

    def wait(self, seconds: float) -> None:
        """Look again in ``seconds`` at the latest."""
        seconds = max(seconds, 0.0)
        self.retry_in = seconds if self.retry_in is None else min(self.retry_in, seconds)


def plan_channels(
    rows: Iterable[Sequence[Any]],
    *,
    default_limit: int,
    now: datetime,
    channels: Sequence[str] | None = None,
) -> ChannelPlan:
    """The weighted limits and backoffs of the module docstring, applied to
    ``CHANNEL_STATE`` rows (name, limit, rate_limit, rates, running weight, has fair
    keys, fair cursor, jobs of its turn, backoff until); the channels with room and rate windows are noted, for
    :func:`apply_windows`."""
    plan = ChannelPlan()
    for name, limit, rate_limit, rates, running, fair, cursor, turn, backoff_until in rows:
        if channels is not None and name not in channels:
            continue
        if backoff_until is not None and (until := _as_datetime(backoff_until)) > now:
            plan.wait((until - now).total_seconds())  # a job's backoff pauses the channel
            continue
        free = (default_limit if limit is None else int(limit)) - int(running or 0)
        if free <= 0:
            continue
        plan.free[name] = free
        if fair:
            plan.fair[name] = (cursor or "", int(turn or 0))
        windows = channel_windows(rates, rate_limit)
        if windows:
            plan.windows[name] = windows
    return plan


def apply_windows(
    plan: ChannelPlan, usage: dict[tuple[str, float], tuple[int, Any]], now: datetime
) -> None:
    """Hold the plan's channels to their rate windows, given each window's ``usage``:
    ``(channel, seconds) -> (starts in the window ending now, capped at its count; the
    oldest of them)``. A full window closes its channel until its oldest start leaves it."""
    for channel, windows in plan.windows.items():
        room = None
        for window in windows:
            used, oldest = usage.get((channel, window.seconds), (0, None))
            left = window.count - int(used)
            if left <= 0:
                if oldest is not None:
                    plan.wait((_as_datetime(oldest) - now).total_seconds() + window.seconds)
                left = 0
            room = left if room is None else min(room, left)
        if room is not None and room < plan.free[channel]:
            if room == 0:
                del plan.free[channel]
            else:
                plan.most[channel] = room


@dataclass(frozen=True)
class Candidate:
    """A due pending job a claim may start."""

    id: int
    channel: str
    priority: int
    scheduled_at: Any
    weight: int
    fair_key: str = ""
    #: in a fair channel, the jobs its key has had in its turn with this one, when that
    #: turn is not over (0 when it is)
    turn: int = 0

    @property
    def order(self) -> tuple[Any, ...]:
        return (self.priority, _as_datetime(self.scheduled_at), self.id)


def fitting(line: Iterable[Candidate], free: int) -> list[Candidate]:
    """The longest run of ``line``, in its order, whose weights fit in ``free``: a job
    that does not fit stops the line (nothing behind it overtakes it)."""
    run, used = [], 0
    for candidate in line:
        used += candidate.weight
        if used > free:
            break
        run.append(candidate)
    return run


def merge_lines(lines: dict[str, list[Candidate]], wanted: int) -> list[Candidate]:
    """Up to ``wanted`` candidates, each channel's line taken in its own order, the
    channels in the order (priority, due time, id) of the jobs at their heads."""
    heads = {channel: 0 for channel, line in lines.items() if line}
    picked: list[Candidate] = []
    while heads and len(picked) < wanted:
        channel = min(heads, key=lambda name: lines[name][heads[name]].order)
        picked.append(lines[channel][heads[channel]])
        heads[channel] += 1
        if heads[channel] == len(lines[channel]):
            del heads[channel]
    return picked


#: a fair level's rows: (fair key, lap, key weight, id, scheduled_at, weight); lap 0 for
#: the keys after the channel's cursor, 1 for those from the start up to it
FairRow = tuple[str, int, int, int, Any, int]


def rotation(
    channel: str,
    priority: int,
    rows: Iterable[FairRow],
    count: int,
    cursor: tuple[str, int] = ("", 0),
) -> list[Candidate]:
    """The first ``count`` turns of one priority level of a fair channel: round by
    round, each key in rotation order (after the cursor, then from the start) gives
    as many jobs per round as its weight, oldest first. A ``cursor`` of a key with an
    unfinished turn (``cursor[1]`` jobs of it given so far, not 0) leads the rotation
    (lap 0) and ends its turn first."""
    last_key, given = cursor
    turns = []
    rank: Counter[str] = Counter()
    for key, lap, key_weight, job_id, scheduled_at, weight in sorted(
        rows, key=lambda row: (row[1], row[0], _as_datetime(row[4]), row[3])
    ):
        quantum = max(int(key_weight or 1), 1)
        place = rank[key] + (given if key == last_key else 0)
        rank[key] += 1
        round_, turn = divmod(place, quantum)
        unfinished = turn + 1 if turn + 1 < quantum else 0
        candidate = Candidate(job_id, channel, priority, scheduled_at, weight, key, unfinished)
        turns.append(((round_, lap, key, rank[key]), candidate))
    turns.sort(key=lambda turn: turn[0])
    return [candidate for _turn, candidate in turns[:count]]


def fair_turns(plan: ChannelPlan, picked: Sequence[Candidate]) -> dict[str, tuple[str, int]]:
    """Where the rotation of each fair channel of ``plan`` stands once ``picked`` start:
    the key of its last job, and the jobs of that key's unfinished turn (0: over)."""
    turns = {c.channel: (c.fair_key, c.turn) for c in picked}
    return {channel: turn for channel, turn in turns.items() if channel in plan.fair}


def exhausted(free: dict[str, int], take: dict[str, int], jobs: Sequence[ClaimedJob]) -> bool:
    """Whether a claim left no job that a claim could take now: each channel with room
    (``free`` weight, at most ``take`` jobs wanted of it) gave fewer jobs than it might
    have (it has no more due, or the next one does not fit) or as many as its room
    holds. Then only the channels' limits hold jobs back."""
    taken = Counter(job.channel for job in jobs)
    return all(taken[name] < take[name] or taken[name] >= free[name] for name in free)


def _short(plan: ChannelPlan, jobs: Sequence[ClaimedJob], wanted: int) -> bool:
    """Whether a channel with room gave fewer jobs than it could, with the claim
    wanting more: it may have no due job left, so when does its next one become due?
    (Full channels wait for a job to end instead.)"""
    taken = Counter(job.channel for job in jobs)
    return len(jobs) < wanted and any(
        taken[name] < plan.jobs_at_most(name, wanted) for name in plan.free
    )


@dataclass
class Claim:
    """What a claim returned: the jobs, when a new claim could find more, and whether
    it left no job that a claim could take now (:func:`exhausted`)."""

    jobs: list[ClaimedJob]
    retry_in: float | None = None
    exhausted: bool = False


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


@dataclass(frozen=True)
class ChannelRules:
    """What an enqueue into a channel must respect (its ``queue.limit`` row)."""

    limit: int
    max_depth: int  # 0: unbounded
    depth_policy: str  # "raise" or "skip"


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
    window_usage_sql: str
    log_starts_sql: str
    forget_starts_sql: str
    forget_old_starts_sql: str
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
        claim = self._claim_at_once(cr, worker_id, wanted, default_limit, channels)
        if claim is not None:
            return claim
        rows, now = self._lock_and_read(cr)
        plan = plan_channels(rows, default_limit=default_limit, now=now, channels=channels)
        if plan.windows:
            apply_windows(plan, self._window_usage(cr, plan, now), now)
        jobs, due = self._take_and_commit(cr, plan, wanted, worker_id, now)
        retry_in = plan.retry_in
        if due is not None and _short(plan, jobs, wanted):
            wait = max((due - now).total_seconds(), 0.0)
            retry_in = wait if retry_in is None else min(retry_in, wait)
        jobs.sort(key=lambda job: (job.priority, _as_datetime(job.scheduled_at), job.id))
        take = {name: plan.jobs_at_most(name, wanted) for name in plan.free}
        return Claim(jobs, retry_in, exhausted(plan.free, take, jobs))

    def _claim_at_once(
        self,
        cr: Cursor,
        worker_id: str,
        wanted: int,
        default_limit: int,
        channels: Sequence[str] | None,
    ) -> Claim | None:
        """The whole claim in one statement, where the database can run it and no rule
        worked out in Python applies (PostgreSQL without fair keys or rate windows in
        the channels with room); None: nothing was taken, claim the long way."""
        return None

    def _take_and_commit(
        self, cr: Cursor, plan: ChannelPlan, wanted: int, worker_id: str, now: datetime
    ) -> tuple[list[ClaimedJob], datetime | None]:
        """Take the jobs of ``plan``, mark the starts in rate-limited channels, and
        commit; with the jobs, when the next job of a channel that came up short
        becomes due (None: no such job, or no channel came up short)."""
        jobs = self._take(cr, plan, wanted, worker_id, now) if plan.free else []
        self._log_starts(cr, plan, jobs, now)
        due = None
        if _short(plan, jobs, wanted):
            cr.execute(*self._next_due(plan, now))
            row = cr.fetchone()
            due = _as_datetime(row[0]) if row and row[0] is not None else None
        cr.commit()
        return jobs, due

    def _window_usage(
        self, cr: Cursor, plan: ChannelPlan, now: datetime
    ) -> dict[tuple[str, float], tuple[int, Any]]:
        return {
            (channel, window.seconds): (used, oldest)
            for channel, windows in plan.windows.items()
            for window, used, oldest in self.window_usage(cr, channel, windows, now)
        }

    def window_usage(
        self, cr: Cursor, channel: str, windows: Sequence[RateWindow], now: datetime
    ) -> list[tuple[RateWindow, int, datetime | None]]:
        """For each rate window of ``channel``: the starts of the window that ends at
        ``now`` (at most its count of them), and the oldest of those."""
        usage = []
        for window in windows:
            since = now - timedelta(seconds=window.seconds)
            cr.execute(self.window_usage_sql, (channel, since, window.count))
            row = cr.fetchone()
            used, oldest = (row[0], row[1]) if row else (0, None)
            usage.append((window, int(used), _as_datetime(oldest) if oldest else None))
        return usage

    def _log_starts(
        self, cr: Cursor, plan: ChannelPlan, jobs: Sequence[ClaimedJob], now: datetime
    ) -> None:
        """Log the starts of the channels with rate windows, and forget the starts that
        have left their longest window."""
        started = Counter(job.channel for job in jobs if job.channel in plan.windows)
        for channel, count in started.items():
            longest = max(window.seconds for window in plan.windows[channel])
            cr.execute(self.forget_starts_sql, (channel, now - timedelta(seconds=longest)))
            cr.execute(self.log_starts_sql, (channel, now, count))

    def forget_starts_before(self, cr: Cursor, before: datetime) -> int:
        """Delete the logged starts older than ``before`` of every channel (the
        maintenance: a channel's own claims forget only its own); how many."""
        cr.execute(self.forget_old_starts_sql, (before,), write=True)
        return max(cr.rowcount, 0)

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

    def _take(
        self, cr: Cursor, plan: ChannelPlan, wanted: int, worker_id: str, now: datetime
    ) -> list[ClaimedJob]:
        """The best ``wanted`` due jobs of the channels in ``plan``, marked started."""
        picked = self._pick(cr, plan, wanted, now)
        if not picked:
            return []
        jobs = self._mark_started(cr, [candidate.id for candidate in picked], worker_id, now)
        for channel, turn in fair_turns(plan, picked).items():
            cr.execute(self.set_fair_cursor_sql, (channel, *turn), write=True)
        return jobs

    def _pick(self, cr: Cursor, plan: ChannelPlan, wanted: int, now: datetime) -> list[Candidate]:
        """The best ``wanted`` due jobs of the channels in ``plan``: each channel's line
        (in order, or in turns of its fair keys) cut where its weights stop fitting, the
        lines merged by the jobs at their heads."""
        lines = {}
        for channel, free in plan.free.items():
            count = plan.jobs_at_most(channel, wanted)
            if channel in plan.fair:
                line = self._fair_line(cr, channel, plan.fair[channel], count, now)
            else:
                line = self._channel_line(cr, channel, count, now)
            lines[channel] = fitting(line, free)
        return merge_lines(lines, wanted)

    def _fair_line(
        self, cr: Cursor, channel: str, cursor: tuple[str, int], count: int, now: datetime
    ) -> list[Candidate]:
        """The next ``count`` turns of a fair channel: its best due priority first, then
        the next ones while turns are missing."""
        line: list[Candidate] = []
        floor = INT_MIN
        while len(line) < count:
            level = self._fair_level(cr, channel, floor, cursor, count - len(line), now)
            if level is None:
                break
            priority, rows = level
            line.extend(rotation(channel, priority, rows, count - len(line), cursor))
            if priority >= INT_MAX:
                break
            floor = priority + 1
        return line

    #: upsert of a channel's fair cursor: (channel, key, jobs of its turn)
    set_fair_cursor_sql: str

    @abstractmethod
    def _channel_line(self, cr: Cursor, channel: str, count: int, now: datetime) -> list[Candidate]:
        """The ``count`` best due jobs of a channel without fair keys, in order."""

    @abstractmethod
    def _fair_level(
        self,
        cr: Cursor,
        channel: str,
        floor: int,
        cursor: tuple[str, int],
        count: int,
        now: datetime,
    ) -> tuple[int, list[FairRow]] | None:
        """The best due priority of ``channel`` at or above ``floor`` (None: no due job),
        and for the first ``count`` keys with due jobs at that priority in rotation order
        from ``cursor``, their first ``count`` due jobs there. The rotation starts after
        the cursor's key, or at it when its turn is not over."""

    @abstractmethod
    def _mark_started(
        self, cr: Cursor, job_ids: Sequence[int], worker_id: str, now: datetime
    ) -> list[ClaimedJob]:
        """pending -> started for those of ``job_ids`` still pending."""

    # -- execution ------------------------------------------------------------

    def begin_job(self, cr: Cursor, job_id: int, worker_id: str) -> bool:
        """Begin the job in ``cr``'s transaction as its one executor: false when the job
        is no longer started by ``worker_id`` (cancelled or reclaimed meanwhile)."""
        return job_id in self.begin_jobs(cr, [job_id], worker_id)

    def begin_jobs(self, cr: Cursor, job_ids: Sequence[int], worker_id: str) -> set[int]:
        """Begin jobs that are to run one after the other in ``cr``'s transaction, in one
        round trip: which of them are still started by ``worker_id``. Until the
        transaction ends, no reclaim can take them (:meth:`executor_gone` is false)."""
        return self.begin_jobs_reading(cr, job_ids, worker_id, [])[0]

    def begin_jobs_reading(
        self,
        cr: Cursor,
        job_ids: Sequence[int],
        worker_id: str,
        queries: Sequence[tuple[str, Sequence[Any]]],
    ) -> tuple[set[int], list[list[tuple[Any, ...]]]]:
        """:meth:`begin_jobs`, and the rows of each of ``queries`` (reads the jobs make
        before their methods run), run after the check in the same round trip: the
        jobs then start without one more."""
        statements = [*self._run_locks(job_ids), self._check_jobs(job_ids, worker_id), *queries]
        results = cr.execute_together(statements, prepared=True)
        read = len(results) - len(queries)
        return {row[0] for row in results[read - 1]}, results[read:]

    def _check_jobs(self, job_ids: Sequence[int], worker_id: str) -> tuple[str, Sequence[Any]]:
        """The statement that gives those of ``job_ids`` still started by ``worker_id``."""
        in_sql, params = self.backend.in_ids("id", job_ids)
        return f"{self.check_jobs_sql} AND {in_sql}", (worker_id, *params)

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
        finished: Sequence[FinishedRow],
        worker_id: str | None,
    ) -> dict[int, bool]:
        """started -> done for ``(job_id, result as JSON text, duration)``, in one round
        trip: the jobs marked, each with whether it has dependents."""

    def finish_handing_off(
        self,
        cr: Cursor,
        finished: Sequence[FinishedRow],
        worker_id: str,
        hand_off: HandOff,
    ) -> tuple[dict[int, bool], list[ClaimedJob]]:
        """:meth:`finish`, then the capacity the jobs free handed to the next due jobs of
        their channel (all of ``hand_off.channel``), marked started by ``worker_id`` in
        the same transaction, in the same round trip where the database can: a channel
        at its limit goes on without a claim per job. The jobs taken come in order.

        Limits stay exact without the claim lock: what is taken weighs no more than
        what the finished jobs free (a claim running meanwhile still counts them as
        started) nor than the room the channel has (its limit may have been lowered).
        Nothing is taken where the claim works a rule out itself (fair keys, rate
        windows, a backoff in force), nor on a database that has no such statement."""
        return self.finish(cr, finished, worker_id), []

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

    # -- enqueue-time channel rules (PRODUCT.md 12: weight, max_depth) -----------------
    # An enqueue reads its channels' rules once per transaction; into a channel with a
    # max_depth it serialises with the other enqueuers of that channel (a lock held to
    # its commit) and counts the depth while it holds the lock.

    #: the statements of this section (each database's module has them, as
    #: CHANNEL_RULES, CHANNEL_DEPTH and COUNT_SKIPPED)
    channel_rules_sql: str
    channel_depth_sql: str
    count_skipped_sql: str

    def channel_rules(
        self, cr: Cursor, channels: Sequence[str] | None = None
    ) -> dict[str, ChannelRules]:
        """The rules of those of ``channels`` (every channel: None) that have a
        ``queue.limit`` row."""
        if channels is None:
            cr.execute(self.channel_rules_sql, (), write=False)
        else:
            in_sql, params = self.backend.in_values("name", list(channels))
            cr.execute(f"{self.channel_rules_sql} WHERE {in_sql}", params, write=False)
        return {
            name: ChannelRules(int(limit), int(max_depth or 0), depth_policy or "raise")
            for name, limit, max_depth, depth_policy in cr.fetchall()
        }

    def lock_depth(self, cr: Cursor, channel: str) -> int:
        """Serialise with the other enqueuers of ``channel`` until ``cr``'s transaction
        ends, then count its jobs waiting or pending (committed ones, and this
        transaction's own)."""
        cr.execute(self.channel_depth_sql, (channel, channel), write=True)
        row = cr.fetchone()
        return int(row[0]) if row else 0

    def count_skipped(self, cr: Cursor, channel: str, count: int = 1) -> None:
        """Add ``count`` to the channel's ``skipped`` counter (the skip policy)."""
        cr.execute(self.count_skipped_sql, (count, channel), write=True)

    # -- counts of the backlog (the dashboard, /metrics, stats, snapshots) ----------------
    # The waiting and pending jobs of each channel. PostgreSQL keeps them: triggers on
    # queue_job write them in the transactions that change the jobs, so a reader never
    # counts the backlog, and any change of a job's state or channel, by the store or by
    # a hand-written statement, keeps them exact. SQLite counts them from its indexes
    # (see :mod:`.jobstore_sqlite`). Started jobs are never kept: there are at most as
    # many as the workers' executors, counted from their own index.

    #: the statement of :meth:`queued_counts` (each database's QUEUED_COUNTS)
    queued_counts_sql: str

    def install_counts(self, cr: Cursor) -> bool:
        """Make what keeps the counts where it is missing, and count the jobs once then;
        whether it did. Run in the schema upgrade's transaction."""
        return False

    def recount(self, cr: Cursor) -> None:  # noqa: B027 - nothing to do where nothing is kept
        """Count the jobs waiting and pending again, writers kept out meanwhile (after
        the triggers were disabled, as a bulk load may do)."""

    def queued_counts(self, cr: Cursor) -> dict[tuple[str, str], int]:
        """{(channel, state): jobs} for the states waiting and pending (pairs with no
        job left out)."""
        cr.execute(self.queued_counts_sql, (), write=False)
        return {(channel, state): int(n) for channel, state, n in cr.fetchall()}

    def fold_counts(self, session: Session) -> int:
        """Fold what the triggers added since the last fold, on ``session`` (the
        maintenance's), where they add rows rather than update them; the rows folded
        (none where nothing is kept)."""
        return 0

    # -- readers of fair share (jobs explain, limits fair, the dashboard, metrics) -------
    # Read-only, and bounded like the claim: they walk the pending index key by key and
    # stop after a given number of keys, never reading the jobs waiting behind them.

    @abstractmethod
    def fair_keys(
        self, cr: Cursor, channel: str, *, pairs: int, count: int = 0
    ) -> list[tuple[int, str, int]]:
        """The first ``pairs`` (priority, key) pairs with pending jobs of ``channel``, in
        the order of the pending index (priority, then key; jobs without a key have the
        key ``''``), each with its pending jobs there counted up to ``count`` (0: not
        counted)."""

    @abstractmethod
    def due_fair_keys(
        self,
        cr: Cursor,
        channel: str,
        priority: int,
        now: datetime,
        *,
        start: str,
        inclusive: bool,
        stop: str | None,
        walk: int,
    ) -> tuple[int, bool]:
        """How many keys of ``channel`` with due jobs at ``priority`` lie after ``start``
        (from it when ``inclusive``) and before ``stop`` (None: up to the last key), in
        key order, looking at ``walk`` keys with pending jobs there at most; and whether
        the walk stopped at that bound (there may be more)."""

    @abstractmethod
    def key_after(self, cr: Cursor, key: str, other: str) -> bool:
        """Whether fair key ``key`` sorts after ``other`` in the database's order of keys
        (the order of the rotation)."""

    def fair_keys_ahead(
        self,
        cr: Cursor,
        channel: str,
        priority: int,
        now: datetime,
        *,
        cursor: tuple[str, int],
        key: str,
        walk: int,
    ) -> tuple[int, bool]:
        """How many other keys with due jobs at ``priority`` the rotation of ``channel``
        serves before ``key`` (in the order of :meth:`_fair_level`: after the cursor's
        key, or from it when its turn is not over, then from the start up to it), each
        walk looking at ``walk`` keys at most; and whether a walk stopped at its bound."""
        start, unfinished = cursor
        inclusive = bool(unfinished)
        walked = partial(self.due_fair_keys, cr, channel, priority, now, walk=walk)
        if (inclusive and key == start) or self.key_after(cr, key, start):
            return walked(start=start, inclusive=inclusive, stop=key)  # in this lap
        tail, more = walked(start=start, inclusive=inclusive, stop=None)
        head, more_head = walked(start="", inclusive=True, stop=key)  # in the next lap
        return tail + head, more or more_head

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
    def notify_at_commit(self, cr: Cursor, *, crons: bool = False) -> None:
        """Wake idle workers when ``cr``'s transaction commits: it enqueued jobs, or, with
        ``crons``, changed periodic jobs (their listeners then say
        :meth:`Listener.crons_changed`, and a worker need not claim)."""

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
        """Consume wake-ups; true if jobs may have become available. Notes, for
        :meth:`crons_changed`, whether periodic jobs may have changed."""

    #: seconds between calls of :meth:`woken` if it must be polled; None: wait on fileno
    poll_interval: float | None = None
    #: set by :meth:`woken`, cleared by :meth:`crons_changed`
    _crons_changed = False

    def crons_changed(self) -> bool:
        """Whether the wake-ups consumed since the last call said periodic jobs may have
        changed (where a wake-up cannot tell, any wake-up does); clears it."""
        changed, self._crons_changed = self._crons_changed, False
        return changed

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


def notify_crons_changed(cr: Cursor) -> None:
    """Called when periodic jobs are made, changed or deleted: workers read them again
    once the transaction commits (and do not claim for it)."""
    job_store(cr.backend).notify_at_commit(cr, crons=True)


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
