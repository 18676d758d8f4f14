"""Every error job_worker raises on purpose.

``JobError`` is the root of the errors that concern a job's execution; a job
method raises ``RetryableJobError`` or ``FailedJobError`` to steer its own
fate, ``ChannelBackoff`` to pause its whole channel, and the worker records ``TimeoutJobError`` and ``WorkerDiedJobError``
when it had to stop an executor. The worker and ``run_now()`` fail a job at
once, without retry, with ``MissingRecordsError`` or ``MissingUserError`` when
what it runs on is gone. ``MissingError`` and ``TransactionOwnedError`` come
from the record runtime, ``UnknownMethodError`` from describing a job,
``ChannelFullError`` from an enqueue into a channel at its ``max_depth``. Errors
of bad input are the builtin ``TypeError``, ``ValueError`` and ``KeyError``,
with a message naming the bad value. Every class a caller may catch is
importable from here.
"""

from __future__ import annotations


class MissingError(ValueError):
    """A record was read or written that does not exist (any more) in the database."""


class TransactionOwnedError(RuntimeError):
    """Code tried to commit or roll back a transaction that is not its own to end
    (a job's method, which commits with its done state)."""


class UnknownMethodError(AttributeError, ValueError):
    """The method to delay does not exist on the model, is not callable or is private."""


class JobError(Exception):
    """Base class of the errors about running a job."""


class RetryableJobError(JobError):
    """Raised by a job to be retried later.

    ``seconds`` replaces the exponential backoff for this retry; with
    ``ignore_retry=True`` the attempt is not counted against ``max_retries``.
    """

    def __init__(self, msg: str = "", seconds: float | None = None, ignore_retry: bool = False):
        super().__init__(msg)
        if seconds is not None and (isinstance(seconds, bool) or seconds < 0):
            raise ValueError(f"seconds must be a number >= 0, got {seconds!r}")
        self.seconds = seconds
        self.ignore_retry = ignore_retry


#: the longest pause a job may ask of its channel (one day)
MAX_CHANNEL_BACKOFF = 86_400
#: the reason of a channel backoff is kept up to this many characters
MAX_BACKOFF_REASON = 500


class ChannelBackoff(JobError):
    """Raised by a job to pause its whole channel for ``seconds`` (for example on an
    HTTP 429 with a Retry-After header).

    The job's writes are rolled back; the job returns to ``pending`` without counting
    an attempt (its ``backoffs`` counter grows, bounded by the ``max_channel_backoffs``
    cluster setting) and no job of its channel starts, on any worker, until the pause
    ends. A later backoff extends the pause, never shortens it. ``seconds``: a finite
    number > 0 and at most one day; ``reason``: a text shown with the pause (the first
    :data:`MAX_BACKOFF_REASON` characters are kept).
    """

    def __init__(self, seconds: float, reason: str = ""):
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 < seconds <= MAX_CHANNEL_BACKOFF  # also refuses NaN and infinities
        ):
            raise ValueError(
                "ChannelBackoff seconds must be a finite number > 0 and at most "
                f"{MAX_CHANNEL_BACKOFF} (one day), got {seconds!r}"
            )
        if not isinstance(reason, str):
            raise TypeError(f"ChannelBackoff reason must be a str, got {type(reason).__name__}")
        self.seconds = float(seconds)
        self.reason = reason[:MAX_BACKOFF_REASON]
        text = f"channel backoff for {self.seconds:g} s"
        super().__init__(f"{text}: {self.reason}" if self.reason else text)

    def __reduce__(self) -> tuple:
        return (type(self), (self.seconds, self.reason))


class FailedJobError(JobError):
    """Raised by a job to fail at once, whatever retries it has left."""


class TimeoutJobError(JobError):
    """Recorded when a job ran past its ``timeout`` and its executor was killed."""


class WorkerDiedJobError(JobError):
    """Recorded when the process running a job died (killed, out of memory, host lost)."""


class DependencyFailedError(FailedJobError):
    """Recorded on a job failed because a job it waits for (``on_done``) failed."""


class MissingRecordsError(FailedJobError, MissingError):
    """The records a job was to run on no longer exist (some or all of them).

    The job fails at once, without retry: deleted records do not come back.
    ``model_name`` and ``missing_ids`` say which.
    """

    def __init__(self, model_name: str, missing_ids: list[int]):
        shown = ", ".join(map(str, missing_ids[:20]))
        if len(missing_ids) > 20:
            shown += f" and {len(missing_ids) - 20} more"
        super().__init__(
            f"{model_name} record(s) {shown} no longer exist: the job cannot run on them "
            "and is not retried"
        )
        self.model_name = model_name
        self.missing_ids = list(missing_ids)

    def __reduce__(self) -> tuple:
        return (type(self), (self.model_name, self.missing_ids))


class MissingUserError(FailedJobError):
    """The user who enqueued a job was deleted: the job fails at once rather than run
    as another user (it never runs with more rights than its enqueuer had)."""


class RetryLoopError(JobError):
    """A job run at once (synchronous mode, ``trap_jobs().perform_enqueued_jobs()``)
    asked to be retried again and again without spending its retries
    (``RetryableJobError(ignore_retry=True)``); it is left ``pending``."""


class DatabaseOpenError(Exception):
    """Raised when a database cannot be opened: the SQLite file does not exist (and may
    not be created here), sits in a folder that does not exist, is a folder or not a
    database, or is read-only for a writing transaction; the PostgreSQL server does not
    answer or refuses the connection (no such database, bad credentials); or the
    database has no job_worker tables where they must exist already. The message is one
    line: the server's own words where there are any."""


class DatabaseFullError(Exception):
    """Raised when an SQLite database file cannot grow because its filesystem is full
    (SQLite's "database or disk is full"), by the statement or the commit that needed
    the room: nothing of that transaction is kept. The message names the file. The
    worker treats it like any database outage: it backs off and retries, and resumes
    once space is freed."""


class ChannelFullError(Exception):
    """Raised by an enqueue into a channel whose ``max_depth`` (waiting and pending
    jobs) it would exceed, when the channel's ``depth_policy`` is ``raise`` (the
    default). Nothing of the enqueue is written and the caller's transaction stays
    usable. ``channel``, ``depth`` (jobs waiting or pending when it was counted) and
    ``max_depth`` say which bound was hit."""

    def __init__(self, channel: str, depth: int, max_depth: int, wanted: int = 1):
        self.channel = channel
        self.depth = depth
        self.max_depth = max_depth
        jobs = "a job" if wanted == 1 else f"{wanted} jobs"
        super().__init__(
            f"channel {channel} is full: {depth} of {max_depth} jobs waiting or pending, "
            f"no room for {jobs}"
        )

    def __reduce__(self) -> tuple[type, tuple[str, int, int]]:
        return type(self), (self.channel, self.depth, self.max_depth)
