"""A job's ChannelBackoff on the worker's path (executor, claim, recorder), and real
``job-worker worker`` processes: no job of a paused channel starts on any worker until
the pause ends, other channels go on, and the channel resumes on its own."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta

import pytest
from worker_helpers import (
    FAST,
    enqueue,
    query,
    sample_until,
    set_limit,
    wait_for,
    worker_ready,
)

from job_worker import SUPERUSER_ID, api
from job_worker.db import jobstore
from job_worker.exceptions import ChannelBackoff
from job_worker.worker.executor import Executor
from job_worker.worker.protocol import FailureReport, Finished, Outcome
from job_worker.worker.settings import WorkerSettings


def _dt(value) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def db_now(registry) -> datetime:
    """The database's clock, read after everything committed so far is visible."""
    with registry.cursor(readonly=True) as cr:
        return jobstore.job_store(registry.backend).now(cr)


class Pipe:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, message: object) -> None:
        self.sent.append(message)

    def poll(self) -> bool:
        return False


@pytest.fixture
def worker(registry, db_url):
    """Claim (as worker w1) and run jobs in this process, as a worker's supervisor and
    one executor do."""
    store = jobstore.for_backend(registry.backend)
    supervisor = store.session(role="supervisor")
    executor = Executor(WorkerSettings(databases=(db_url,), modules=("workerapp",)), "w1", Pipe())

    class Worker:
        def claim(self) -> jobstore.Claim:
            cr = supervisor.cursor(registry)
            try:
                return store.claim(cr, worker_id="w1", wanted=10, default_limit=10)
            finally:
                cr.close()

        def run(self, job: jobstore.ClaimedJob) -> tuple:
            executor.conn.sent.clear()
            executor.run(0, [job])
            [finished] = [m for m in executor.conn.sent if isinstance(m, Finished)]
            [outcome] = finished.outcomes
            return outcome.outcome, outcome.state

    yield Worker()
    executor.close()
    supervisor.close()


def test_a_backoff_on_the_worker_pauses_the_channel_for_every_claim(registry, worker):
    [asker] = enqueue(registry, "back_off_once", "api-1", 30, "HTTP 429", channel="api")
    [job] = worker.claim().jobs
    assert worker.run(job) == (Outcome.FAILED, "pending")
    assert query(
        registry, "SELECT state, attempts, backoffs FROM queue_job WHERE id = %s", (asker,)
    ) == [("pending", 0, 1)]
    enqueue(registry, "record", "api-2", channel="api")
    [other] = enqueue(registry, "record", "other", channel="other")
    claim = worker.claim()
    assert [j.id for j in claim.jobs] == [other]  # api starts nothing, other goes on
    assert claim.retry_in is not None and 28 < claim.retry_in <= 30  # wake when it ends
    with registry.cursor() as cr:
        assert api.Environment(cr, SUPERUSER_ID, {})["queue.channel"].lift_backoff("api")
    claimed = worker.claim().jobs
    assert sorted(j.channel for j in claimed) == ["api", "api"]
    assert {worker.run(j) for j in claimed} == {(Outcome.DONE, None)}


def test_a_backoff_reported_by_the_supervisor_is_still_a_backoff():
    report = FailureReport.of(ChannelBackoff(3, "HTTP 429"), "Traceback ...")
    again = pickle.loads(pickle.dumps(report)).exception()
    assert isinstance(again, ChannelBackoff)
    assert (again.seconds, again.reason, type(again).__name__) == (
        3.0,
        "HTTP 429",
        "ChannelBackoff",
    )


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_no_job_of_a_backed_off_channel_starts_on_any_worker_until_the_pause_ends(
    registry, start_worker
):
    set_limit(registry, "api", 4)
    set_limit(registry, "other", 4)
    [asker] = enqueue(registry, "back_off_once", "asker", 3, "HTTP 429", channel="api", priority=0)
    enqueue(registry, "sleep_then_record", "api-{i}", 0.05, count=40, channel="api")
    enqueue(registry, "sleep_then_record", "other-{i}", 0.1, count=200, channel="other")
    workers = [start_worker("--concurrency", "4", *FAST) for _ in range(4)]
    wait_for(lambda: all(worker_ready(registry, w) for w in workers), 30, "workers started")

    def paused() -> tuple | None:
        rows = query(registry, "SELECT backoff_until FROM queue_channel WHERE name = 'api'")
        return (_dt(rows[0][0]), db_now(registry)) if rows and rows[0][0] else None

    until, seen = wait_for(paused, 20, "the api channel paused")
    assert timedelta(0) < until - seen <= timedelta(seconds=3)
    # sampled while the workers run: api jobs started since the pause was seen
    samples = sample_until(
        lambda: query(
            registry,
            "SELECT id, started_at FROM queue_job WHERE channel = 'api'"
            " AND state = 'started' AND started_at >= %s AND started_at < %s",
            (seen, until),
        ),
        lambda: (
            query(
                registry, "SELECT count(*) FROM queue_job WHERE channel = 'api' AND state <> 'done'"
            )[0][0]
            == 0
        ),
        30,
        "every api job done",
        interval=0.1,
    )
    starts = {
        channel: [
            _dt(s)
            for (s,) in query(
                registry,
                "SELECT started_at FROM queue_job WHERE channel = %s AND started_at IS NOT NULL",
                (channel,),
            )
        ]
        for channel in ("api", "other")
    }
    # not one api job started while the pause was in force, on any worker
    assert len(samples) > 10 and not any(samples)
    assert not [s for s in starts["api"] if seen <= s < until]
    # other channels kept starting jobs during the pause
    assert len([s for s in starts["other"] if seen <= s < until]) >= 5
    # after it the api jobs ran: the one that asked, without counting an attempt
    assert [s for s in starts["api"] if s >= until]
    assert query(
        registry, "SELECT state, attempts, backoffs FROM queue_job WHERE id = %s", (asker,)
    ) == [("done", 0, 1)]
