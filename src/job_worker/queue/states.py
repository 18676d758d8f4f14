"""Job state changes and the graph cascades they cause: the policy.

These functions are the one place where the engine decides a job's next state:
``run_now()``, the manual actions and the worker all go through them, so the rules
of PRODUCT.md sections 4 and 5 exist once. What they decide here: retry or fail,
the backoff, the diagnosis text, which dependents a cascade releases, fails or
cancels. The statements that change the rows are the job store's named operations
(:mod:`job_worker.db.jobstore`), each naming the state it expects (and the worker
that owns a started job), so a stale actor never overwrites a newer truth. Times
come from the database's clock. Cascades run in the caller's transaction: a graph
is never half-released.

States: ``waiting -> pending -> started -> done | failed``, and ``cancelled``.
"""

from __future__ import annotations

import re
import traceback as tb
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..db.jobstore import (
    ClaimedJob,
    FailingJob,
    FailureRecord,
    FinishedRow,
    HandOff,
    JobStore,
    job_store,
)
from ..exceptions import ChannelBackoff, DependencyFailedError, FailedJobError, RetryableJobError
from ..orm.fields import json_text, storable_text
from . import config
from .lifecycle import QUEUED, TERMINAL, JobState
from .serialization import encode_result

if TYPE_CHECKING:
    from ..db import Cursor

DEFAULT_MAX_BACKOFF = 3600
#: exc_info keeps at most this many characters: the first attempts and the latest
MAX_EXC_INFO = 100_000


def backoff(attempt: int, max_backoff: float = DEFAULT_MAX_BACKOFF) -> float:
    """Seconds to wait before retry number ``attempt``: 10, 20, 40, ... capped."""
    return min(10 * 2 ** (max(attempt, 1) - 1), max_backoff)


