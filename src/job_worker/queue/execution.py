"""Running a job's method: the environment it runs in, and what happens after.

The worker and ``run_now()`` both call :func:`call` to make the call, and the
state functions of :mod:`.states` to record the outcome.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..exceptions import MissingRecordsError, MissingUserError, RetryLoopError
from ..orm.api import Environment
from . import states
from .serialization import decode

if TYPE_CHECKING:
    from ..db import Cursor

#: how many times a job runs at once (synchronous mode, ``perform_enqueued_jobs()``)
#: before it is left pending as one that keeps asking to be retried
MAX_RUNS_AT_ONCE = 100


def job_environment(cr: Cursor, job: dict[str, Any]) -> Environment:
    """The environment a job runs in: its user, its company first, its lang and tz,
    and ``job_uuid`` in the context.

    A job whose user was deleted (``user_id`` emptied) raises :class:`MissingUserError`:
    it never runs as another user, least of all as the superuser."""
    uid = job.get("user_id")
    if not uid:
        raise MissingUserError(
            f"the user who enqueued job {job['uuid']} no longer exists: the job does not run"
            " as another user and is not retried"
        )
    stored = dict(job.get("context") or {})
    allowed = list(stored.pop("allowed_company_ids", None) or [])
    company_id = job.get("company_id")
    if company_id:
        allowed = [company_id, *[c for c in allowed if c != company_id]]
    context = {k: v for k, v in stored.items() if v is not None}
    if allowed:
        context["allowed_company_ids"] = allowed
    context["job_uuid"] = job["uuid"]
    return Environment(cr, uid, context)


#: why a job may not commit or roll back (see :meth:`job_worker.db.Cursor.owned`)
OWNED = (
    "a job's writes commit together with its done state, or not at all: "
    "the job may not commit or roll back the transaction itself"
)


def checks_records(registry: Any, model_name: Any, ids: Any) -> bool:
    """Whether :func:`call` checks that these records exist before the method runs (a
    model it knows, not abstract, a list of ids): a caller may then look them up ahead
    (:func:`records_query`) and pass what it found. Otherwise :func:`call` fails, or
    runs no check, by itself."""
    model = registry.models.get(model_name)
    if model is None or model._abstract or not isinstance(ids, list) or not ids:
        return False
    return all(type(id_) is int for id_ in ids)


def records_query(registry: Any, backend: Any, model_name: str, ids: Any) -> tuple[str, Any]:
    """The query that finds which of ``ids`` (records of ``model_name``, see
    :func:`checks_records`) still exist, as :func:`call` would run it, for a caller that
    sends it ahead with statements of its own (the worker: in the round trip that
    begins a batch of jobs)."""
    sql, params = backend.in_ids("id", ids)
    return f'SELECT id FROM "{registry.models[model_name]._table}" WHERE {sql}', params


def call(env: Environment, job: dict[str, Any], existing: set[int] | None = None) -> Any:
    """Call the job's method on its records in ``env`` and return the result; the
    method may not end the transaction (:data:`OWNED`). Records that no longer exist
    raise :class:`MissingRecordsError` before the method runs: ``existing``, ids that
    :func:`records_query` found in this transaction (among them the job's that exist),
    or read here."""
    records = env[job["model_name"]].browse(job["record_ids"] or [])
    if records._ids and not records._abstract:
        ids = set(records._ids)
        found = set(records.exists()._ids) if existing is None else existing & ids
        if len(found) < len(ids):
            missing = sorted(ids - found)
            raise MissingRecordsError(records._name, missing)
    method = getattr(records, job["method_name"])
    args = decode(job["args"] or [], env)
    kwargs = decode(job["kwargs"] or {}, env)
    with env.cr.owned(OWNED):
        return method(*args, **kwargs)


def run_in_transaction(env: Environment, job_id: int, *, raise_final: bool = True) -> str:
    """``run_now()``: run a pending job inside the caller's transaction; returns its
    new state.

    The method runs in a savepoint: its writes and the ``done`` state stand or
    fall together. An exception that ends the job ``failed`` is raised (with
    ``raise_final``); one that leads to a retry is recorded and not raised.
    """
    state, failure = _run(env, job_id)
    if failure is not None and state == "failed" and raise_final:
        raise failure
    return state


def _run(env: Environment, job_id: int) -> tuple[str, BaseException | None]:
    """Run a pending job in the caller's transaction: its new state, and the exception
    of a failed attempt."""
    Job = env["queue.job"]
    job = Job.browse(job_id)
    if job.state != "pending":
        raise ValueError(
            f"queue.job {job_id} ({job.name}) is {job.state}: only a pending job can run now"
        )
    values = job._call_values()
    states.mark_started(env.cr, job_id)
    started = time.monotonic()
    try:
        job_env = job_environment(env.cr, values)
        with env.cr.savepoint():
            result = call(job_env, values)
            # writes made by the job are flushed in the same savepoint
    except Exception as exc:
        text = traceback.format_exc()
        new_state = states.record_failure(env.cr, job_id, exc, traceback=text)
        return new_state or "unknown", exc
    states.mark_done(env.cr, job_id, result, duration=time.monotonic() - started)
    return "done", None


def run_until_settled(
    env: Environment, next_job: Callable[[], Any], *, raise_failure: bool = True
) -> None:
    """Run jobs at once, one after the other, as a worker would but without waiting:
    ``next_job()`` gives the next pending job to run (or an empty recordset when none
    is left). A retry is recorded and the job runs again at once; a job that fails
    releases its ``on_error`` dependents, which run too. Once nothing is left, the
    first exception that failed a job is raised (with ``raise_failure``).

    A job that keeps asking to be retried without spending its retries stops the
    loop after :data:`MAX_RUNS_AT_ONCE` runs with :class:`RetryLoopError`; it is
    left ``pending``, its retry recorded.
    """
    runs: Counter[int] = Counter()
    first_failure: BaseException | None = None
    while job := next_job():
        if runs[job.id] >= MAX_RUNS_AT_ONCE:
            raise RetryLoopError(
                f"queue.job {job.id} ({job.name}) ran {runs[job.id]} times at once and still"
                f" asks to be retried (last error: {job.exc_name}: {job.exc_message});"
                " it is left pending"
            )
        runs[job.id] += 1
        state, failure = _run(env, job.id)
        if state == "failed" and first_failure is None:
            first_failure = failure
    if first_failure is not None and raise_failure:
        raise first_failure
