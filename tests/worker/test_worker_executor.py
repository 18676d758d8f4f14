"""The executor's handling of one job, in-process: one transaction per job."""

from __future__ import annotations

import pytest
from worker_helpers import enqueue, query, set_limit

from job_worker.db import jobstore
from job_worker.exceptions import FailedJobError, RetryableJobError
from job_worker.queue import states
from job_worker.worker.executor import Executor, FailureReport
from job_worker.worker.settings import WorkerSettings

pytestmark = pytest.mark.timeout(60)


class Pipe:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send(self, message: tuple) -> None:
        self.sent.append(message)


@pytest.fixture
def run(registry, db_url):
    store = jobstore.for_backend(registry.backend)
    supervisor = store.session(role="supervisor")
    executor = Executor(WorkerSettings(databases=(db_url,), modules=("workerapp",)), "w1", Pipe())

    def run(job_id: int) -> tuple:
        cr = supervisor.cursor(registry)
        try:
            [job] = [
                j
                for j in store.claim(cr, worker_id="w1", wanted=10, default_limit=10).jobs
                if j.id == job_id
            ]
        finally:
            cr.close()
        return executor.run(0, job)

    yield run
    executor.close()
    supervisor.close()


def effects(registry) -> list[str]:
    return [row[0] for row in query(registry, "SELECT name FROM workerapp_effect ORDER BY id")]


def test_done_job_commits_its_writes_and_its_state_together(registry, run):
    [job_id] = enqueue(registry, "record", "hello")
    assert run(job_id) == ("done",)
    assert effects(registry) == ["hello"]
    state, result, worker = query(
        registry, "SELECT state, result, worker_id FROM queue_job WHERE id = %s", (job_id,)
    )[0]
    assert state == "done" and "hello" in str(result) and worker == "w1"


def test_failed_job_rolls_back_its_writes_and_records_the_attempt(registry, run):
    [job_id] = enqueue(registry, "fail", "boom")
    assert run(job_id) == ("failed", "pending")
    state, attempts, exc_name, exc_info = query(
        registry, "SELECT state, attempts, exc_name, exc_info FROM queue_job"
    )[0]
    assert (state, attempts, exc_name) == ("pending", 1, "ValueError")
    assert "boom" in exc_info


def test_job_cancelled_while_running_is_not_marked_done(registry, run, monkeypatch):
    # (a no-op job: on SQLite a job that wrote holds the write lock, the cancel would wait)
    [job_id] = enqueue(registry, "noop")
    real = states.mark_done

    def cancel_first(env, job_id, *args, **kwargs):
        with registry.cursor() as cr:
            cr.execute("UPDATE queue_job SET state = 'cancelled' WHERE id = %s", (job_id,))
        return real(env, job_id, *args, **kwargs)

    monkeypatch.setattr(states, "mark_done", cancel_first)
    assert run(job_id) == ("lost",)
    assert query(registry, "SELECT state FROM queue_job")[0][0] == "cancelled"


def test_job_cancelled_before_it_starts_does_not_run(registry, run, monkeypatch):
    [job_id] = enqueue(registry, "record", "never")
    real = jobstore.JobStore.claim

    def claim_then_cancel(self, cr, **kwargs):
        claimed = real(self, cr, **kwargs)
        cr.execute("UPDATE queue_job SET state = 'cancelled' WHERE id = %s", (job_id,))
        cr.commit()
        return claimed

    monkeypatch.setattr(jobstore.JobStore, "claim", claim_then_cancel)
    assert run(job_id) == ("lost",)
    assert effects(registry) == []


def test_job_runs_as_its_user_and_company(registry, run):
    set_limit(registry, "root", 5)
    [job_id] = enqueue(registry, "whoami", "ctx")
    assert run(job_id) == ("done",)
    assert effects(registry) == ["ctx:1:1:None"]


def test_failure_report_rebuilds_an_equivalent_exception():
    try:
        raise RetryableJobError("later", seconds=3, ignore_retry=True)
    except RetryableJobError as exc:
        rebuilt = FailureReport.of(exc, "tb").exception()
    assert isinstance(rebuilt, RetryableJobError)
    assert (rebuilt.seconds, rebuilt.ignore_retry, str(rebuilt)) == (3, True, "later")
    assert states.exception_name(rebuilt) == "job_worker.exceptions.RetryableJobError"
    failed = FailureReport.of(FailedJobError("no"), "tb").exception()
    assert isinstance(failed, FailedJobError)
    plain = FailureReport.of(KeyError("k"), "tb").exception()
    assert states.exception_name(plain) == "KeyError" and not isinstance(plain, RetryableJobError)
