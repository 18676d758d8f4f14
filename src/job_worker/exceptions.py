"""Every error job_worker raises on purpose.

``JobError`` is the root of the errors that concern a job's execution; a job
method raises ``RetryableJobError`` or ``FailedJobError`` to steer its own
fate, and the worker records ``TimeoutJobError`` and ``WorkerDiedJobError``
when it had to stop an executor. ``MissingError`` comes from the record
runtime. Errors of bad input are the builtin ``TypeError``, ``ValueError`` and
``KeyError``, with a message naming the bad value.
"""

from __future__ import annotations


class MissingError(ValueError):
    """A record was read or written that does not exist (any more) in the database."""


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


class FailedJobError(JobError):
    """Raised by a job to fail at once, whatever retries it has left."""


class TimeoutJobError(JobError):
    """Recorded when a job ran past its ``timeout`` and its executor was killed."""


class WorkerDiedJobError(JobError):
    """Recorded when the process running a job died (killed, out of memory, host lost)."""


class DatabaseOpenError(Exception):
    """Raised when a database cannot be opened: the SQLite file does not exist (and may
    not be created here), sits in a folder that does not exist, is a folder or not a
    database, or is read-only for a writing transaction; the PostgreSQL server does not
    answer or refuses the connection (no such database, bad credentials); or the
    database has no job_worker tables where they must exist already. The message is one
    line: the server's own words where there are any."""
