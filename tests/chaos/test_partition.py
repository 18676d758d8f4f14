"""A host cut off mid-job (its packets dropped, no reset): its jobs go to the other hosts
only once its database sessions are gone, and it commits nothing it ran meanwhile."""

from __future__ import annotations

import time

import pytest
from chaos_helpers import assert_each_job_done_once
from worker_helpers import FAST, enqueue, query, set_limit, wait_for

from job_worker.db.postgres import KEEPALIVE_SETTINGS

#: the longest a cut-off host's session may outlive the cut on the server: keepalive
#: probes after ``keepalives_idle`` s of silence, every ``keepalives_interval`` s,
#: ``keepalives_count`` of them; ``tcp_user_timeout`` for data left unacknowledged
SESSION_BOUND = max(
    KEEPALIVE_SETTINGS["keepalives_idle"]
    + KEEPALIVE_SETTINGS["keepalives_interval"] * KEEPALIVE_SETTINGS["keepalives_count"],
    KEEPALIVE_SETTINGS["tcp_user_timeout"] / 1000,
)
#: the documented reclaim bound with the tests' settings (stale window 3 s, heartbeats
#: and maintenance every 0.5 s): the session bound, plus a maintenance run, plus slack
#: for a loaded 2-core machine
RECLAIM_BOUND = SESSION_BOUND + 0.5 + 10

#: the advisory locks the sessions of a host hold: (second key, session's backend pid);
#: a job's run lock has the job id for second key
HELD_BY_HOST = """
SELECT l.objid::int, l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND a.client_addr = %s
"""


def _taken_by(registry, job_ids, worker_id):
    rows = query(
        registry,
        "SELECT id FROM queue_job WHERE id = ANY(%s) AND state = 'started' AND worker_id = %s",
        (job_ids, worker_id),
    )
    return {row[0] for row in rows}


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_cut_off_host_jobs_are_reclaimed_only_once_its_sessions_are_gone(lab, lab_db, tmp_path):
    registry = lab_db.registry
    cut, *others = lab.hosts
    set_limit(registry, "root", 8)
    long_jobs = enqueue(registry, "sleep_then_record", "long-{i}", 8, count=3, max_retries=0)
    victim = lab.start_worker(
        cut, lab_db.url_for(cut), ["--concurrency", "3", *FAST], tmp_path / "cut.log"
    )
    wait_for(
        lambda: query(registry, "SELECT worker_id FROM queue_worker WHERE pid = %s", (victim.pid,)),
        60,
        "the first host's worker",
    )
    [(victim_id,)] = query(
        registry, "SELECT worker_id FROM queue_worker WHERE pid = %s", (victim.pid,)
    )
    wait_for(lambda: len(_taken_by(registry, long_jobs, victim_id)) == 3, 30, "its three jobs")
    for index, host in enumerate(others):
        lab.start_worker(
            host, lab_db.url_for(host), ["--concurrency", "2", *FAST], tmp_path / f"h{index}.log"
        )
    short_jobs = enqueue(registry, "record", "short-{i}", count=60, max_retries=0)
    # the jobs begun on the host (their transactions hold the jobs' run locks) when it is cut
    wait_for(
        lambda: {r[0] for r in query(registry, HELD_BY_HOST, (cut.address,))} >= set(long_jobs),
        20,
        "the run locks of the host's jobs",
    )
    # the sessions of the jobs' executors on the server
    holders = {
        job_id: pid
        for job_id, pid in query(registry, HELD_BY_HOST, (cut.address,))
        if job_id in long_jobs
    }
    executors = set(victim.descendants())
    cut.partition()
    cut_at = time.monotonic()

    # every tenth of a second: which of its jobs were taken away, then whether the sessions
    # that ran them still live on the server: a job reclaimed while its executor's session
    # lives (read after the job) would be a job whose effects could commit twice
    reclaimed_at: dict[int, float] = {}
    while len(reclaimed_at) < len(long_jobs):
        assert time.monotonic() - cut_at < RECLAIM_BOUND, (
            f"jobs of the cut-off host not reclaimed within {RECLAIM_BOUND} s: "
            f"{sorted(set(long_jobs) - set(reclaimed_at))}"
        )
        still_taken = _taken_by(registry, long_jobs, victim_id)
        now = time.monotonic()
        for job_id in set(long_jobs) - still_taken - set(reclaimed_at):
            reclaimed_at[job_id] = now
        alive = {r[0] for r in query(registry, "SELECT pid FROM pg_stat_activity", ())}
        overtaken = {job_id for job_id in reclaimed_at if holders[job_id] in alive}
        assert not overtaken, f"jobs reclaimed while their executor's session lives: {overtaken}"
        time.sleep(0.1)  # the sampling rate of the observation
    # not before the server could tell the sessions were gone (a silent link says nothing)
    assert min(reclaimed_at.values()) - cut_at >= KEEPALIVE_SETTINGS["keepalives_idle"]
    # the cut-off worker noticed and stopped taking work
    wait_for(lambda: "db.unavailable" in victim.log(), 60, "the cut-off host's db.unavailable")

    cut.heal()
    wait_for(
        lambda: (
            query(registry, "SELECT count(*) FROM queue_job WHERE state = 'done'")[0][0]
            == len(long_jobs) + len(short_jobs)
        ),
        60,
        "every job done",
    )
    assert_each_job_done_once(registry, len(long_jobs) + len(short_jobs))
    # nothing the cut-off host ran was committed: its executors wrote no effect
    pids = {r[0] for r in query(registry, "SELECT pid FROM workerapp_effect")}
    assert not pids & executors, "the cut-off host committed a job it ran while cut off"
    # it rejoins: back on the database, alive (or stopped cleanly)
    wait_for(
        lambda: "db.recovered" in victim.log() or victim.proc.poll() == 0,
        90,
        "the cut-off host back",
    )
    assert victim.alive() or victim.proc.returncode == 0, victim.log()[-2000:]
    late = enqueue(registry, "record", "late-{i}", count=4, max_retries=0)
    wait_for(
        lambda: (
            query(registry, "SELECT count(*) FROM queue_job WHERE state = 'done'")[0][0]
            == len(long_jobs) + len(short_jobs) + len(late)
        ),
        60,
        "jobs enqueued after the link came back",
    )
