"""The executor pool: child processes started once, replaced when they die.

Executors come from a ``forkserver``: a small process started once, with the
job modules and the database drivers imported (:func:`preloaded`), that forks
each executor. Forking the supervisor itself would copy its connections and
threads into the child; spawning a fresh interpreter per executor would cost a
second each time one is replaced. A forked executor opens its own database
connections. The fork server is launched first (:meth:`ExecutorPool.launch`):
its imports overlap the supervisor's opening of its databases.

A stop signal sent to the worker's whole process group (systemd, supervisord,
Ctrl-C) reaches the fork server and the executors too; only the supervisor acts on
it. The fork server is born with SIGINT/SIGTERM blocked and keeps them so (it is
started while the supervisor blocks them), and forks every executor with them
blocked; the executor ignores them before it unblocks them. The supervisor stops
executors itself: a message, or SIGKILL by pid.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ..db import driver_modules
from ..db.jobstore import ClaimedJob
from ..registry import Registry
from . import executor
from .protocol import HandOffs, Run, Stop
from .settings import WorkerSettings

_logger = logging.getLogger(__name__)

#: seconds an executor may take to begin a job (lock, checks) before its timeout runs anyway
START_ALLOWANCE = 10.0


@dataclass
class RunningJob:
    db_index: int
    job: ClaimedJob
    dispatched_at: float
    deadline: float | None
    #: whether it is known to be started by this worker in the database: false for a
    #: job taken over by an executor's transaction that has not said it ended (its
    #: Finished), which a cancel check would see as not started yet
    settled: bool = True


@dataclass
class Child:
    slot: int
    process: BaseProcess
    conn: Connection
    ready: bool = False
    #: the jobs given to it, in the order it runs them; the first one is running
    queue: list[RunningJob] = field(default_factory=list)
    #: database session of this executor, per database (to end it after a kill)
    sessions: dict[int, int | None] = field(default_factory=dict)
    #: why the supervisor killed it: "timeout", "cancelled" or "stop"
    kill_reason: str | None = None
    #: when it was last given jobs or finished one (to measure how long jobs take)
    mark: float = 0.0
    #: shared memory the executor writes the id of the job it runs into (0: none)
    current: Any = None
    #: the process id (kept: the process object is closed once the child is reaped)
    pid: int | None = None
    #: jobs its current transaction took over (:class:`~.protocol.Handing`), until the
    #: transaction's outcomes come
    handed: int = 0

    @property
    def job(self) -> RunningJob | None:
        """The first job given to it and not reported finished (running, or done in a
        transaction not committed yet)."""
        return self.queue[0] if self.queue else None

    @property
    def running(self) -> RunningJob | None:
        """The job whose code it runs right now, as it says in shared memory (several
        jobs of a batch share a transaction); None between jobs, or while it commits."""
        current = self.current.value if self.current is not None else 0
        if current:
            for running in self.queue:
                if running.job.id == current:
                    return running
        return None


def preloaded(settings: WorkerSettings) -> list[str]:
    """What the fork server imports once, so that no executor imports it after its
    fork: the executor's code, the drivers of the worker's databases, the modules every
    registry loads and the worker's own (``--load``)."""
    drivers = [module for url in settings.databases for module in driver_modules(url)]
    return list(
        dict.fromkeys(
            ["job_worker.worker.executor", *drivers, *Registry.builtin_modules, *settings.modules]
        )
    )


