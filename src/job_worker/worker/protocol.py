"""The messages between the supervisor and an executor, over the executor's pipe.

To the executor: :class:`Run` (run these jobs one after the other; the next batch
of short jobs may come while one runs), :class:`Drain` (give back every job not
begun yet: the supervisor is stopping, for good), :class:`Stop`.

From the executor: :class:`Ready` (warmed up, takes jobs), :class:`SessionOpened`
(its database session, for the supervisor to end after a kill), :class:`Began`
(a job with a timeout began: its deadline runs from now), :class:`Finished` (the
outcomes of jobs, in the order given, once their transaction ended: one message
per transaction), :class:`Handing` (that transaction takes these jobs over, before
it commits), :class:`Wake` (its job enqueued jobs on that database). :class:`HandOffs`
is shared memory: whether executors may take jobs over themselves right now.

A message crosses the pipe per batch, at thousands of jobs a second: messages are
small frozen dataclasses with slots, and a job's outcome is a flat
:class:`JobOutcome`. The ones sent per batch pickle as their class and arguments
(``__reduce__``), several times cheaper than the generic pickling of slots.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..db.jobstore import ClaimedJob
from ..exceptions import ChannelBackoff, FailedJobError, RetryableJobError

# -- to the executor ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """Run ``jobs`` of database ``db_index``, one after the other, after those given
    before."""

    db_index: int
    jobs: Sequence[ClaimedJob]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Run, (self.db_index, self.jobs))


@dataclass(frozen=True, slots=True)
class Drain:
    """Give back every job not begun yet (as :attr:`Outcome.SKIPPED`)."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Exit once the current job, if any, is reported."""


# -- from the executor ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    pid: int


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """The executor's session on database ``db_index`` (PostgreSQL: its backend pid)."""

    db_index: int
    session_id: int | None


@dataclass(frozen=True, slots=True)
class Began:
    """Job ``job_id``, which has a timeout, began: its deadline runs from now."""

    db_index: int
    job_id: int


class Outcome(enum.Enum):
    """How a job given to an executor ended, from the executor's side."""

    #: its done state committed with its writes
    DONE = "done"
    #: its failure was recorded: :attr:`JobOutcome.state` is its new state
    FAILED = "failed"
    #: no longer this worker's (cancelled, set by hand, reclaimed): nothing committed
    LOST = "lost"
    #: given back before it began, or with a batch rolled back: the supervisor returns
    #: it to pending, no attempt counted
    SKIPPED = "skipped"
    #: it failed and the database could not be told: the supervisor records
    #: :attr:`JobOutcome.report`
    UNRECORDED = "unrecorded"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_outcome, (self.value,))  # a dict lookup, not a call of the enum class


def _outcome(value: str) -> Outcome:
    return _OUTCOMES[value]


_OUTCOMES = {outcome.value: outcome for outcome in Outcome}


@dataclass(frozen=True, slots=True)
class JobOutcome:
    job_id: int
    outcome: Outcome
    #: FAILED: the job's new state ("pending": retried, "failed": final, None: it was
    #: no longer this worker's)
    state: str | None = None
    #: UNRECORDED: the failure, for the supervisor to record
    report: FailureReport | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (JobOutcome, (self.job_id, self.outcome, self.state, self.report))


@dataclass(frozen=True, slots=True)
class Finished:
    """The outcomes of jobs of database ``db_index``, in the order they were given."""

    db_index: int
    outcomes: Sequence[JobOutcome]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Finished, (self.db_index, self.outcomes))


@dataclass(frozen=True, slots=True)
class Handing:
    """The transaction of the batch whose first ``after`` jobs ran handed their
    capacity to ``jobs`` (marked started by this worker), which run right after them.
    Sent before the commit: the jobs come back as LOST or SKIPPED if it fails."""

    db_index: int
    after: int
    jobs: Sequence[ClaimedJob]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Handing, (self.db_index, self.after, self.jobs))


@dataclass(frozen=True, slots=True)
class Wake:
    """A job enqueued jobs on database ``db_index``: claim without waiting for the
    database's notice."""

    db_index: int


ToExecutor = Run | Drain | Stop
FromExecutor = Ready | SessionOpened | Began | Finished | Handing | Wake


class HandOffs:
    """Shared memory between the supervisor and its executors: until when (monotonic
    time, one value per database) an executor may hand the capacity its finishing
    jobs free to the next jobs of their channel, and the default limit it applies
    then. The supervisor grants it after a claim that took every due job it could (a
    channel's limit holds the others back) and revokes it as soon as something may
    have changed that (a wake-up, a stop); it ends by itself at the supervisor's next
    poll, so that a claim weighs every channel again."""

    def __init__(self, values: Any):
        #: per database: the end of the grant (0: none), then the default limit
        self.values = values

    @classmethod
    def create(cls, ctx: Any, databases: int) -> HandOffs:
        return cls(ctx.Array("d", 2 * databases, lock=False))

    def grant(self, db_index: int, until: float, default_limit: int) -> None:
        self.values[2 * db_index + 1] = default_limit
        self.values[2 * db_index] = until  # last: the limit is in place once granted

    def revoke(self, db_index: int | None = None) -> None:
        for index in range(len(self.values) // 2) if db_index is None else (db_index,):
            self.values[2 * index] = 0.0

    def granted(self, db_index: int, now: float) -> int | None:
        """The default limit, while granted; None otherwise."""
        if now >= self.values[2 * db_index]:
            return None
        return int(self.values[2 * db_index + 1])


# -- failures ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailureReport:
    """A job's exception in picklable form, enough for ``states.record_failure``."""

    exc_module: str
    exc_qualname: str
    message: str
    traceback: str
    kind: str  # "retryable", "failed", "backoff" (ChannelBackoff) or "error"
    seconds: float | None = None
    ignore_retry: bool = False
    #: the reason of a ChannelBackoff
    reason: str = ""

    @classmethod
    def of(cls, exc: BaseException, text: str) -> FailureReport:
        kind = "error"
        if isinstance(exc, RetryableJobError):
            kind = "retryable"
        elif isinstance(exc, FailedJobError):
            kind = "failed"
        elif isinstance(exc, ChannelBackoff):
            kind = "backoff"
        return cls(
            type(exc).__module__,
            type(exc).__qualname__,
            str(exc),
            text,
            kind,
            getattr(exc, "seconds", None),
            bool(getattr(exc, "ignore_retry", False)),
            str(getattr(exc, "reason", "") or ""),
        )

    @classmethod
    def connection_lost(cls, exc: BaseException, text: str) -> FailureReport:
        """The job's connection broke (the database restarted): counted, retried in a
        second."""
        return cls(
            RetryableJobError.__module__,
            RetryableJobError.__qualname__,
            f"database connection lost while the job ran: {type(exc).__name__}: {exc}",
            text,
            "retryable",
            1.0,
        )

    def exception(self) -> BaseException:
        """An exception that ``record_failure`` treats as the original one: same name,
        message, retry semantics."""
        base: type[Exception] = {
            "retryable": RetryableJobError,
            "failed": FailedJobError,
            "backoff": ChannelBackoff,
        }.get(self.kind, Exception)
        stand_in = type(
            self.exc_qualname.rsplit(".", 1)[-1],
            (base,),
            {
                "__module__": self.exc_module,
                "__qualname__": self.exc_qualname,
            },
        )
        if base is RetryableJobError:
            return stand_in(self.message, seconds=self.seconds, ignore_retry=self.ignore_retry)
        if base is ChannelBackoff:
            return stand_in(self.seconds, self.reason)
        return stand_in(self.message)
