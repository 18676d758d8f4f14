"""Job state changes and the graph cascades they cause.

These functions are the one place where a job changes state: ``run_now()``,
the manual actions and the worker all go through them, so the rules of
PRODUCT.md sections 4 and 5 exist once. Each change names the state it
expects (and the worker that owns a started job) in its WHERE clause, so a
stale actor never overwrites a newer truth; each returns whether it applied.
Cascades run in the caller's transaction: a graph is never half-released.

States: ``waiting -> pending -> started -> done | failed``, and ``cancelled``.
"""

from __future__ import annotations

import re
import traceback as tb
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..exceptions import DependencyFailedError, FailedJobError, RetryableJobError
from ..orm.fields import Datetime, json_text, storable_text
from .lifecycle import TERMINAL
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


def _in(cr: Cursor, column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
    return cr.backend.in_ids(column, list(ids))


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


def _guard(worker_id: str | None) -> tuple[str, list[Any]]:
    return (" AND worker_id = %s", [worker_id]) if worker_id is not None else ("", [])


#: the exc_name of a job failed because a job it waits for failed
DEPENDENCY_FAILED = exception_name(DependencyFailedError())


# -- starting and finishing ------------------------------------------------------


def mark_started(cr: Cursor, job_id: int, worker_id: str | None = None) -> bool:
    now = Datetime.now()
    cr.execute(
        "UPDATE queue_job SET state = 'started', started_at = %s, heartbeat = %s, worker_id = %s"
        " WHERE id = %s AND state = 'pending'",
        [now, now, worker_id, job_id],
    )
    _forget(cr, [job_id])
    return cr.rowcount == 1


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
) -> set[int]:
    """started -> done for jobs that ran in one transaction, each ``(job_id, result,
    duration)``, in one round trip, with the cascade to their dependents. Returns the
    ids marked: a job no longer started (by ``worker_id``) is left alone."""
    if not finished:
        return set()
    now = Datetime.now()
    guard, params = _guard(worker_id)
    query = (
        "UPDATE queue_job SET state = 'done', result = %s, completed_at = %s, duration = %s,"
        f" write_date = %s WHERE id = %s AND state = 'started'{guard} RETURNING has_dependents"
    )
    statements = [
        (query, [_result_text(result), now, duration, now, job_id, *params])
        for job_id, result, duration in finished
    ]
    if len(statements) == 1:  # a statement the driver may keep prepared
        cr.execute(*statements[0])
        results = [cr.fetchall()]
    else:
        results = cr.execute_together(statements, prepared=True)
    marked = {}  # job id -> whether it has dependents
    for (job_id, _result, _duration), rows in zip(finished, results, strict=True):
        if rows:
            marked[job_id] = rows[0][0]
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
    or None if the job was not in ``expected_state`` (someone else decided)."""
    guard, params = _guard(worker_id)
    cr.execute(
        "SELECT attempts, max_retries, exc_info, started_at, has_dependents, worker_id FROM queue_job"
        f" WHERE id = %s AND state = %s{guard}",
        [job_id, expected_state, *params],
    )
    row = cr.fetchone()
    if row is None:
        return None
    attempts, max_retries, exc_info, started_at, has_dependents, ran_on = row
    started_at = Datetime().from_column(started_at) if started_at else None
    ignore = isinstance(exc, RetryableJobError) and exc.ignore_retry
    attempts = attempts if ignore else attempts + 1
    now = Datetime.now()
    text = traceback or "".join(tb.format_exception_only(type(exc), exc)).strip()
    ran = (now - started_at).total_seconds() if started_at else None
    diagnosis = append_diagnosis(exc_info, f"{attempt_header(attempts, now, ran, ran_on)}\n{text}")
    retry = (
        not final
        and not isinstance(exc, FailedJobError)
        and (ignore or max_retries == 0 or attempts <= max_retries)
    )
    common = [exception_name(exc), storable_text(str(exc)), diagnosis, attempts, now]
    if retry:
        seconds = (
            exc.seconds
            if isinstance(exc, RetryableJobError) and exc.seconds is not None
            else backoff(attempts, max_backoff)
        )
        cr.execute(
            "UPDATE queue_job SET state = 'pending', exc_name = %s, exc_message = %s, exc_info = %s,"
            " attempts = %s, write_date = %s, scheduled_at = %s, worker_id = NULL, heartbeat = NULL"
            f" WHERE id = %s AND state = %s{guard}",
            [*common, now + timedelta(seconds=seconds), job_id, expected_state, *params],
        )
        new_state = "pending"
    else:
        cr.execute(
            "UPDATE queue_job SET state = 'failed', exc_name = %s, exc_message = %s, exc_info = %s,"
            " attempts = %s, write_date = %s, completed_at = %s, duration = %s"
            f" WHERE id = %s AND state = %s{guard}",
            [
                *common,
                now,
                ran,
                job_id,
                expected_state,
                *params,
            ],
        )
        new_state = "failed"
    if cr.rowcount != 1:
        return None
    _forget(cr, [job_id])
    if new_state == "failed" and has_dependents:
        cascade(cr, [job_id])
    return new_state


def return_to_pending(
    cr: Cursor, job_ids: Sequence[int], worker_id: str | None = None
) -> list[int]:
    """started -> pending without counting an attempt (graceful stop)."""
    if not job_ids:
        return []
    guard, params = _guard(worker_id)
    sql, id_params = _in(cr, "id", job_ids)
    cr.execute(
        "UPDATE queue_job SET state = 'pending', worker_id = NULL, heartbeat = NULL, started_at = NULL"
        f" WHERE {sql} AND state = 'started'{guard} RETURNING id",
        [*id_params, *params],
    )
    ids = [r[0] for r in cr.fetchall()]
    _forget(cr, ids)
    return ids


# -- manual actions ----------------------------------------------------------------


def force_state(cr: Cursor, job_ids: Sequence[int], state: str, message: str | None = None) -> None:
    """Set ``state`` (done, failed or cancelled) by hand, then cascade."""
    now = Datetime.now()
    if state == "failed":
        _append_diagnoses(cr, job_ids, f"--- set failed at {now.isoformat(' ')} ---\n{message}")
    sql, params = _in(cr, "id", job_ids)
    stamp = {"done": "completed_at", "failed": "completed_at", "cancelled": "cancelled_at"}[state]
    extra = ", exc_name = COALESCE(exc_name, %s), exc_message = %s" if state == "failed" else ""
    extra_params = (
        [exception_name(FailedJobError()), message and storable_text(message)]
        if state == "failed"
        else []
    )
    cr.execute(
        f"UPDATE queue_job SET state = %s, {stamp} = %s, write_date = %s{extra}, cascaded_from_id = NULL"
        f" WHERE {sql} RETURNING id, has_dependents",
        [state, now, now, *extra_params, *params],
    )
    parents = [r[0] for r in cr.fetchall() if r[1]]
    _forget(cr, job_ids)
    cascade(cr, parents)


def _append_diagnoses(cr: Cursor, job_ids: Sequence[int], text: str) -> None:
    """Append ``text`` to the ``exc_info`` of jobs (a manual action: one row at a time)."""
    sql, params = _in(cr, "id", job_ids)
    cr.execute(f"SELECT id, exc_info FROM queue_job WHERE {sql}", params)
    for job_id, exc_info in cr.fetchall():
        cr.execute(
            "UPDATE queue_job SET exc_info = %s WHERE id = %s",
            [append_diagnosis(exc_info, text), job_id],
        )


def requeue(cr: Cursor, job_ids: Sequence[int]) -> None:
    """failed/cancelled/done -> pending (or waiting while parents are unfinished),
    attempts reset and error cleared; dependents that failed or were cancelled only
    because of these jobs wait for them again."""
    now = Datetime.now()
    sql, params = _in(cr, "id", job_ids)
    cr.execute(
        "UPDATE queue_job SET state = 'pending', attempts = 0, exc_name = NULL, exc_message = NULL,"
        " exc_info = NULL, result = NULL, completed_at = NULL, cancelled_at = NULL, started_at = NULL,"
        " duration = NULL, worker_id = NULL, heartbeat = NULL, cascaded_from_id = NULL,"
        f" scheduled_at = %s, write_date = %s WHERE {sql}",
        [now, now, *params],
    )
    _rewait(cr, job_ids)
    _forget(cr)
    evaluate(cr, job_ids, include_pending=True)


def _rewait(cr: Cursor, parent_ids: Sequence[int]) -> None:
    """Dependents whose fate was decided by these parents wait again, recursively;
    on_error dependents released but not yet started wait again too."""
    todo = list(parent_ids)
    while todo:
        sql, params = _in(cr, "cascaded_from_id", todo)
        cr.execute(
            "UPDATE queue_job SET state = 'waiting', cascaded_from_id = NULL, exc_name = NULL,"
            " exc_message = NULL, completed_at = NULL, cancelled_at = NULL"
            f" WHERE {sql} AND state IN ('failed', 'cancelled') RETURNING id",
            params,
        )
        rewaited = [r[0] for r in cr.fetchall()]
        sql, params = _in(cr, "d.parent_id", todo)
        cr.execute(
            "UPDATE queue_job SET state = 'waiting' WHERE state = 'pending' AND id IN ("
            " SELECT d.job_id FROM queue_job_dependency d"
            f" WHERE {sql} AND d.kind = 'error') RETURNING id",
            params,
        )
        todo = rewaited + [r[0] for r in cr.fetchall()]


# -- cascades ------------------------------------------------------------------------


def cascade(cr: Cursor, parent_ids: Iterable[int]) -> None:
    """Re-evaluate the waiting dependents of jobs (that have dependents) which
    just reached a final state."""
    parents = list(parent_ids)
    if not parents:
        return
    sql, params = _in(cr, "d.parent_id", parents)
    cr.execute(f"SELECT DISTINCT d.job_id FROM queue_job_dependency d WHERE {sql}", params)
    evaluate(cr, [r[0] for r in cr.fetchall()])


def evaluate(cr: Cursor, job_ids: Sequence[int], include_pending: bool = False) -> None:
    """Decide the state of waiting jobs from their parents' states, and cascade on.

    ``on_done`` edges: every parent done -> ready; one failed -> failed; one
    cancelled -> cancelled. ``on_error`` edges: one parent failed -> ready;
    every parent finished and none failed -> cancelled.
    """
    states = ("waiting", "pending") if include_pending else ("waiting",)
    while job_ids:
        sql, params = _in(cr, "id", job_ids)
        placeholders = ", ".join(["%s"] * len(states))
        # lock the dependents first: two parents finishing at once in two
        # transactions must not both see the other unfinished (the second one
        # to lock re-reads the first one's committed state)
        cr.execute(
            f"SELECT id FROM queue_job WHERE {sql} AND state IN ({placeholders}) ORDER BY id"
            f"{cr.backend.lock_rows}",
            [*params, *states],
        )
        locked = [r[0] for r in cr.fetchall()]
        if not locked:
            return
        sql, params = _in(cr, "d.job_id", locked)
        cr.execute(
            "SELECT d.job_id, d.parent_id, d.kind, p.state FROM queue_job_dependency d"
            f" JOIN queue_job p ON p.id = d.parent_id WHERE {sql} ORDER BY d.job_id, d.parent_id",
            params,
        )
        edges: dict[int, list[tuple[int, str, str]]] = {}
        for job_id, parent_id, kind, state in cr.fetchall():
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
        _apply(cr, ready, back, decided)
        job_ids = []
        finished = [i for ids in decided.values() for i in ids]
        if finished:
            sql, params = _in(cr, "d.parent_id", finished)
            cr.execute(f"SELECT DISTINCT d.job_id FROM queue_job_dependency d WHERE {sql}", params)
            job_ids = [r[0] for r in cr.fetchall()]
            states = ("waiting",)


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
    cr: Cursor, ready: list[int], back: list[int], decided: dict[tuple[str, int], list[int]]
) -> None:
    now = Datetime.now()
    if ready:
        sql, params = _in(cr, "id", ready)
        cr.execute(
            f"UPDATE queue_job SET state = 'pending', write_date = %s WHERE {sql} AND state = 'waiting'",
            [now, *params],
        )
    if back:  # pending jobs re-evaluated after a requeue of their parent
        sql, params = _in(cr, "id", back)
        cr.execute(
            f"UPDATE queue_job SET state = 'waiting' WHERE {sql} AND state = 'pending'", params
        )
    for (state, parent), ids in decided.items():
        sql, params = _in(cr, "id", ids)
        if state == "failed":
            message = f"parent job {parent} failed"
            diagnosis = f"--- failed at {now.isoformat(' ')} ---\n{DEPENDENCY_FAILED}: {message}"
            cr.execute(
                "UPDATE queue_job SET state = 'failed', exc_name = %s, exc_message = %s,"
                " exc_info = COALESCE(exc_info || %s, %s),"
                " completed_at = %s, write_date = %s, cascaded_from_id = %s"
                f" WHERE {sql} AND state IN ('waiting', 'pending')",
                [
                    DEPENDENCY_FAILED,
                    message,
                    f"\n{diagnosis}",
                    diagnosis,
                    now,
                    now,
                    parent,
                    *params,
                ],
            )
        else:
            cr.execute(
                "UPDATE queue_job SET state = 'cancelled', cancelled_at = %s, write_date = %s,"
                f" cascaded_from_id = %s WHERE {sql} AND state IN ('waiting', 'pending')",
                [now, now, parent, *params],
            )
    _forget(cr)
