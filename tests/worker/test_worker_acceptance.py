"""Real ``job-worker worker`` processes on both databases, checked in the database."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from worker_helpers import (
    FAST,
    begun,
    enqueue,
    query,
    sample_until,
    set_limit,
    states,
    wait_for,
    worker_ready,
)

from job_worker import SUPERUSER_ID, api
from job_worker.orm.fields import Datetime
from job_worker.queue.explain import explain


def _dt(value) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def max_overlap(intervals) -> int:
    """The most intervals [start, end] that hold one same instant."""
    events = sorted(
        [(_dt(s), 1) for s, _e in intervals] + [(_dt(e), -1) for _s, e in intervals],
        key=lambda event: (event[0], event[1]),
    )
    running = peak = 0
    for _at, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_channel_limit_holds_across_four_workers(registry, start_worker):
    set_limit(registry, "root", 3)
    enqueue(registry, "sleep_then_record", "job-{i}", 0.05, count=200)
    workers = [start_worker("--concurrency", "4", *FAST) for _ in range(4)]
    wait_for(lambda: all(worker_ready(registry, w) for w in workers), 60, "workers started")
    running = sample_until(
        lambda: query(registry, "SELECT count(*) FROM queue_job WHERE state = 'started'")[0][0],
        lambda: states(registry).get("done", 0) == 200,
        90,
        "200 jobs done",
    )
    assert max(running) <= 3
    peak = max(running)
    rows = query(registry, "SELECT started_at, completed_at FROM queue_job")
    assert max_overlap(rows) <= 3
    effects = query(registry, "SELECT started, ended FROM workerapp_effect")
    assert len(effects) == 200
    assert (
        max_overlap([(datetime.fromtimestamp(s), datetime.fromtimestamp(e)) for s, e in effects])
        <= 3
    )
    assert peak >= 2  # the limit was reached, not just respected by an idle system


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_rate_limit_allows_no_second_with_more_starts(registry, start_worker):
    set_limit(registry, "rated", 10, rate_limit=10)
    enqueue(registry, "noop", count=30, channel="rated")
    for _ in range(2):
        start_worker("--concurrency", "3", *FAST)
    wait_for(lambda: states(registry).get("done", 0) == 30, 60, "30 rate-limited jobs done")
    starts = sorted(_dt(r[0]) for r in query(registry, "SELECT started_at FROM queue_job"))
    # no one-second window holds more than 10 starts: any 11 consecutive starts span >= 1 s
    for first, eleventh in zip(starts, starts[10:], strict=False):
        assert eleventh - first >= timedelta(seconds=1)


@pytest.mark.timeout(60)
def test_paused_channel_runs_nothing_while_others_run(registry, start_worker):
    set_limit(registry, "paused", 0)
    set_limit(registry, "root", 2)
    paused = enqueue(registry, "noop", count=3, channel="paused")
    enqueue(registry, "noop", count=5)
    start_worker("--concurrency", "2", *FAST)
    wait_for(lambda: states(registry).get("done", 0) == 5, 30, "the other channel drained")
    sql = "SELECT state FROM queue_job WHERE id IN (%s, %s, %s)"
    assert {r[0] for r in query(registry, sql, paused)} == {"pending"}


@pytest.mark.timeout(60)
def test_one_slot_runs_by_priority_then_fifo_and_waits_for_due_time(registry, start_worker):
    worker = start_worker("--concurrency", "1", *FAST)
    wait_for(lambda: worker_ready(registry, worker), 30, "the worker")
    with registry.cursor() as cr:  # one commit: the worker sees all six at once
        task = api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"]
        for name, priority in [("p5-a", 5), ("p1-a", 1), ("p5-b", 5), ("p1-b", 1), ("p3", 3)]:
            task.with_delay(priority=priority).record(name)
        due = Datetime.now() + timedelta(seconds=2)
        task.with_delay(priority=0, eta=due).record("later")
    wait_for(lambda: states(registry).get("done", 0) == 6, 30, "six jobs done")
    names = [r[0] for r in query(registry, "SELECT name FROM workerapp_effect ORDER BY id")]
    assert names[:5] == ["p1-a", "p1-b", "p3", "p5-a", "p5-b"]
    [(started,)] = query(registry, "SELECT started FROM workerapp_effect WHERE name = 'later'")
    assert datetime.fromtimestamp(started, UTC).replace(tzinfo=None) >= due


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_timed_out_jobs_are_killed_retried_once_then_failed(registry, start_worker, tmp_path):
    set_limit(registry, "root", 10)
    runs = tmp_path / "runs.log"
    ids = enqueue(registry, "log_run_and_sleep", str(runs), 30, count=10, timeout=1, max_retries=1)
    began = time.monotonic()
    start_worker("--concurrency", "10", "--heartbeat-interval", "0.5")
    wait_for(lambda: states(registry).get("failed", 0) == 10, 45, "ten timed-out jobs failed")
    assert time.monotonic() - began < 40
    rows = query(registry, "SELECT attempts, exc_name, exc_info FROM queue_job")
    assert {(r[0], r[1]) for r in rows} == {(2, "job_worker.exceptions.TimeoutJobError")}
    assert all(r[2].count("TimeoutJobError") == 2 for r in rows)
    assert query(registry, "SELECT count(*) FROM workerapp_effect")[0][0] == 0  # rolled back
    by_job: dict[str, list[float]] = {}
    for line in runs.read_text().splitlines():
        job_uuid, _pid, at = line.split()
        by_job.setdefault(job_uuid, []).append(float(at))
    assert len(by_job) == len(ids)
    for starts in by_job.values():  # two runs, the second after the first was killed + backoff
        assert len(starts) == 2 and starts[1] - starts[0] > 5


@pytest.mark.timeout(60)
def test_killed_executor_job_is_requeued_and_done_once(registry, start_worker, tmp_path):
    marker = tmp_path / "marker"
    enqueue(registry, "stall_first_run", "once", str(marker))
    start_worker("--concurrency", "2", *FAST)
    pid = int(wait_for(lambda: marker.exists() and marker.read_text(), 30, "the first run"))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: states(registry).get("done") == 1, 30, "the job done on its second run")
    attempts, exc_name = query(registry, "SELECT attempts, exc_name FROM queue_job")[0]
    assert (attempts, exc_name) == (1, "job_worker.exceptions.WorkerDiedJobError")
    assert query(registry, "SELECT count(*) FROM workerapp_effect")[0][0] == 1


@pytest.mark.timeout(90)
def test_executor_dying_mid_batch_counts_the_attempt_of_the_job_it_was_running(
    registry, start_worker, tmp_path
):
    set_limit(registry, "root", 20)
    worker = start_worker("--concurrency", "1", "--batch", "8", *FAST)
    # short jobs first, so that the supervisor gives jobs out in batches
    enqueue(registry, "noop", count=60)
    wait_for(lambda: states(registry).get("done") == 60, 30, "the warm-up jobs")
    runs = tmp_path / "runs"
    with registry.cursor() as cr:  # one commit: the five jobs are claimed together
        task = api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"]
        before = [task.with_delay().log_run_and_sleep(str(runs), 0).id for _ in range(2)]
        crash = task.with_delay(max_retries=1).crash().id
        after = [task.with_delay().noop().id for _ in range(2)]
    wait_for(
        lambda: states(registry) == {"done": 64, "failed": 1}, 60, "the batch, after the crash"
    )
    rows = dict(
        (row[0], row[1:])
        for row in query(registry, "SELECT id, attempts, exc_name, state FROM queue_job")
    )
    assert rows[crash] == (2, "job_worker.exceptions.WorkerDiedJobError", "failed")
    for job_id in before + after:  # given back uncounted, then done once
        assert rows[job_id] == (0, None, "done")
    # the jobs before the crash ran once or more, and their effects were committed once. (On
    # a quiet machine they run twice: their first run dies uncommitted with the batch. On a
    # loaded one the batch may commit them before the crash, once it is old enough, or the
    # crash's retry may be due again when they are given back, and die with them once more.)
    uuids = {line.split()[0] for line in runs.read_text().splitlines()}
    assert uuids == {
        row[0] for row in query(registry, "SELECT uuid FROM queue_job WHERE id IN (%s, %s)", before)
    }
    assert query(registry, "SELECT count(*) FROM workerapp_effect")[0][0] == 2
    assert "job.died" in worker.log() or "died" in worker.log()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_jobs_of_a_killed_worker_are_completed_by_another(registry, start_worker):
    set_limit(registry, "root", 20)
    enqueue(registry, "sleep_then_record", "job-{i}", 4, count=20)
    first = start_worker("--concurrency", "20", *FAST)
    wait_for(lambda: states(registry).get("started") == 20, 60, "20 jobs running")
    executors = first.executor_pids()
    first.signal(signal.SIGKILL)
    first.wait(10)
    # its executors die with it: none of them can overlap the jobs' next runs
    wait_for(
        lambda: not any(os.path.exists(f"/proc/{p}") for p in executors),
        10,
        "the killed worker's executors gone",
    )
    killed_at = time.monotonic()
    start_worker("--concurrency", "20", *FAST)
    wait_for(lambda: states(registry).get("done") == 20, 60, "20 jobs done by the second worker")
    assert time.monotonic() - killed_at < 60
    names = Counter(r[0] for r in query(registry, "SELECT name FROM workerapp_effect"))
    assert len(names) == 20 and set(names.values()) == {1}
    rows = query(registry, "SELECT attempts, exc_name FROM queue_job")
    assert set(rows) == {(1, "job_worker.exceptions.WorkerDiedJobError")}


@pytest.mark.timeout(60)
def test_sigterm_lets_running_jobs_finish_and_exits_zero(registry, start_worker):
    set_limit(registry, "root", 4)
    enqueue(registry, "sleep_then_record", "job-{i}", 1.5, count=4)
    worker = start_worker("--concurrency", "4", "--grace", "20", "--log-level", "debug", *FAST)
    wait_for(lambda: begun(worker) == 4, 30, "four jobs running")
    worker.signal(signal.SIGTERM)
    assert worker.wait(25) == 0
    assert states(registry) == {"done": 4}
    assert query(registry, "SELECT count(*) FROM workerapp_effect")[0][0] == 4


@pytest.mark.timeout(60)
def test_sigterm_past_grace_returns_jobs_to_pending_without_an_attempt(registry, start_worker):
    set_limit(registry, "root", 3)
    enqueue(registry, "sleep_then_record", "job-{i}", 60, count=3)
    worker = start_worker("--concurrency", "3", "--grace", "1", *FAST)
    wait_for(lambda: states(registry).get("started") == 3, 30, "three jobs running")
    began = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert time.monotonic() - began < 1 + 5
    rows = query(registry, "SELECT state, attempts, worker_id FROM queue_job")
    assert rows == [("pending", 0, None)] * 3
    assert query(registry, "SELECT count(*) FROM workerapp_effect")[0][0] == 0
    stopped = query(registry, "SELECT stopped_at FROM queue_worker WHERE pid = %s", (worker.pid,))
    assert stopped[0][0] is not None
    job_id = query(registry, "SELECT MIN(id) FROM queue_job")[0][0]
    with registry.cursor(readonly=True) as cr:  # explain knows the worker stopped, not died
        reasons = explain(api.Environment(cr, SUPERUSER_ID, {}), job_id)
    [no_worker] = [r.message for r in reasons if r.code == "no_worker"]
    assert "no worker running: the last one" in no_worker and "stopped cleanly" in no_worker


@pytest.mark.timeout(90)
def test_sigterm_amid_batches_of_short_jobs_leaves_each_job_done_once_or_pending(
    registry, start_worker
):
    # short jobs under a backlog run in batches, an executor holding its next batch too:
    # a stop gives back every job not begun, and commits or undoes each begun one whole
    set_limit(registry, "root", 100)
    enqueue(registry, "record", "job-{i}", count=3000)
    worker = start_worker("--concurrency", "2", "--grace", "20", *FAST)
    wait_for(lambda: states(registry).get("done", 0) >= 300, 60, "batches running")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    counts = states(registry)
    assert set(counts) <= {"done", "pending"} and sum(counts.values()) == 3000
    assert counts.get("pending", 0) > 0  # it stopped amid the backlog
    assert query(registry, "SELECT max(attempts) FROM queue_job")[0][0] == 0
    names = [r[0] for r in query(registry, "SELECT name FROM workerapp_effect")]
    assert len(names) == len(set(names)) == counts["done"]


@pytest.mark.timeout(60)
def test_second_signal_stops_at_once(registry, start_worker):
    enqueue(registry, "sleep_then_record", "job", 60)
    worker = start_worker("--concurrency", "1", "--grace", "60", *FAST)
    wait_for(lambda: states(registry).get("started") == 1, 30, "the job running")
    worker.signal(signal.SIGINT)
    wait_for(lambda: "worker.stopping" in worker.log(), 10, "the first signal handled")
    worker.signal(signal.SIGINT)
    assert worker.wait(10) == 0
    assert query(registry, "SELECT state, attempts FROM queue_job") == [("pending", 0)]


@pytest.mark.timeout(60)
def test_cancelled_running_job_is_stopped(registry, start_worker):
    [job_id] = enqueue(registry, "sleep_then_record", "cancelled", 60)
    start_worker("--concurrency", "1", *FAST)
    wait_for(lambda: states(registry).get("started") == 1, 30, "the job running")
    with registry.cursor() as cr:
        from job_worker import SUPERUSER_ID, api

        api.Environment(cr, SUPERUSER_ID, {})["queue.job"].browse(job_id).cancel()
    [next_id] = enqueue(registry, "record", "after")  # runs once the slot is free again
    wait_for(lambda: states(registry).get("done") == 1, 20, "the slot free for the next job")
    assert query(registry, "SELECT name FROM workerapp_effect") == [("after",)]
    assert query(registry, "SELECT state FROM queue_job WHERE id = %s", (job_id,)) == [
        ("cancelled",)
    ]
    assert next_id != job_id


@pytest.mark.timeout(60)
def test_failing_job_is_retried_then_failed_with_its_error(registry, start_worker):
    enqueue(registry, "fail", "always", max_retries=2)
    start_worker("--concurrency", "1", *FAST)
    wait_for(lambda: states(registry).get("failed") == 1, 30, "the job failed")
    attempts, exc_name, exc_info = query(
        registry, "SELECT attempts, exc_name, exc_info FROM queue_job"
    )[0]
    assert (attempts, exc_name) == (3, "ValueError")
    assert exc_info.count("always") >= 3


@pytest.mark.timeout(60)
def test_one_worker_serves_several_databases(
    registry, make_registry, start_worker, tmp_path, db_url
):
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    other = make_registry(["workerapp"], url=other_url)
    enqueue(registry, "record", "first")
    enqueue(other, "record", "second")
    start_worker("--database", other_url, "--concurrency", "2", *FAST)
    wait_for(
        lambda: states(registry).get("done") == 1 and states(other).get("done") == 1,
        30,
        "a job done in each database",
    )
    assert query(other, "SELECT name FROM workerapp_effect") == [("second",)]


@pytest.mark.timeout(60)
def test_json_logs_carry_event_keys(registry, start_worker):
    import json

    worker = start_worker("--concurrency", "1", "--log-format", "json", *FAST)
    wait_for(lambda: worker_ready(registry, worker), 30, "worker started")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    events = [json.loads(line)["event"] for line in worker.log().splitlines() if line]
    assert {"worker.starting", "worker.stopping", "worker.stopped"} <= set(events)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_worker_fails_jobs_on_deleted_records_or_of_a_deleted_user_at_once(registry, start_worker):
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        user = env["res.users"].create({"name": "Ann", "login": "ann"})
        partner = env["res.partner"].create({"name": "Acme"})
        on_gone = partner.with_delay(max_retries=5).exists().id
        of_gone_user = env["workerapp.task"].with_user(user).with_delay(max_retries=5)
        of_gone_user = of_gone_user.whoami("as-ann").id
        fine = env["workerapp.task"].with_delay().record("fine").id
        partner.unlink()
        user.unlink()
    start_worker("--concurrency", "2", *FAST)
    wait_for(lambda: states(registry).get("done", 0) == 1, 60, "the job that can run")
    wait_for(lambda: states(registry).get("failed", 0) == 2, 30, "the two that cannot")
    rows = query(registry, "SELECT id, state, attempts, exc_name FROM queue_job ORDER BY id", ())
    assert rows == [
        (on_gone, "failed", 1, "job_worker.exceptions.MissingRecordsError"),
        (of_gone_user, "failed", 1, "job_worker.exceptions.MissingUserError"),
        (fine, "done", 0, None),
    ]
    assert [r[0] for r in query(registry, "SELECT name FROM workerapp_effect")] == ["fine"]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_logs_say_when_each_job_starts_and_ends_and_a_final_failure_is_an_error(
    registry, start_worker
):
    import json

    [batched] = enqueue(registry, "record", "quick")
    [alone] = enqueue(registry, "sleep_then_record", "slow", 0.05, timeout=20)
    [failing] = enqueue(registry, "fail", "always", max_retries=1)
    [timed_out] = enqueue(registry, "sleep_then_record", "stuck", 30, timeout=1, max_retries=1)
    worker = start_worker(
        "--concurrency", "2", "--log-format", "json", "--log-level", "DEBUG", *FAST
    )
    wait_for(lambda: states(registry) == {"done": 2, "failed": 2}, 60, "two jobs done, two failed")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    uuids = dict(query(registry, "SELECT id, uuid FROM queue_job"))

    def about(job_id: int) -> list[tuple[str, str]]:
        entries = [e for e in lines if e.get("job_id") == job_id]
        assert all(e["job_uuid"] == uuids[job_id] for e in entries)
        return [(e["level"], e["event"]) for e in entries if e["event"] != "job.claimed"]

    for job_id in (batched, alone):
        assert about(job_id) == [("debug", "job.started"), ("info", "job.done")]
        [done] = [e for e in lines if e.get("job_id") == job_id and e["event"] == "job.done"]
        assert done["duration"] >= (0.05 if job_id == alone else 0)
    assert about(failing) == [
        ("debug", "job.started"),
        ("warning", "job.retry"),
        ("debug", "job.started"),
        ("error", "job.failed"),
    ]
    assert about(timed_out) == [
        ("debug", "job.started"),
        ("warning", "job.timeout"),
        ("debug", "job.started"),
        ("error", "job.timeout"),
    ]
