"""State changes the supervisor owes jobs whose executor could not make them.

An executor killed at a timeout, dead, stopped, or unable to reach the database
leaves its job ``started``: the supervisor records what happened (an attempt
counted, or the job back to pending) once the executor's session is gone. A
change that fails stays queued, in order, and is tried again under the
database's backoff; nothing owed is dropped. At shutdown the supervisor retries
for a few seconds, then leaves what is left to the stale-job reclaim.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Literal

from ..db import jobstore
from ..exceptions import TimeoutJobError, WorkerDiedJobError
from ..queue import states
from .backoff import FAILED
from .database import Database
from .protocol import FailureReport

_logger = logging.getLogger(__name__)

#: ``timeout`` and ``died`` count an attempt (TimeoutJobError, WorkerDiedJobError);
#: ``stop`` returns the job to pending without counting one; ``failure`` records an
#: executor's failure it could not record itself. Logged as ``job.<kind>``.
ChangeKind = Literal["timeout", "died", "stop", "failure"]


@dataclass
class OwedChange:
    """A state change the supervisor owes a job whose executor it lost."""

    kind: ChangeKind
    job: jobstore.ClaimedJob
    detail: str = ""
    #: the executor's database session, ended before the change (None: nothing to end)
    session_id: int | None = None
    report: FailureReport | None = None
    attempts: int = 0
    #: the job's state its change applies to: ``pending`` for a job whose start was never
    #: committed (a slot's run took it in the transaction its executor died in)
    expected_state: str = "started"


class Recorder:
    """The owed changes of one database, applied in order."""

    def __init__(self, db: Database):
        self.db = db
        self.pending: list[OwedChange] = []

    def owe(self, change: OwedChange) -> None:
        self.pending.append(change)

    def next_timer(self, now: float) -> float | None:
        """Soon while changes are owed (a killed executor's session may take a moment
        to go); None otherwise."""
        return now + 0.1 if self.pending else None

    def apply(self, now: float) -> None:
        """Apply what is owed, in order, until the database fails or an executor's
        session is not gone yet."""
        while self.pending and self.db.available(now):
            change = self.pending[0]
            applied = self.db.guarded(now, f"record {change.kind}", partial(self._apply, change))
            if applied is FAILED:
                return
            if applied is False:  # the executor's session is not gone yet: try again soon
                change.attempts += 1
                return
            self.pending.pop(0)

    def _apply(self, change: OwedChange) -> bool:
        store, worker_id = self.db.store, self.db.worker_id
        assert store is not None
        job = change.job
        if change.session_id is not None:
            with self.db.cursor() as cr:
                store.terminate_session(cr, change.session_id)
            change.session_id = None
        with self.db.cursor() as cr:
            if not store.executor_gone(cr, job.id):
                return False
            if change.kind == "stop":
                returned = states.return_to_pending(cr, [job.id], worker_id=worker_id)
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
                started = change.expected_state == "started"
                new_state = states.record_failure(
                    cr,
                    job.id,
                    exc,
                    traceback=text,
                    worker_id=worker_id if started else None,  # a pending job has none
                    expected_state=change.expected_state,
                    max_backoff=self.db.settings.max_backoff,
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
                "database": self.db.name,
            },
        )
        return True
