"""How the supervisor shares claimed jobs among its executors and handles their messages
(in-process, no database)."""

from __future__ import annotations

import os
import time

import pytest

from job_worker.queue.config import ClusterSettings
from job_worker.worker.pool import START_ALLOWANCE, Child, ExecutorPool, RunningJob
from job_worker.worker.protocol import (
    Began,
    FailureReport,
    Finished,
    Handing,
    HandOffs,
    JobOutcome,
    Outcome,
    Ready,
    Run,
    SessionOpened,
    Wake,
)
from job_worker.worker.settings import WorkerSettings
from job_worker.worker.supervisor import BATCH_BELOW, BATCH_SPAN, Supervisor, _batch_size, _deal

pytestmark = pytest.mark.timeout(10)


class Conn:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, message: object) -> None:
        self.sent.append(message)

    def poll(self) -> bool:
        return False  # nothing more from the executor


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
    pool.hand_offs = HandOffs([0.0, 0.0])
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
    assert busy.conn.sent == [Run(0, [job(1, timeout=5.0)]), Run(0, [job(2), job(3)])]


def test_the_running_job_is_the_one_whose_code_the_executor_says_it_runs():
    import ctypes

    busy = child(1, queued=3)
    busy.current = ctypes.c_longlong(0)
    assert busy.running is None  # between jobs, or committing: nothing to kill for a cancel
    busy.current.value = busy.queue[1].job.id
    assert busy.running is busy.queue[1]


@pytest.fixture
def supervisor():
    made = Supervisor(WorkerSettings(databases=("sqlite:///x.db", "sqlite:///y.db")))
    yield made
    made._close_signal_pipe()


def test_the_supervisor_handles_each_message_by_its_type(supervisor):
    busy = child(0)
    busy.ready = False
    supervisor.pool = pool_of(busy)
    supervisor._on_message(busy, Ready(1234))
    supervisor._on_message(busy, SessionOpened(1, 77))
    assert busy.ready and busy.sessions == {1: 77}
    supervisor.pool.dispatch(busy, 1, [job(1, timeout=5.0)], now=0.0)
    assert busy.queue[0].deadline == 0.0 + 5.0 + START_ALLOWANCE  # until it says it began
    supervisor._on_message(busy, Began(1, 1))  # its deadline runs from now
    deadline = busy.queue[0].deadline
    assert deadline is not None and abs(deadline - (time.monotonic() + 5.0)) < 1.0
    producer = supervisor.databases[0].producer
    producer.woken = False
    supervisor._on_message(busy, Wake(0))
    assert producer.woken


def test_finished_jobs_leave_the_executor_and_what_it_could_not_record_is_owed(supervisor):
    busy = child(0)
    supervisor.pool = pool_of(busy)
    supervisor.pool.dispatch(busy, 1, [job(1), job(2), job(3), job(4)], now=0.0)
    report = FailureReport.of(ValueError("boom"), "tb")
    supervisor._on_message(
        busy,
        Finished(
            1,
            [
                JobOutcome(1, Outcome.DONE),
                JobOutcome(2, Outcome.FAILED, "pending"),
                JobOutcome(3, Outcome.UNRECORDED, report=report),
                JobOutcome(4, Outcome.SKIPPED),
            ],
        ),
    )
    assert busy.queue == []
    owed = supervisor.databases[1].recorder.pending
    assert [(c.kind, c.job.id, c.report) for c in owed] == [
        ("failure", 3, report),
        ("stop", 4, None),
    ]
    assert supervisor.databases[0].recorder.pending == []


def test_an_unknown_message_is_an_error_that_names_it(supervisor):
    busy = child(0)
    with pytest.raises(TypeError, match="unexpected message from executor 0: 'finished'"):
        supervisor._on_message(busy, "finished")  # type: ignore[arg-type]


def test_jobs_an_executor_took_over_run_after_its_batch_and_free_no_slot(supervisor):
    busy = child(0)
    supervisor.pool = pool_of(busy)
    supervisor.pool.dispatch(busy, 1, [job(1), job(2)], now=0.0)
    supervisor.pool.dispatch(busy, 1, [job(3)], now=0.0)
    # the batch of job 1 alone ran; its transaction took jobs 7 and 8 over
    supervisor._on_message(busy, Handing(1, 1, [job(7), job(8, timeout=5.0)]))
    assert [r.job.id for r in busy.queue] == [1, 7, 8, 2, 3]
    producer = supervisor.databases[1].producer
    producer.woken = False
    supervisor._on_message(busy, Finished(1, [JobOutcome(1, Outcome.DONE)]))
    assert [r.job.id for r in busy.queue] == [7, 8, 2, 3]
    assert not producer.woken  # its capacity went to the jobs taken over: no claim for it
    supervisor._on_message(busy, Finished(1, [JobOutcome(7, Outcome.DONE)]))
    assert producer.woken  # this one freed its slot
    assert busy.queue[0].job.id == 8 and busy.queue[0].deadline is not None  # timed: watched


