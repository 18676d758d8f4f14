"""The database process dies under load (SIGKILL of the postmaster: crash recovery on
restart), or is stopped for a while: the workers on the hosts wait, resume, and no job
is lost or committed twice."""

from __future__ import annotations

import os

import pytest
from chaos_helpers import assert_each_job_done_once, tolerant, wait_quietly
from worker_helpers import FAST, enqueue, query, set_limit, wait_for

#: seconds the database stays stopped (the soak stops it for two minutes)
STOP_SECONDS = float(os.environ.get("JOB_WORKER_CHAOS_STOP_SECONDS", "8"))
JOBS = 600


def _done(registry) -> int:
    rows = tolerant(lambda: query(registry, "SELECT count(*) FROM queue_job WHERE state = 'done'"))
    return rows[0][0] if rows else -1


def _start_load(lab, lab_db, tmp_path) -> list:
    registry = lab_db.registry
    set_limit(registry, "root", 6)
    enqueue(registry, "record", "job-{i}", count=JOBS - 20, max_retries=0)
    enqueue(registry, "sleep_then_record", "slow-{i}", 1.5, count=20, max_retries=0)
    return [
        lab.start_worker(
            host, lab_db.url_for(host), ["--concurrency", "2", *FAST], tmp_path / f"h{n}.log"
        )
        for n, host in enumerate(lab.hosts)
    ]


def _finish(lab_db, workers) -> None:
    registry = lab_db.registry
    wait_for(lambda: _done(registry) == JOBS, 90, f"{JOBS} jobs done after the outage")
    assert_each_job_done_once(registry, JOBS)
    for worker in workers:  # they waited and resumed: none exited
        assert worker.alive(), worker.log()[-2000:]
        log = worker.log()
        assert "db.unavailable" in log and "db.recovered" in log


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_database_killed_under_load_recovers_and_loses_or_doubles_nothing(lab, lab_db, tmp_path):
    registry = lab_db.registry
    workers = _start_load(lab, lab_db, tmp_path)
    wait_for(lambda: _done(registry) >= JOBS // 4, 60, "a quarter of the jobs done")
    running = query(registry, "SELECT count(*) FROM queue_job WHERE state = 'started'")[0][0]
    lab.postgres.crash()
    wait_for(lambda: all("db.unavailable" in w.log() for w in workers), 60, "every worker waiting")
    lab.postgres.start()
    assert "automatic recovery in progress" in lab.postgres.log_tail(40)
    assert running > 0  # it died under load, with jobs running
    _finish(lab_db, workers)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_database_stopped_for_a_while_workers_wait_and_resume(lab, lab_db, tmp_path):
    registry = lab_db.registry
    workers = _start_load(lab, lab_db, tmp_path)
    wait_for(lambda: _done(registry) >= JOBS // 4, 60, "a quarter of the jobs done")
    lab.postgres.stop()
    wait_for(lambda: all("db.unavailable" in w.log() for w in workers), 60, "every worker waiting")
    wait_quietly(STOP_SECONDS, still=lambda: all(w.alive() for w in workers))
    assert all(w.alive() for w in workers), "a worker exited while the database was down"
    lab.postgres.start()
    _finish(lab_db, workers)
