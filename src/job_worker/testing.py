"""Test helpers: trap jobs instead of enqueueing them for a worker.

from job_worker.testing import trap_jobs

def test_export_is_enqueued(env):
    partner = env["res.partner"].create({"name": "Acme"})
    with trap_jobs(env) as trap:
        partner.with_delay(priority=5).send_reminder()
        trap.assert_jobs_count(1, model="res.partner", method="send_reminder")
        trap.assert_enqueued_job(partner.send_reminder, priority=5)
        trap.perform_enqueued_jobs()
    assert partner.reminders_sent == 1
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .orm.api import Environment


class JobTrap:
    """The jobs enqueued on one cursor since the trap was set."""

    def __init__(self, env: Environment):
        self.env = env
        env.cr.execute("SELECT COALESCE(MAX(id), 0) FROM queue_job", ())
        row = env.cr.fetchone()
        self._since = row[0] if row else 0
        # ids this process took ahead and has not used yet may be lower (db.ids)
        free = env.cr.backend.id_blocks.lowest_free("queue_job")
        if free is not None:
            self._since = min(self._since, free - 1)

    @property
    def enqueued_jobs(self) -> Any:
        """The queue.job records created since the trap was set, oldest first."""
        return self.env["queue.job"].search([("id", ">", self._since)], order="id")

    def _matching(self, model: str | None = None, method: str | None = None) -> Any:
        jobs = self.enqueued_jobs
        if model is not None:
            jobs = jobs.filtered(lambda j: j.model_name == model)
        if method is not None:
            jobs = jobs.filtered(lambda j: j.method_name == method)
        return jobs

    def assert_jobs_count(
        self, expected: int, model: str | None = None, method: str | None = None
    ) -> None:
        jobs = self._matching(model, method)
        if len(jobs) != expected:
            found = ", ".join(f"{j.model_name}.{j.method_name}" for j in jobs) or "none"
            raise AssertionError(f"expected {expected} enqueued job(s), found {len(jobs)}: {found}")

    def assert_enqueued_job(
        self,
        method: Any,
        args: tuple | list | None = None,
        kwargs: dict | None = None,
        **properties: Any,
    ) -> Any:
        """Assert a job was enqueued for the bound method ``records.method`` (with
        these args/kwargs, when given, and job fields such as ``priority=5``)."""
        records = getattr(method, "__self__", None)
        name = getattr(method, "__name__", None)
        if records is None or name is None:
            raise TypeError(f"pass a bound method such as partner.send_reminder, got {method!r}")
        from .queue.serialization import encode

        candidates = []
        for job in self._matching(records._name, name):
            if sorted(job.record_ids) != sorted(records._ids):
                continue
            if args is not None and job.args != encode(list(args), "args"):
                continue
            if kwargs is not None and job.kwargs != encode(dict(kwargs), "kwargs"):
                continue
            if all(_job_value(job, key) == value for key, value in properties.items()):
                candidates.append(job)
        if not candidates:
            found = [
                (j.model_name, j.method_name, j.record_ids, j.args, j.kwargs)
                for j in self.enqueued_jobs
            ]
            raise AssertionError(
                f"no job {records._name}{tuple(records._ids)}.{name} with args={args!r} kwargs={kwargs!r} "
                f"{properties!r}; enqueued: {found}"
            )
        return candidates[0]

    def perform_enqueued_jobs(self) -> None:
        """Run the trapped jobs now, in dependency order, as the worker would
        (a retry is recorded and the job runs again at once, whatever its eta),
        until none is pending. A job that keeps asking to be retried without
        spending its retries raises :class:`~job_worker.exceptions.RetryLoopError`
        after :data:`~job_worker.queue.execution.MAX_RUNS_AT_ONCE` runs."""
        from .queue.execution import run_until_settled

        Job = self.env["queue.job"]

        def next_job() -> Any:
            return Job.search(
                [("id", ">", self._since), ("state", "=", "pending")],
                order="priority, scheduled_at, id",
                limit=1,
            )

        run_until_settled(self.env, next_job, raise_failure=False)


def _job_value(job: Any, key: str) -> Any:
    if key == "eta":
        key = "scheduled_at"
    value = job[key]
    return value.id if hasattr(value, "_name") and key.endswith("_id") else value


@contextmanager
def trap_jobs(env: Environment) -> Iterator[JobTrap]:
    """Collect the jobs enqueued in the block (they are created as usual, in the
    test's transaction; no worker runs them unless you call ``perform_enqueued_jobs``)."""
    yield JobTrap(env)