class ExecutorPool:
    """``settings.concurrency`` executors, each running at most one job."""

    def __init__(self, settings: WorkerSettings, worker_id: str):
        self.settings = settings
        self.worker_id = worker_id
        self.ctx: Any = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(preloaded(settings))
        self.children: dict[int, Child] = {}
        #: whether executors may take jobs over themselves (shared with them)
        self.hand_offs = HandOffs.create(self.ctx, len(settings.databases))

    def launch(self) -> None:
        """Start the fork server without waiting for it: it imports what executors need
        (:func:`preloaded`) while the supervisor goes on (opens its databases);
        :meth:`start` waits for it."""
        with self._stop_signals_blocked():
            multiprocessing.forkserver.ensure_running()

    def start(self) -> None:
        for slot in range(self.settings.concurrency):
            self.spawn(slot)

    @staticmethod
    @contextmanager
    def _stop_signals_blocked() -> Iterator[None]:
        """While the fork server may be launched: the first start of an executor
        launches it, as does any start after it died, and it inherits this thread's
        signal mask across its exec (see the module's docstring). CPython's resource
        tracker, launched first when it does not run, unblocks SIGINT/SIGTERM in this
        thread once launched: so it is made to run before."""
        resource_tracker.ensure_running()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, executor.STOP_SIGNALS)
        try:
            yield
        finally:  # a signal that came meanwhile is delivered to the supervisor now
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def spawn(self, slot: int) -> Child:
        parent_end, child_end = self.ctx.Pipe()
        current = self.ctx.Value("q", 0, lock=False)
        process = self.ctx.Process(
            target=executor.main,
            args=(child_end, self.settings, self.worker_id, current, self.hand_offs.values),
            name=f"job-worker-executor-{slot}",
        )
        with self._stop_signals_blocked():
            process.start()
        child_end.close()
        child = Child(slot, process, parent_end, current=current, pid=process.pid)
        self.children[slot] = child
        _logger.debug(
            "executor %s started (pid %s)",
            slot,
            process.pid,
            extra={"event": "executor.started", "slot": slot, "pid": process.pid},
        )
        return child

    # -- what the supervisor waits on ---------------------------------------------

    def waitables(self) -> list[Any]:
        items: list[Any] = []
        for child in self.children.values():
            items.append(child.conn)
            items.append(child.process.sentinel)
        return items

    def by_conn(self, conn: Any) -> Child | None:
        return next((c for c in self.children.values() if c.conn is conn), None)

    def by_sentinel(self, sentinel: Any) -> Child | None:
        return next((c for c in self.children.values() if c.process.sentinel == sentinel), None)

    def wanting(self, per_executor: int) -> list[tuple[Child, int]]:
        """The executors that want jobs and how many: an idle one ``per_executor``; with
        batches (``per_executor`` > 1), also a busy one whose queue ran down to half a
        batch, so that its next batch waits for it rather than it for the next claim (and
        a claim takes half a batch at least). Idle ones come first."""
        ready = [c for c in self.children.values() if c.ready and not c.kill_reason]
        idle = [(c, per_executor) for c in ready if not c.queue]
        if per_executor == 1:
            return idle
        half = per_executor // 2
        topping = [(c, per_executor - len(c.queue)) for c in ready if 0 < len(c.queue) <= half]
        return idle + topping

    def busy(self) -> list[Child]:
        return [c for c in self.children.values() if c.queue]

    # -- running and stopping -----------------------------------------------------

    def dispatch(self, child: Child, db_index: int, jobs: list[ClaimedJob], now: float) -> None:
        """Give ``jobs`` to ``child``, which runs them one after the other, after those
        it has already."""
        idle = not child.queue
        child.queue.extend(RunningJob(db_index, job, now, None) for job in jobs)
        if idle:  # (the deadline of a job already running is left alone)
            child.mark = now
            self._provisional_deadline(child, now)
        child.conn.send(Run(db_index, jobs))

    def take_over(self, child: Child, db_index: int, after: int, jobs: list[ClaimedJob]) -> None:
        """``child``'s transaction took ``jobs`` over: it runs them after its first
        ``after`` jobs, before the others it has."""
        now = time.monotonic()
        child.queue[after:after] = [
            RunningJob(db_index, job, now, None, settled=False) for job in jobs
        ]
        child.handed += len(jobs)

    @staticmethod
    def transaction_ended(child: Child) -> None:
        """The transaction of ``child`` that took jobs over (:meth:`take_over`) ended:
        committed or not, what the database says of those jobs is true from now on
        (they run next, or come back as not begun)."""
        for running in child.queue:
            running.settled = True

    def finish(self, child: Child, job_id: int, now: float) -> RunningJob | None:
        """The child is done with ``job_id`` (its first job); returns it."""
        if not child.queue or child.queue[0].job.id != job_id:
            return None
        running = child.queue.pop(0)
        self._provisional_deadline(child, now)
        return running

    @staticmethod
    def _provisional_deadline(child: Child, now: float) -> None:
        # the executor says when the job really begins ("begin"): this one holds until then
        running = child.job
        if running is not None and running.job.timeout > 0:
            running.deadline = now + running.job.timeout + START_ALLOWANCE

    def kill(self, child: Child, reason: str) -> None:
        """SIGKILL: a job cannot block or catch it. The death is handled when its
        sentinel fires."""
        if child.kill_reason is None:
            child.kill_reason = reason
        if child.pid is not None:
            try:
                os.kill(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def reap(self, child: Child) -> int | None:
        """Forget a dead child; returns its exit code."""
        child.process.join(timeout=1.0)
        code = child.process.exitcode
        self._release(child)
        if self.children.get(child.slot) is child:
            del self.children[child.slot]
        return code

    @staticmethod
    def _release(child: Child) -> None:
        """Close the pipe to a child, and its process's sentinel once it has exited."""
        child.conn.close()
        if child.process.exitcode is not None:
            child.process.close()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop idle executors politely and kill the rest; wait for all of them."""
        for child in list(self.children.values()):
            try:
                if not child.queue:
                    child.conn.send(Stop())
                else:
                    self.kill(child, "stop")
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for child in list(self.children.values()):
            child.process.join(timeout=max(deadline - time.monotonic(), 0.0))
            if child.process.exitcode is None:
                self.kill(child, "stop")
                child.process.join(timeout=1.0)
            self._release(child)
        self.children.clear()