def exception_name(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def append_diagnosis(previous: str | None, text: str) -> str:
    """exc_info grows by appending; past MAX_EXC_INFO the middle is dropped."""
    text = storable_text(text)
    combined = f"{previous}\n{text}" if previous else text
    if len(combined) <= MAX_EXC_INFO:
        return combined
    head = MAX_EXC_INFO // 5
    tail = MAX_EXC_INFO - head - 100
    return f"{combined[:head]}\n[... {len(combined) - head - tail} characters dropped ...]\n{combined[-tail:]}"


def attempt_header(number: int, at: datetime, ran: float | None, worker_id: str | None) -> str:
    """The line that opens an attempt's diagnosis in ``exc_info``: when it failed, how
    long it ran and where (``in process`` for ``run_now``). The dashboard's and the
    CLI's timelines read it back with :data:`ATTEMPT_HEADER`."""
    where = f"on {worker_id}" if worker_id else "in process"
    spent = f"ran {ran:.3f} s " if ran is not None else ""
    return f"--- attempt {number} at {at.isoformat(' ')} ({spent}{where}) ---"


#: an attempt header of ``exc_info``: number, moment, and (older rows lack it) run time
#: and place
ATTEMPT_HEADER = re.compile(
    r"^--- attempt (\d+) at (.+?)(?: \((?:ran ([0-9.]+) s )?(on .+?|in process)\))? ---$",
    re.MULTILINE,
)
#: the header of a run that ended in a ChannelBackoff (no attempt counted)
BACKOFF_HEADER = re.compile(
    r"^--- channel backoff (\d+) at (.+?)(?: \((?:ran ([0-9.]+) s )?(on .+?|in process)\))? ---$",
    re.MULTILINE,
)
#: the first words of the last line of a backoff's diagnosis
BACKOFF_PREFIX = "channel backoff: "


def _store(cr: Cursor) -> JobStore:
    return job_store(cr.backend)


def _forget(cr: Cursor, job_ids: Iterable[int] | None = None) -> None:
    """Drop the record cache of jobs whose rows changed (all jobs: ``job_ids`` None)."""
    if job_ids is None:
        cr.cache.pop("queue.job", None)
        return
    ids = list(job_ids)
    for values in cr.cache.get("queue.job", {}).values():
        for job_id in ids:
            values.pop(job_id, None)


def _result_text(result: Any) -> str | None:
    value = encode_result(result)
    return None if value is None else json_text(value)


#: the exc_name of a job failed because a job it waits for failed
DEPENDENCY_FAILED = exception_name(DependencyFailedError())


# -- starting and finishing ------------------------------------------------------


def mark_started(cr: Cursor, job_id: int, worker_id: str | None = None) -> bool:
    started = _store(cr).start(cr, job_id, worker_id)
    _forget(cr, [job_id])
    return started


def mark_done(
    cr: Cursor,
    job_id: int,
    result: Any,
    *,
    duration: float | None = None,
    worker_id: str | None = None,
) -> bool:
    """started -> done, with the result and the cascade to dependents."""
    return bool(mark_done_many(cr, [(job_id, result, duration)], worker_id=worker_id))


def mark_done_many(
    cr: Cursor,
    finished: Sequence[tuple[int, Any, float | None]],
    *,
    worker_id: str | None = None,
    timing: Mapping[int, tuple[float, bool]] | None = None,
) -> set[int]:
    """started -> done for jobs that ran in one transaction, each ``(job_id, result,
    duration)``, in one round trip, with the cascade to their dependents. Returns the
    ids marked: a job no longer started (by ``worker_id``) is left alone. ``timing``:
    per job, the seconds since its code ended, and whether a slot's run took it (see
    :data:`~job_worker.db.jobstore.FinishedRow`)."""
    if not finished:
        return set()
    rows = _finished_rows(finished, timing)
    return _finished(cr, finished, _store(cr).finish(cr, rows, worker_id))


def mark_done_handing_off(
    cr: Cursor,
    finished: Sequence[tuple[int, Any, float | None]],
    *,
    worker_id: str,
    hand_off: HandOff,
    timing: Mapping[int, tuple[float, bool]] | None = None,
) -> tuple[set[int], list[ClaimedJob], bool]:
    """:func:`mark_done_many` for a worker's jobs of one channel, and the capacity they
    free handed to the channel's next due jobs, marked started by ``worker_id`` in this
    transaction (:meth:`~job_worker.db.jobstore.JobStore.finish_handing_off`): the ids
    marked, the jobs taken, in order, and whether a job marked has dependents (their
    cascade, after the hand-off looked, may have made some of them pending)."""
    rows = _finished_rows(finished, timing)
    marked, handed = _store(cr).finish_handing_off(cr, rows, worker_id, hand_off)
    return _finished(cr, finished, marked), handed, any(marked.values())


def _finished_rows(
    finished: Sequence[tuple[int, Any, float | None]],
    timing: Mapping[int, tuple[float, bool]] | None,
) -> list[FinishedRow]:
    if not timing:
        return [(job_id, _result_text(result), duration) for job_id, result, duration in finished]
    return [
        (job_id, _result_text(result), duration, *timing[job_id])
        for job_id, result, duration in finished
    ]


def _finished(
    cr: Cursor, finished: Sequence[tuple[int, Any, float | None]], marked: dict[int, bool]
) -> set[int]:
    """What follows the done state of jobs: their cascade to their dependents."""
    _forget(cr, [job_id for job_id, _r, _d in finished])
    cascade(cr, [job_id for job_id, has_dependents in marked.items() if has_dependents])
    return set(marked)


def record_failure(
    cr: Cursor,
    job_id: int,
    exc: BaseException,
    *,
    traceback: str | None = None,
    worker_id: str | None = None,
    expected_state: str = "started",
    max_backoff: float = DEFAULT_MAX_BACKOFF,
    final: bool = False,
) -> str | None:
    """Record a failed attempt of a started job: retried (``pending`` after a
    backoff) or ``failed`` once its retries are spent. Returns the new state,
    or None if the job was not in ``expected_state`` (someone else decided).

    A :class:`~job_worker.exceptions.ChannelBackoff` pauses the job's channel and
    returns the job to ``pending`` without counting an attempt (:func:`_back_off`);
    once the job did so ``max_channel_backoffs`` times, the backoff still pauses the
    channel but counts as a failed attempt."""
    store = _store(cr)
    job = store.failing_job(cr, job_id, expected_state, worker_id)
    if job is None:
        return None
    ignore = isinstance(exc, RetryableJobError) and exc.ignore_retry
    attempts = job.attempts if ignore else job.attempts + 1
    now = job.now
    text = traceback or "".join(tb.format_exception_only(type(exc), exc)).strip()
    ran = (now - job.started_at).total_seconds() if job.started_at else None
    message = str(exc)
    pause = exc if isinstance(exc, ChannelBackoff) and not final else None
    if pause is not None:
        bound = config.read(cr).max_channel_backoffs
        if job.backoffs < bound:
            return _back_off(cr, store, job_id, job, pause, text, expected_state, worker_id, ran)
        message = (
            f"{_backoff_message(job.channel, pause, job.now)}; the job already paused its"
            f" channel {job.backoffs} times (max_channel_backoffs = {bound}): counted as a"
            " failed attempt"
        )
        text = f"{text}\n{message}"
    outcome = FailureRecord(
        exception_name(exc),
        storable_text(message),
        append_diagnosis(
            job.exc_info, f"{attempt_header(attempts, now, ran, job.worker_id)}\n{text}"
        ),
        attempts,
    )
    retry = (
        not final
        and not isinstance(exc, FailedJobError)
        and (ignore or job.max_retries == 0 or attempts <= job.max_retries)
    )
    if retry:
        seconds = (
            exc.seconds
            if isinstance(exc, RetryableJobError) and exc.seconds is not None
            else backoff(attempts, max_backoff)
        )
        applied = store.retry(
            cr,
            job_id,
            expected_state,
            worker_id,
            outcome,
            at=now,
            retry_at=now + timedelta(seconds=seconds),
        )
        new_state = "pending"
    else:
        applied = store.fail(cr, job_id, expected_state, worker_id, outcome, at=now, duration=ran)
        new_state = "failed"
    if not applied:
        return None
    _forget(cr, [job_id])
    if pause is not None:  # past the bound the job's attempt counts; the pause holds
        _pause_channel(cr, store, job_id, job, pause)
    if new_state == "failed" and job.has_dependents:
        cascade(cr, [job_id])
    return new_state


def _backoff_message(channel: str, exc: ChannelBackoff, now: datetime) -> str:
    until = now + timedelta(seconds=exc.seconds)
    reason = f": {exc.reason}" if exc.reason else ""
    return (
        f"{BACKOFF_PREFIX}channel {channel} paused for {exc.seconds:g} s"
        f" (until {until:%Y-%m-%d %H:%M:%S} UTC at least){reason}"
    )


def _pause_channel(
    cr: Cursor, store: JobStore, job_id: int, job: FailingJob, exc: ChannelBackoff
) -> datetime:
    """Pause the job's channel for the seconds it asked (from the database's clock, read
    with the job); a pause in force that ends later stays. Returns the end of the pause
    in force. Idle workers are woken at commit: their next claim learns when the pause
    ends and they wake then."""
    until = store.back_off_channel(
        cr,
        job.channel,
        until=job.now + timedelta(seconds=exc.seconds),
        reason=storable_text(exc.reason),
        job_id=job_id,
        at=job.now,
    )
    store.notify_at_commit(cr)
    cr.cache.pop("queue.channel", None)  # its row changed under the record cache
    return until


def _back_off(
    cr: Cursor,
    store: JobStore,
    job_id: int,
    job: FailingJob,
    exc: ChannelBackoff,
    text: str,
    expected_state: str,
    worker_id: str | None,
    ran: float | None,
) -> str | None:
    """The job returns to pending without counting an attempt, due as it was (the pause
    is its channel's), and pauses its channel. Its diagnosis records the backoff like
    an attempt."""
    where = f"on {job.worker_id}" if job.worker_id else "in process"
    spent = f"ran {ran:.3f} s " if ran is not None else ""
    message = _backoff_message(job.channel, exc, job.now)
    header = (
        f"--- channel backoff {job.backoffs + 1} at {job.now.isoformat(' ')} ({spent}{where}) ---"
    )
    outcome = FailureRecord(
        exception_name(exc),
        storable_text(message),
        append_diagnosis(job.exc_info, f"{header}\n{text}\n{message}"),
        job.attempts,
    )
    if not store.back_off(cr, job_id, expected_state, worker_id, outcome, at=job.now):
        return None
    _forget(cr, [job_id])
    _pause_channel(cr, store, job_id, job, exc)
    return "pending"


def return_to_pending(
    cr: Cursor, job_ids: Sequence[int], worker_id: str | None = None
) -> list[int]:
    """started -> pending without counting an attempt (graceful stop)."""
    if not job_ids:
        return []
    ids = _store(cr).return_to_pending(cr, job_ids, worker_id)
    _forget(cr, ids)
    return ids


# -- manual actions ----------------------------------------------------------------


def force_state(cr: Cursor, job_ids: Sequence[int], state: str, message: str | None = None) -> None:
    """Set ``state`` (done, failed or cancelled) by hand, then cascade."""
    if state not in FORCED:
        raise ValueError(f"a job is set {', '.join(FORCED)} by hand, not {state!r}")
    store = _store(cr)
    if state == "failed":
        now = store.now(cr)
        text = f"--- set failed at {now.isoformat(' ')} ---\n{message}"
        for job_id, exc_info in store.exc_infos(cr, job_ids).items():
            store.set_exc_info(cr, job_id, append_diagnosis(exc_info, text))
        parents = store.force(
            cr,
            job_ids,
            state,
            exc_name=exception_name(FailedJobError()),
            exc_message=message and storable_text(message),
        )
    else:
        parents = store.force(cr, job_ids, state)
    _forget(cr, job_ids)
    cascade(cr, parents)


#: the states a job can be set to by hand
FORCED = TERMINAL


def requeue(cr: Cursor, job_ids: Sequence[int]) -> None:
    """failed/cancelled/done -> pending (or waiting while parents are unfinished),
    attempts reset and error cleared; dependents that failed or were cancelled only
    because of these jobs wait for them again."""
    store = _store(cr)
    store.requeue(cr, job_ids)
    todo = list(job_ids)
    while todo:  # recursively: the dependents of those that wait again, and so on
        todo = store.wait_again(cr, todo)
    _forget(cr)
    evaluate(cr, job_ids, include_pending=True)


# -- cascades ------------------------------------------------------------------------


def cascade(cr: Cursor, parent_ids: Iterable[int]) -> None:
    """Re-evaluate the waiting dependents of jobs (that have dependents) which
    just reached a final state."""
    parents = list(parent_ids)
    if not parents:
        return
    evaluate(cr, _store(cr).dependents(cr, parents))


def evaluate(cr: Cursor, job_ids: Sequence[int], include_pending: bool = False) -> None:
    """Decide the state of waiting jobs from their parents' states, and cascade on.

    ``on_done`` edges: every parent done -> ready; one failed -> failed; one
    cancelled -> cancelled. ``on_error`` edges: one parent failed -> ready;
    every parent finished and none failed -> cancelled.
    """
    store = _store(cr)
    states: tuple[str, ...] = QUEUED if include_pending else (JobState.WAITING,)
    while job_ids:
        # lock the dependents first: two parents finishing at once in two
        # transactions must not both see the other unfinished
        locked = store.lock_dependents(cr, job_ids, states)
        if not locked:
            return
        edges: dict[int, list[tuple[int, str, str]]] = {}
        for job_id, parent_id, kind, state in store.edges(cr, locked):
            edges.setdefault(job_id, []).append((parent_id, kind, state))
        ready: list[int] = []
        back: list[int] = []
        decided: dict[tuple[str, int], list[int]] = {}
        for job_id in locked:
            outcome = _decide(edges.get(job_id, []))
            if outcome is None:
                back.append(job_id)
            elif outcome[0] == "pending":
                ready.append(job_id)
            else:
                decided.setdefault(outcome, []).append(job_id)
        _apply(cr, store, ready, back, decided)
        job_ids = []
        finished = [i for ids in decided.values() for i in ids]
        if finished:
            job_ids = store.dependents(cr, finished)
            states = (JobState.WAITING,)


def _decide(edges: list[tuple[int, str, str]]) -> tuple[str, int] | None:
    """(new state, deciding parent) for a job with these (parent, kind, state) edges;
    None to keep waiting."""
    done_edges = [(p, s) for p, k, s in edges if k == "done"]
    error_edges = [(p, s) for p, k, s in edges if k == "error"]
    for parent, state in done_edges:
        if state == "failed":
            return ("failed", parent)
    for parent, state in done_edges:
        if state == "cancelled":
            return ("cancelled", parent)
    if (
        error_edges
        and all(s in TERMINAL for _p, s in error_edges)
        and not any(s == "failed" for _p, s in error_edges)
    ):
        return ("cancelled", error_edges[0][0])
    if all(s == "done" for _p, s in done_edges) and (
        not error_edges or any(s == "failed" for _p, s in error_edges)
    ):
        return ("pending", 0)
    return None


def _apply(
    cr: Cursor,
    store: JobStore,
    ready: list[int],
    back: list[int],
    decided: dict[tuple[str, int], list[int]],
) -> None:
    if ready:
        store.release(cr, ready)
        # pending from the commit on: every idle worker is woken, as by an enqueue (not
        # only the one whose job released them, which may have no slot free)
        store.notify_at_commit(cr)
    if back:  # pending jobs re-evaluated after a requeue of their parent
        store.wait_back(cr, back)
    now = store.now(cr) if any(state == "failed" for state, _parent in decided) else None
    for (state, parent), ids in decided.items():
        if state == "failed":
            assert now is not None
            message = f"parent job {parent} failed"
            diagnosis = f"--- failed at {now.isoformat(' ')} ---\n{DEPENDENCY_FAILED}: {message}"
            outcome = FailureRecord(DEPENDENCY_FAILED, message, diagnosis, 0)
            store.fail_dependents(cr, ids, parent, outcome, at=now)
        else:
            store.cancel_dependents(cr, ids, parent)
    _forget(cr)
