"""Signals sent to the worker's whole process group, as systemd (``KillMode=
control-group``, its default), supervisord (``stopasgroup``) and Ctrl-C in a terminal
send them: the fork server and every executor receive them too, and only the
supervisor may act on them. Real ``job-worker worker`` processes, each started in a
session of its own, on both databases."""

from __future__ import annotations

import os
import signal
import time

import pytest
from worker_helpers import (
    FAST,
    alive,
    begun,
    enqueue,
    query,
    set_limit,
    signal_dispositions,
    states,
    wait_for,
    worker_ready,
)

GROUP_SIGNALS = pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"]
)
STOP = {signal.SIGINT, signal.SIGTERM}


@pytest.mark.timeout(60)
def test_fork_server_and_executors_never_act_on_stop_signals_from_their_first_instruction(
    registry, start_worker
):
    # a signal sent to the group while an executor is being forked must find it deaf
    # too: the fork server keeps them blocked, so each executor is born with them
    # blocked, and unblocks them once it ignores them
    worker = start_worker("--concurrency", "2", *FAST)
    wait_for(lambda: worker_ready(registry, worker), 30, "the worker")
    fork_server = worker.fork_server()
    assert fork_server is not None
    assert signal_dispositions(fork_server)["SigBlk"] >= STOP
    executors = worker.executor_pids()
    assert len(executors) == 2

    def settled(pid: int) -> bool:
        """At every moment deaf to them (blocked, ignored or both); in the end ignored and
        no longer blocked (an executor may still be starting when the worker is ready)."""
        dispositions = signal_dispositions(pid)
        assert dispositions["SigIgn"] | dispositions["SigBlk"] >= STOP
        return dispositions["SigIgn"] >= STOP and not STOP & dispositions["SigBlk"]

    wait_for(lambda: all(settled(pid) for pid in executors), 10, "executors ignoring them")
    assert signal_dispositions(worker.pid)["SigCgt"] >= STOP  # the supervisor's to handle


@pytest.mark.slow
@pytest.mark.timeout(90)
@GROUP_SIGNALS
def test_group_signal_lets_running_jobs_finish_without_losing_an_attempt(
    registry, start_worker, signum
):
    set_limit(registry, "root", 4)
    enqueue(registry, "sleep_then_record", "job-{i}", 2, count=8)
    worker = start_worker(
        "--concurrency", "4", "--grace", "20", "--log-level", "debug", *FAST, new_session=True
    )
    wait_for(lambda: begun(worker) == 4, 30, "four jobs running")
    processes = worker.descendants()
    began = time.monotonic()
    worker.signal_group(signum)
    assert worker.wait(25) == 0
    assert time.monotonic() - began < 20  # within the grace: the jobs ended on their own
    rows = query(registry, "SELECT state, attempts, exc_name FROM queue_job")
    assert sorted(rows) == [("done", 0, None)] * 4 + [("pending", 0, None)] * 4
    assert query(registry, "SELECT count(*) FROM workerapp_effect")[0][0] == 4
    assert "job.died" not in worker.log()
    wait_for(lambda: not any(map(alive, processes)), 10, "every process of the worker gone")


@pytest.mark.timeout(60)
@GROUP_SIGNALS
def test_group_signal_past_grace_returns_running_jobs_to_pending_uncounted(
    registry, start_worker, signum
):
    set_limit(registry, "root", 3)
    enqueue(registry, "sleep_then_record", "job-{i}", 60, count=3)
    worker = start_worker("--concurrency", "3", "--grace", "1", *FAST, new_session=True)
    wait_for(lambda: states(registry).get("started") == 3, 30, "three jobs running")
    processes = worker.descendants()
    began = time.monotonic()
    worker.signal_group(signum)
    assert worker.wait(15) == 0
    assert time.monotonic() - began < 1 + 5
    rows = query(registry, "SELECT state, attempts, worker_id FROM queue_job")
    assert rows == [("pending", 0, None)] * 3
    assert query(registry, "SELECT count(*) FROM workerapp_effect")[0][0] == 0
    wait_for(lambda: not any(map(alive, processes)), 10, "every process of the worker gone")


@pytest.mark.timeout(60)
def test_second_ctrl_c_to_the_group_stops_at_once_without_counting_an_attempt(
    registry, start_worker
):
    set_limit(registry, "root", 2)
    enqueue(registry, "sleep_then_record", "job-{i}", 60, count=2)
    worker = start_worker("--concurrency", "2", "--grace", "60", *FAST, new_session=True)
    wait_for(lambda: states(registry).get("started") == 2, 30, "two jobs running")
    worker.signal_group(signal.SIGINT)
    wait_for(lambda: "worker.stopping" in worker.log(), 10, "the first Ctrl-C handled")
    began = time.monotonic()
    worker.signal_group(signal.SIGINT)
    assert worker.wait(10) == 0
    assert time.monotonic() - began < 5
    rows = query(registry, "SELECT state, attempts, worker_id FROM queue_job")
    assert rows == [("pending", 0, None)] * 2
    assert query(registry, "SELECT count(*) FROM workerapp_effect")[0][0] == 0


@pytest.mark.timeout(60)
def test_killed_supervisor_takes_its_fork_server_and_an_executor_holding_the_gil_along(
    registry, start_worker, tmp_path
):
    # a job busy in C code that keeps the GIL: no thread of its executor can run, so
    # the executor must be ended from outside (its fork server exits, the kernel kills it)
    marker = tmp_path / "marker"
    enqueue(registry, "hold_gil", str(marker), 60)
    worker = start_worker("--concurrency", "2", *FAST)
    pid = int(wait_for(lambda: marker.exists() and marker.read_text(), 30, "the job running"))
    processes = worker.descendants()
    assert pid in processes
    try:
        worker.signal(signal.SIGKILL)
        worker.wait(10)
        wait_for(lambda: not any(map(alive, processes)), 10, "every process of the worker gone")
    finally:
        for process in processes:
            if alive(process):
                os.kill(process, signal.SIGKILL)
