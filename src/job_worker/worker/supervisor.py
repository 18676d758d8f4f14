"""The supervisor: one process, one event loop, owning the executors and the claims.

Each turn of the loop it claims jobs for idle executors (one claim per
database, as many jobs as there are idle executors), kills executors whose
job ran past its timeout or was cancelled, keeps heartbeats and owed state
changes going, then waits for the next event: a message or a death from an
executor, a wake-up from a database, a signal, or the next timer.

The supervisor is the one authority on which executor runs which job, so it
can act at once when one dies (``WorkerDiedJobError``), times out
(``TimeoutJobError``) or must stop (back to pending, no attempt counted).

Stopping: the first SIGTERM/SIGINT stops claiming and lets running jobs
finish for ``grace`` seconds, then kills what still runs and returns those
jobs to pending; a second signal does that at once. The exit code is 0. The
signal may reach every process of the worker at once (systemd, supervisord, Ctrl-C
send it to the process group): the fork server and the executors never act on it
(``pool``), so the supervisor alone stops them, by message or by SIGKILL.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from .. import __version__
from .pool import Child, ExecutorPool
from .protocol import (
    Began,
    Drain,
    Finished,
    FromExecutor,
    Handing,
    Outcome,
    Ready,
    SessionOpened,
    Wake,
)
from .recorder import OwedChange
from .services import DatabaseServices
from .settings import WorkerSettings

_logger = logging.getLogger(__name__)

#: jobs shorter than this on average (seconds) are given to executors in batches
BATCH_BELOW = 0.01
#: the work (seconds) a batch holds at most, at the jobs' average time: very short jobs
#: come in batches as large as ``--batch``, a batch of longer ones holds fewer
BATCH_SPAN = 0.25
#: longest sleep of the loop, so that nothing waits on a lost wake-up for long
MAX_WAIT = 1.0
#: how long owed state changes are retried at shutdown before the stale-job reclaim is
#: left to do them
SHUTDOWN_RECORD_TIME = 3.0


def _deal(jobs: list[Any], wanting: list[tuple[Child, int]]) -> list[tuple[Child, list[Any]]]:
    """Share claimed jobs (best first) among the executors that want them, one at a time
    in turn, idle executors first: with fewer jobs than executors each gets one, and
    under a backlog each gets what it asked for."""
    shares: list[list[Any]] = [[] for _ in wanting]
    left = jobs[::-1]  # the best last: popped first
    while left:
        dealt = False
        for share, (_child, wanted) in zip(shares, wanting, strict=True):
            if left and len(share) < wanted:
                share.append(left.pop())
                dealt = True
        if not dealt:
            break
    return [(child, share) for share, (child, _) in zip(shares, wanting, strict=True) if share]


def _batch_size(most: int, job_time: float) -> int:
    """Jobs an executor holds at once: ``most`` at most, about :data:`BATCH_SPAN` of
    work at ``job_time`` (the jobs' average time), one for jobs of
    :data:`BATCH_BELOW` or more."""
    if job_time >= BATCH_BELOW:
        return 1
    return max(1, min(most, int(BATCH_SPAN / job_time) if job_time > 0 else most))


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Supervisor:
    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.worker_id = make_worker_id()
        #: the supervisor's side of each database, by index
        self.databases = [
            DatabaseServices(i, url, settings, self.worker_id)
            for i, url in enumerate(settings.databases)
        ]
        self.pool = ExecutorPool(settings, self.worker_id)
        self.signals = 0
        self.stopping = False
        self.stop_deadline: float | None = None
        self._signal_r, self._signal_w = os.pipe()
        self._next_database = 0
        #: moving average of the seconds an executor spends per job (unknown: long)
        self.job_time = 1.0
        self._handlers: dict[type, Callable[[Child, Any], None]] = {
            Finished: self._on_finished,
            Handing: self._on_handing,
            Began: self._on_began,
            SessionOpened: self._on_session,
            Wake: self._on_wake,
            Ready: self._on_ready,
        }

    # -- signals --------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1

    def _install_signals(self) -> None:
        os.set_blocking(self._signal_w, False)
        os.set_blocking(self._signal_r, False)
        signal.set_wakeup_fd(self._signal_w)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _handle_signals(self, now: float) -> None:
        try:
            while os.read(self._signal_r, 64):
                pass
        except (BlockingIOError, OSError):
            pass
        if self.signals and not self.stopping:
            self.stopping = True
            self.stop_deadline = now + self.settings.grace
            self.pool.hand_offs.revoke()
            for child in self.pool.busy():
                try:
                    # give back what was not begun (what it may take over meanwhile, too)
                    child.conn.send(Drain())
                except OSError:
                    pass  # it died: its sentinel says so
            _logger.info(
                "stopping: %d job(s) running, %.0f s to finish",
                len(self.pool.busy()),
                self.settings.grace,
                extra={"event": "worker.stopping", "worker": self.worker_id},
            )
        if self.signals >= 2 and self.stop_deadline is not None and self.stop_deadline > now:
            _logger.info("second signal: stopping now", extra={"event": "worker.stop_now"})
            self.stop_deadline = now

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        _logger.info(
            "worker %s starting: %d executor(s), %d database(s)",
            self.worker_id,
            self.settings.concurrency,
            len(self.databases),
            extra={"event": "worker.starting", "worker": self.worker_id, "version": __version__},
        )
        # the fork server imports what the executors need while the databases open
        self._install_signals()
        self.pool.launch()
        for database in self.databases:  # a database that cannot be opened now is an error
            try:
                database.open()
            except BaseException:
                for opened in self.databases:
                    opened.stop()
                signal.set_wakeup_fd(-1)
                self._close_signal_pipe()
                raise
        self.pool.start()
        try:
            while True:
                now = time.monotonic()
                self._handle_signals(now)
                if self.stopping and self._drained(now):
                    break
                for database in self.databases:
                    database.ensure_started(now)
                if not self.stopping:
                    self._dispatch(now)
                self._enforce(now)
                self._wait(now)
        finally:
            self._shutdown()
        _logger.info(
            "worker %s stopped",
            self.worker_id,
            extra={"event": "worker.stopped", "worker": self.worker_id},
        )
        return 0

    def _drained(self, now: float) -> bool:
        if self.stop_deadline is not None and now >= self.stop_deadline:
            for child in self.pool.busy():
                self.pool.kill(child, "stop")
        return not self.pool.busy() and not any(d.recorder.pending for d in self.databases)

    def _dispatch(self, now: float) -> None:
        """Claim for executors that want jobs, one database after the other (round robin)."""
        count = len(self.databases)
        for step in range(count):
            # batches only for short jobs: a long job would hold the rest of its batch back;
            # with short jobs an executor gets its next batch while it runs one
            per_executor = _batch_size(self.settings.batch, self.job_time)
            wanting = self.pool.wanting(per_executor)
            if not wanting:
                return
            database = self.databases[(self._next_database + step) % count]
            if not database.wants_to_claim(now):
                continue
            jobs = database.producer.claim(now, sum(wanted for _child, wanted in wanting))
            self._grant_hand_offs(database, now)
            for child, batch in _deal(jobs, wanting):
                self.pool.dispatch(child, database.index, batch, now)
                if _logger.isEnabledFor(logging.DEBUG):
                    for job in batch:
                        _logger.debug(
                            "job %s given to executor %s",
                            job.uuid,
                            child.slot,
                            extra={
                                "event": "job.claimed",
                                "job_id": job.id,
                                "job_uuid": job.uuid,
                                "slot": child.slot,
                            },
                        )
        self._next_database = (self._next_database + 1) % count

    def _grant_hand_offs(self, database: DatabaseServices, now: float) -> None:
        """After a claim: executors may hand a finishing job's capacity to the next job of
        its channel while nothing else waits, that is while the claim left no job a
        claim could take (only limits hold jobs back), until something wakes the
        producer or its next poll."""
        producer = database.producer
        if not producer.exhausted:  # more may wait (or it failed): claims weigh them
            self.pool.hand_offs.revoke(database.index)
            return
        until = now + producer.fallback_interval
        if producer.due_at is not None:
            until = min(until, producer.due_at)
        self.pool.hand_offs.grant(database.index, until, database.db.cluster.default_limit)

    def _enforce(self, now: float) -> None:
        """Timeouts, cancellations, heartbeats and owed changes."""
        for child in self.pool.busy():
            running = child.job
            assert running is not None
            if running.deadline is not None and now >= running.deadline and not child.kill_reason:
                self.pool.kill(child, "timeout")
        for database in self.databases:
            mine = [c for c in self.pool.busy() if c.job and c.job.db_index == database.index]
            # not the jobs a transaction took over before it ended: a check could read
            # them before its commit, and kill the executor that runs them after it
            taken = database.tick(now, [r.job for c in mine for r in c.queue if r.settled])
            for child in mine:
                running = child.running
                if running and running.job.id in taken and not child.kill_reason:
                    self._drain_messages(child)  # it may have just finished the job itself
                    running = child.running
                    if running is not None and running.job.id in taken:
                        _logger.info(
                            "job %s was cancelled while running: killing its executor",
                            running.job.uuid,
                            extra={
                                "event": "job.cancel_kill",
                                "job_id": running.job.id,
                                "job_uuid": running.job.uuid,
                            },
                        )
                        self.pool.kill(child, "cancelled")

    def _wait(self, now: float) -> None:
        idle = bool(self.pool.wanting(1)) and not self.stopping
        timers = [now + MAX_WAIT]
        timers += [d.next_timer(now, idle) for d in self.databases]
        timers += [c.job.deadline for c in self.pool.busy() if c.job and c.job.deadline]
        if self.stop_deadline is not None:
            timers.append(self.stop_deadline)
        if idle and any(
            d.started and d.producer.woken and d.db.available(now) for d in self.databases
        ):
            timers.append(now)
        timeout = max(min(timers) - now, 0.0)
        waitables: list[Any] = [self._signal_r, *self.pool.waitables()]
        fds: dict[int, DatabaseServices] = {}
        for database in self.databases:
            fd = database.wakeup_fd()
            if fd is not None:
                fds[fd] = database
                waitables.append(fd)
        for ready in wait(waitables, timeout):
            if ready == self._signal_r:
                continue  # handled at the top of the loop
            if isinstance(ready, int) and ready in fds:
                # jobs may have come: the next claim weighs them against the channels'
                self.pool.hand_offs.revoke(fds[ready].index)
                fds[ready].on_wakeup_fd(now)
                continue
            child = self.pool.by_conn(ready)
            if child is not None:
                self._drain_messages(child)
                continue
            child = self.pool.by_sentinel(ready)  # an executor died
            if child is not None:
                self._on_death(child)

    # -- executors ---------------------------------------------------------------------------

    def _drain_messages(self, child: Child) -> None:
        try:
            while child.conn.poll():
                self._on_message(child, child.conn.recv())
        except (EOFError, OSError):
            pass  # it died: its sentinel says so

    def _on_message(self, child: Child, message: FromExecutor) -> None:
        handler = self._handlers.get(type(message))
        if handler is None:
            raise TypeError(f"unexpected message from executor {child.slot}: {message!r}")
        handler(child, message)

    @staticmethod
    def _on_ready(child: Child, message: Ready) -> None:
        child.ready = True

    @staticmethod
    def _on_session(child: Child, message: SessionOpened) -> None:
        child.sessions[message.db_index] = message.session_id

    @staticmethod
    def _on_began(child: Child, message: Began) -> None:
        running = child.job
        if running is not None and running.job.id == message.job_id:
            running.deadline = time.monotonic() + running.job.timeout

    def _on_wake(self, child: Child, message: Wake) -> None:
        self.pool.hand_offs.revoke(message.db_index)
        self.databases[message.db_index].producer.wake()

    def _on_handing(self, child: Child, message: Handing) -> None:
        self.pool.take_over(child, message.db_index, message.after, list(message.jobs))

    def _on_finished(self, child: Child, message: Finished) -> None:
        finished_at = time.monotonic()
        database = self.databases[message.db_index]
        # the capacity of as many of them went to the jobs their transaction took over
        handed, child.handed = child.handed, 0
        self.pool.transaction_ended(child)
        for done in message.outcomes:
            running = self.pool.finish(child, done.job_id, finished_at)
            if running is None:
                continue
            if handed:
                handed -= 1
            else:
                database.producer.wake()  # a slot, and maybe a channel's capacity, came free
            if done.outcome is Outcome.UNRECORDED:
                database.recorder.owe(OwedChange("failure", running.job, report=done.report))
            elif done.outcome is Outcome.SKIPPED:
                database.recorder.owe(OwedChange("stop", running.job, "given back before it began"))
        # how long a job takes, from the executor's side (several may commit together)
        spent = (finished_at - child.mark) / max(len(message.outcomes), 1)
        child.mark = finished_at
        self.job_time += (spent - self.job_time) * 0.2

    def _on_death(self, child: Child) -> None:
        self._drain_messages(child)  # a job it finished before dying counts as finished
        running, reason = child.running, child.kill_reason
        code = self.pool.reap(child)
        for waiting in child.queue:
            if waiting is running:
                continue
            # not begun, or done in a transaction that died uncommitted (or committed but
            # not reported: then nothing changes): back to pending, nothing counted
            self.databases[waiting.db_index].recorder.owe(
                OwedChange(
                    "stop",
                    waiting.job,
                    "executor gone before the job ended",
                    child.sessions.get(waiting.db_index),
                )
            )
        if running is not None:
            job = running.job
            recorder = self.databases[running.db_index].recorder
            session_id = child.sessions.get(running.db_index)
            if reason == "timeout":
                change = OwedChange(
                    "timeout",
                    job,
                    f"job ran past its timeout of {job.timeout:g} s: executor {child.pid} killed",
                    session_id,
                )
            elif reason == "stop":
                change = OwedChange("stop", job, "worker stopping: executor killed", session_id)
            elif reason == "cancelled":
                # no longer ours, as the cancel check read it: a no-op then (the change
                # names this worker's started job); if that read was wrong, the job is
                # given back rather than left started by a live worker, never to run
                change = OwedChange(
                    "stop", job, "executor killed: the job was taken away while it ran", session_id
                )
            else:
                # a job a slot's run took in the transaction that died is pending again:
                # its attempt is counted all the same, or a job that kills its executor
                # would be taken that way again and again, never counted
                change = OwedChange(
                    "died",
                    job,
                    f"executor process {child.pid} died (exit code {code})",
                    session_id,
                    expected_state="started" if running.settled else "pending",
                )
            recorder.owe(change)
            recorder.apply(time.monotonic())
        elif reason is None:
            _logger.warning(
                "executor %s (pid %s) died (exit code %s) while idle",
                child.slot,
                child.pid,
                code,
                extra={"event": "executor.died", "slot": child.slot},
            )
        if not self.stopping:
            self.pool.spawn(child.slot)

    # -- shutdown ------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        self.stopping = True  # no executor is replaced from here on
        for child in self.pool.busy():
            self.pool.kill(child, "stop")
        deadline = time.monotonic() + SHUTDOWN_RECORD_TIME
        for child in list(self.pool.children.values()):
            if child.job is not None:
                child.process.join(timeout=1.0)
                self._on_death(child)
        while any(d.recorder.pending for d in self.databases) and time.monotonic() < deadline:
            now = time.monotonic()
            for database in self.databases:
                database.recorder.apply(now)
            time.sleep(0.05)  # backing off between retries against a database that is down
        for database in self.databases:
            for change in database.recorder.pending:
                _logger.warning(
                    "could not record job %s (%s) before exiting: the stale-job reclaim will",
                    change.job.uuid,
                    change.kind,
                    extra={"event": "job.left_started", "job_uuid": change.job.uuid},
                )
        self.pool.shutdown()
        for database in self.databases:
            database.stop()
        signal.set_wakeup_fd(-1)
        self._close_signal_pipe()

    def _close_signal_pipe(self) -> None:
        for fd in (self._signal_r, self._signal_w):
            try:
                os.close(fd)
            except OSError:
                pass  # closed already
