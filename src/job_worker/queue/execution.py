"""Running a job's method: the environment it runs in, and what happens after.

The worker and ``run_now()`` both call :func:`call` to make the call, and the
state functions of :mod:`.states` to record the outcome.
"""

from __future__ import annotations

import time
import traceback
from typing import TYPE_CHECKING, Any

from ..orm.api import Environment
from . import states
from .serialization import decode

if TYPE_CHECKING:
    from ..db import Cursor


def job_environment(cr: Cursor, job: dict[str, Any]) -> Environment:
    """The environment a job runs in: its user, its company first, its lang and tz,
    and ``job_uuid`` in the context."""
    stored = dict(job.get("context") or {})
    allowed = list(stored.pop("allowed_company_ids", None) or [])
    company_id = job.get("company_id")
    if company_id:
        allowed = [company_id, *[c for c in allowed if c != company_id]]
    context = {k: v for k, v in stored.items() if v is not None}
    if allowed:
        context["allowed_company_ids"] = allowed
    context["job_uuid"] = job["uuid"]
    return Environment(cr, job.get("user_id") or 1, context)


#: why a job may not commit or roll back (see :meth:`job_worker.db.Cursor.owned`)
OWNED = (
    "a job's writes commit together with its done state, or not at all: "
    "the job may not commit or roll back the transaction itself"
)


def call(env: Environment, job: dict[str, Any]) -> Any:
    """Call the job's method on its records in ``env`` and return the result; the
    method may not end the transaction (:data:`OWNED`)."""
    records = env[job["model_name"]].browse(job["record_ids"] or [])
    method = getattr(records, job["method_name"])
    args = decode(job["args"] or [], env)
    kwargs = decode(job["kwargs"] or {}, env)
    with env.cr.owned(OWNED):
        return method(*args, **kwargs)


def run_in_transaction(
    env: Environment, job_id: int, *, raise_final: bool = True, sync: bool = False
) -> str:
    """``run_now()``: run a pending job inside the caller's transaction.

    The method runs in a savepoint: its writes and the ``done`` state stand or
    fall together. An exception that ends the job ``failed`` is raised (with
    ``raise_final``); one that leads to a retry is recorded and not raised.
    With ``sync`` (synchronous mode) nobody would retry later: every exception
    fails the job and is raised.
    """
    Job = env["queue.job"]
    job = Job.browse(job_id)
    if job.state != "pending":
        raise ValueError(
            f"queue.job {job_id} ({job.name}) is {job.state}: only a pending job can run now"
        )
    values = job._call_values()
    states.mark_started(env, job_id)
    job_env = job_environment(env.cr, values)
    started = time.monotonic()
    try:
        with env.cr.savepoint():
            result = call(job_env, values)
            # writes made by the job are flushed in the same savepoint
    except Exception as exc:
        text = traceback.format_exc()
        new_state = states.record_failure(env, job_id, exc, traceback=text, final=sync)
        if new_state == "failed" and raise_final:
            raise
        return new_state or "unknown"
    states.mark_done(env, job_id, result, duration=time.monotonic() - started)
    return "done"
