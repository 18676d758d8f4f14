"""The random-SIGKILL chaos run on SQLite: several worker processes on one file, one of
them killed and restarted every few seconds; every job done, its effect committed once."""

from __future__ import annotations

import random
import signal
import time

import pytest
from chaos_helpers import assert_each_job_done_once
from worker_helpers import FAST, FAST_STALE_SECONDS, query, set_config, set_limit, wait_for

from job_worker import SUPERUSER_ID, Registry, api

JOBS = 1200


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_sqlite_chaos_kills_lose_and_double_nothing(sqlite_url, start_worker):
    registry = Registry(sqlite_url, ["workerapp"])
    try:
        set_config(registry, "stale_seconds", FAST_STALE_SECONDS)
        set_limit(registry, "root", 6)
        with registry.cursor() as cr:
            task = api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"]
            for i in range(JOBS):
                if i % 40 == 0:  # a few longer jobs: kills land mid-job, not only between jobs
                    task.with_delay(max_retries=0).sleep_then_record(f"slow-{i}", 0.5)
                else:
                    task.with_delay(max_retries=0).record(f"job-{i}")
        steady = [start_worker(sqlite_url, "--concurrency", "2", *FAST) for _ in range(2)]
        victim = start_worker(sqlite_url, "--concurrency", "2", *FAST)
        rng = random.Random(7)
        kills = 0
        began = time.monotonic()

        def done() -> int:
            return query(registry, "SELECT count(*) FROM queue_job WHERE state = 'done'")[0][0]

        while done() < JOBS:
            assert time.monotonic() - began < 120, f"chaos run did not finish: {done()} done"
            stop_at = time.monotonic() + rng.uniform(1.0, 2.0)
            # a few seconds of work, measured on the database, then the kill
            wait_for(
                lambda stop_at=stop_at: time.monotonic() >= stop_at or done() == JOBS,
                10,
                "a few seconds of work",
            )
            if done() == JOBS:
                break
            victim.signal(signal.SIGKILL)
            victim.wait(10)
            kills += 1
            victim = start_worker(sqlite_url, "--concurrency", "2", *FAST)
        assert kills >= 3, "the run ended before the chaos did anything"
        died = "SELECT count(*) FROM queue_job WHERE exc_info LIKE '%%WorkerDiedJobError%%'"
        assert query(registry, died)[0][0] > 0, "no kill landed on a running job"
        assert_each_job_done_once(registry, JOBS)
        assert all(w.proc.poll() is None for w in steady)
        [(check,)] = query(registry, "PRAGMA integrity_check")
        assert check == "ok"
    finally:
        registry.close()