def test_hand_offs_are_granted_after_a_short_claim_and_revoked_by_news_or_a_stop(
    supervisor, monkeypatch
):
    supervisor.pool = pool_of(child(0))
    supervisor.pool.hand_offs = HandOffs([0.0] * 4)
    database = supervisor.databases[1]
    producer, hand_offs = database.producer, supervisor.pool.hand_offs
    database.db.cluster = ClusterSettings(default_limit=3)
    now = time.monotonic()
    producer.exhausted, producer.due_at = True, now + 0.25  # only limits held jobs back
    supervisor._grant_hand_offs(database, now)
    assert hand_offs.granted(1, now) == 3 and hand_offs.granted(0, now) is None
    assert hand_offs.granted(1, now + 0.3) is None  # not past the next due job
    producer.exhausted = False  # a claim that left jobs it could have taken
    supervisor._grant_hand_offs(database, now)
    assert hand_offs.granted(1, now) is None
    producer.exhausted, producer.due_at = True, None
    supervisor._grant_hand_offs(database, now)
    assert hand_offs.granted(1, now + producer.fallback_interval - 0.01) == 3
    assert hand_offs.granted(1, now + producer.fallback_interval) is None  # its next poll
    supervisor._on_message(supervisor.pool.children[0], Wake(1))  # a job enqueued jobs
    assert hand_offs.granted(1, now) is None
    supervisor._grant_hand_offs(database, now)
    os.set_blocking(supervisor._signal_r, False)
    supervisor.signals = 1
    supervisor._handle_signals(now)  # stopping
    assert hand_offs.granted(1, now) is None


