"""The states of a job and how they group: the one place they are spelled.

``waiting -> pending -> started -> done | failed``, and ``cancelled`` (PRODUCT.md
section 4). :mod:`job_worker.queue.states` makes the changes; this module only
names the states, so that everything else (the queue.job model, the monitoring
queries, the CLI, the dashboard) can import it without importing anything else.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class JobState(enum.StrEnum):
    """A job's state; each member is the text stored in ``queue_job.state``."""

    WAITING = "waiting"  # for the jobs it depends on
    PENDING = "pending"  # due, or due later: the worker picks it
    STARTED = "started"  # a worker runs it
    DONE = "done"
    FAILED = "failed"  # out of retries, or failed for good
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        """How a person reads it: ``Waiting``."""
        return self.value.capitalize()


#: every state, in the order of the lifecycle
ALL: tuple[JobState, ...] = tuple(JobState)
#: the job still has to run or is running: it holds its identity key
ACTIVE: tuple[JobState, ...] = (JobState.WAITING, JobState.PENDING, JobState.STARTED)
#: the job is over; only a manual action or requeue changes it again
TERMINAL: tuple[JobState, ...] = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
#: waiting for a worker: not yet started
QUEUED: tuple[JobState, ...] = (JobState.WAITING, JobState.PENDING)

#: the manual actions of queue.job (its method names) and the states each accepts
ACCEPTS: dict[str, tuple[JobState, ...]] = {
    "requeue": (JobState.FAILED, JobState.CANCELLED, JobState.DONE),
    "cancel": ACTIVE,
    "set_done": tuple(s for s in ALL if s is not JobState.DONE),
    "set_failed": tuple(s for s in ALL if s is not JobState.FAILED),
}


def sql_in(states: Iterable[JobState], column: str = "state") -> str:
    """``state IN ('waiting', 'pending')``: a condition on ``states`` as SQL text,
    for the places that need a constant statement (a partial index, a prepared query).
    Only members of :class:`JobState` are accepted: their text is known to be safe."""
    listed = []
    for state in states:
        if not isinstance(state, JobState):
            raise TypeError(f"expected a JobState, got {state!r}")
        listed.append(f"'{state.value}'")
    if not listed:
        raise ValueError("a state condition needs at least one state")
    return f"{column} IN ({', '.join(listed)})"
