"""How the supervisor shares claimed jobs among its executors (in-process, no database)."""

from __future__ import annotations

import pytest

from job_worker.worker.pool import Child, ExecutorPool, RunningJob
from job_worker.worker.settings import WorkerSettings
from job_worker.worker.supervisor import _deal

pytestmark = pytest.mark.timeout(10)


class Conn:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send(self, message: tuple) -> None:
        self.sent.append(message)


def child(slot: int, queued: int = 0) -> Child:
    made = Child(slot, process=None, conn=Conn(), ready=True)  # type: ignore[arg-type]
    made.queue = [RunningJob(0, job(1000 * slot + i), 0.0, None) for i in range(queued)]
    return made


def job(job_id: int, timeout: float = 0.0):
    from job_worker.db.jobstore import ClaimedJob

    return ClaimedJob(job_id, f"uuid-{job_id}", "root", 10, None, timeout, {})


def pool_of(*children: Child) -> ExecutorPool:
    pool = ExecutorPool.__new__(ExecutorPool)
    pool.settings = WorkerSettings(databases=("sqlite:///x.db",))
    pool.children = {c.slot: c for c in children}
    return pool


def test_fewer_jobs_than_executors_go_one_each_best_first():
    a, b, c = child(0), child(1), child(2)
    dealt = _deal([1, 2], [(a, 8), (b, 8), (c, 8)])
    assert [(d[0].slot, d[1]) for d in dealt] == [(0, [1]), (1, [2])]


def test_under_a_backlog_each_executor_gets_what_it_asked_for_in_turn():
    a, b = child(0), child(1, queued=5)
    dealt = _deal(list(range(1, 12)), [(a, 8), (b, 3)])
    assert [(d[0].slot, d[1]) for d in dealt] == [(0, [1, 3, 5, 7, 8, 9, 10, 11]), (1, [2, 4, 6])]


def test_busy_executors_want_a_next_batch_only_when_jobs_come_in_batches():
    idle, running_one, topped_up = child(0), child(1, queued=1), child(2, queued=8)
    pool = pool_of(idle, running_one, topped_up)
    assert pool.wanting(1) == [(idle, 1)]
    assert pool.wanting(8) == [(idle, 8), (running_one, 7)]
    running_one.kill_reason = "timeout"
    assert pool.wanting(8) == [(idle, 8)]


def test_a_next_batch_leaves_the_running_job_and_its_deadline_alone():
    busy = child(0)
    pool = pool_of(busy)
    pool.dispatch(busy, 0, [job(1, timeout=5.0)], now=100.0)
    deadline = busy.queue[0].deadline
    assert deadline is not None
    pool.dispatch(busy, 0, [job(2), job(3)], now=101.0)
    assert [r.job.id for r in busy.queue] == [1, 2, 3]
    assert busy.queue[0].deadline == deadline and busy.mark == 100.0
    assert [m[0] for m in busy.conn.sent] == ["run", "run"]


def test_the_running_job_is_the_one_whose_code_the_executor_says_it_runs():
    import ctypes

    busy = child(1, queued=3)
    busy.current = ctypes.c_longlong(0)
    assert busy.running is None  # between jobs, or committing: nothing to kill for a cancel
    busy.current.value = busy.queue[1].job.id
    assert busy.running is busy.queue[1]