class DeadProcess:
    """An executor process that has exited."""

    exitcode = -9
    sentinel = None

    def join(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def _owed_at_death(supervisor, busy) -> list:
    """What the supervisor owes the jobs of ``busy`` once it died, the database away
    (the changes wait, in order), no executor started in its place."""
    busy.process = DeadProcess()  # type: ignore[assignment]
    busy.conn.poll = lambda: False  # type: ignore[attr-defined]
    busy.conn.close = lambda: None  # type: ignore[attr-defined]
    supervisor.databases[1].db.available = lambda now: False  # type: ignore[method-assign]
    supervisor.stopping = True
    supervisor._on_death(busy)
    return supervisor.databases[1].recorder.pending


def test_jobs_taken_over_by_an_executor_that_died_go_back_uncounted(supervisor):
    """The executor said which jobs its transaction took over before committing, then
    died: committed or not, those jobs are given back to pending with no attempt."""
    busy = child(0)
    supervisor.pool = pool_of(busy)
    supervisor.pool.dispatch(busy, 1, [job(1)], now=0.0)
    supervisor._on_message(busy, Handing(1, 1, [job(7)]))
    busy.process = DeadProcess()  # type: ignore[assignment]
    busy.conn.poll = lambda: False  # type: ignore[attr-defined]
    busy.conn.close = lambda: None  # type: ignore[attr-defined]
    assert busy.running is None  # between its jobs: committing
    supervisor.stopping = True  # no executor started in its place
    supervisor._on_death(busy)
    owed = supervisor.databases[1].recorder.pending
    assert [(c.kind, c.job.id) for c in owed] == [("stop", 1), ("stop", 7)]


def test_a_batch_holds_about_its_span_of_work_up_to_the_batch_setting():
    assert _batch_size(64, 0.0005) == 64  # no-op jobs: as many as allowed
    assert _batch_size(64, 0.0) == 64
    assert _batch_size(64, 0.005) == int(BATCH_SPAN / 0.005)  # fewer of longer jobs
    assert _batch_size(8, 0.005) == 8
    assert _batch_size(64, BATCH_BELOW) == 1  # long jobs: one at a time
    assert _batch_size(1, 0.0005) == 1


def test_an_executor_runs_the_batches_that_came_meanwhile_after_its_jobs_left():
    from job_worker.worker.executor import Executor
    from job_worker.worker.protocol import Drain

    executor = Executor(WorkerSettings(databases=("sqlite:///x.db", "sqlite:///y.db")), "w", Conn())  # type: ignore[arg-type]
    executor.inbox = [
        Run(0, [job(3)]),
        Run(0, [job(4), job(5)]),
        Run(1, [job(6)]),
        Run(0, [job(7)]),
    ]
    jobs = [job(1), job(2)]
    executor._take_next_batches(0, jobs)
    assert [j.id for j in jobs] == [1, 2, 3, 4, 5]  # in order, up to another database's batch
    assert executor.inbox == [Run(1, [job(6)]), Run(0, [job(7)])]
    executor.inbox = [Drain(), Run(0, [job(8)])]
    executor._take_next_batches(0, jobs)
    assert len(jobs) == 5 and len(executor.inbox) == 2


def test_jobs_taken_over_are_left_out_of_the_cancel_check_until_their_transaction_ended(
    supervisor,
):
    """A check that read the jobs before the taking transaction committed would find
    them not started yet, and kill the executor that began one right after the commit:
    the job would stay started by a live worker, never to run."""
    import ctypes

    busy = child(0)
    busy.current = ctypes.c_longlong(0)
    supervisor.pool = pool_of(busy)
    database = supervisor.databases[1]
    checked: list[list[int]] = []

    def tick(now: float, running) -> set[int]:
        checked.append([j.id for j in running])
        return {7} & {j.id for j in running}  # what a check before the commit reads

    database.tick = tick  # type: ignore[method-assign]
    supervisor.pool.dispatch(busy, 1, [job(1), job(2)], now=0.0)
    supervisor._on_message(busy, Handing(1, 1, [job(7)]))
    busy.current.value = 7  # the executor committed and began job 7 meanwhile
    supervisor._enforce(time.monotonic())
    assert checked[-1] == [1, 2] and busy.kill_reason is None
    supervisor._on_message(busy, Finished(1, [JobOutcome(1, Outcome.DONE)]))
    supervisor._enforce(time.monotonic())
    assert checked[-1] == [7, 2]  # from its transaction's end, the database is right
    assert busy.kill_reason == "cancelled"


def test_a_job_whose_executor_was_killed_for_a_cancel_is_given_back_if_still_ours(supervisor):
    """The change names this worker's started job: a no-op for a job really cancelled
    or reclaimed, and the job back to pending if the check was wrong."""
    import ctypes

    busy = child(0)
    busy.current = ctypes.c_longlong(0)
    supervisor.pool = pool_of(busy)
    supervisor.pool.dispatch(busy, 1, [job(1)], now=0.0)
    busy.current.value = 1
    busy.kill_reason = "cancelled"
    owed = _owed_at_death(supervisor, busy)
    assert [(c.kind, c.job.id) for c in owed] == [("stop", 1)]


def test_a_job_of_a_slot_s_run_whose_executor_died_counts_its_attempt_while_pending(
    supervisor,
):
    """A slot's run took job 7 in the transaction its executor died in: the job is
    pending again, never committed started. Its attempt counts all the same (a job that
    kills its executor would otherwise die uncounted forever); the batch's own job is
    given back."""
    import ctypes

    busy = child(0)
    busy.current = ctypes.c_longlong(0)
    supervisor.pool = pool_of(busy)
    supervisor.pool.dispatch(busy, 1, [job(1)], now=0.0)
    supervisor._on_message(busy, Handing(1, 1, [job(7), job(8)]))
    busy.current.value = 7
    owed = _owed_at_death(supervisor, busy)
    assert [(c.kind, c.job.id, c.expected_state) for c in owed] == [
        ("stop", 1, "started"),
        ("stop", 8, "started"),
        ("died", 7, "pending"),
    ]


@pytest.mark.parametrize(
    "url", ["sqlite:///x.db", "postgresql://127.0.0.1:1/none?options=-csearch_path%3Dx"]
)
def test_the_fork_server_imports_all_an_executor_needs_to_warm_up(url, tmp_path):
    """An executor forked from it builds its registry and job store importing nothing:
    psycopg alone took 0.1 s of each executor's start."""
    import subprocess
    import sys
    import textwrap

    from job_worker.worker.pool import preloaded

    modules = preloaded(WorkerSettings(databases=(url,)))
    assert modules[0] == "job_worker.worker.executor"
    code = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {modules!r}:
            importlib.import_module(name)
        before = set(sys.modules)
        from job_worker import db, registry
        from job_worker.db import jobstore
        from job_worker.orm.registry import load_modules
        backend = db.connect({url!r}, create=True)
        store = jobstore.for_backend(backend)
        load_modules(list(registry.Registry.builtin_modules))
        print(sorted(set(sys.modules) - before))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
