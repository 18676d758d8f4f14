"""The executor: a child process of the supervisor that runs one job at a time.

It is started once (never per job) and then loops: receive claimed jobs on
its pipe, run them on its own database connection, report the outcomes. A
job's writes and its ``done`` state commit together
(:func:`job_worker.queue.states.mark_done_many`, guarded by the worker's id: if
the job was cancelled or reclaimed meanwhile, nothing of it commits). A
failure rolls the job's writes back to its savepoint and is recorded
(:func:`job_worker.queue.states.record_failure`) in the same transaction; if
the database is gone, the supervisor records it later.

Jobs run in batches, one code path: a batch of short jobs shares one
transaction, each job in a savepoint of its own: a failing job rolls back to its
savepoint (its writes and the callbacks it registered go), its failure is
recorded, and the next job goes on. The transaction commits at the end of the
batch, or once it is :data:`COMMIT_EVERY` seconds old; the outcomes are reported
only once they are committed. A job with a timeout is a batch of one, in a
transaction of its own (so a kill at its deadline never takes other jobs' work with
it), and says when it began (:class:`~.protocol.Began`) so that its deadline runs
from then. What the executor is running right now is in ``current`` (shared
memory), for the supervisor to know which job a dead executor was running.

A batch that cannot begin (the connection was lost) is given back uncounted
(:attr:`~.protocol.Outcome.SKIPPED`); a batch whose connection is lost while it
runs commits nothing and counts an attempt for each job begun, retried in a second.

The messages to and from the supervisor are in :mod:`.protocol`.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from ..db import jobstore
from ..queue import states
from ..queue.execution import call as call_job
from ..queue.execution import checks_records, job_environment, records_query
from ..registry import Registry
from . import logs
from .protocol import (
    Began,
    Drain,
    FailureReport,
    Finished,
    FromExecutor,
    Handing,
    HandOffs,
    JobOutcome,
    Outcome,
    Ready,
    Run,
    SessionOpened,
    Stop,
    ToExecutor,
    Wake,
)
from .settings import WorkerSettings

_logger = logging.getLogger(__name__)

#: exit status of an executor whose supervisor died
ORPHANED = 70
#: the signals that stop a worker. systemd (by default), supervisord (``stopasgroup``)
#: and Ctrl-C send them to every process of the worker: the supervisor alone acts on
#: them; its fork server and executors never see them (blocked, then ignored)
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
#: seconds an executor waits for an unreachable database before it gives a job back
CONNECT_PATIENCE = 60.0
#: age (seconds) at which a transaction shared by a batch of jobs commits before the
#: batch's next job: the done state of a short job is never held back for long
COMMIT_EVERY = 0.05


def _report(exc: BaseException, session: jobstore.Session) -> FailureReport:
    """The failure of a job, or the loss of its connection if that is what happened."""
    text = "".join(traceback.format_exception(exc))
    if session.broken:
        return FailureReport.connection_lost(exc, text)
    return FailureReport.of(exc, text)


class Executor:
    """The state of one executor process: a registry and a session per database."""

    def __init__(
        self,
        settings: WorkerSettings,
        worker_id: str,
        conn: Connection,
        current: Any = None,
        hand_offs: HandOffs | None = None,
    ):
        self.settings = settings
        self.worker_id = worker_id
        self.conn = conn
        #: shared with the supervisor: the id of the job being run (0: none)
        self.current = current if current is not None else _Current()
        #: shared with the supervisor: whether finishing jobs may hand their capacity on
        self.hand_offs = hand_offs
        #: the jobs the last batch's transaction took over (:meth:`_hand_off`), to run next
        self.handed: list[jobstore.ClaimedJob] = []
        self.registries: dict[int, Registry] = {}
        self.sessions: dict[int, jobstore.Session] = {}
        self.reported_sessions: dict[int, int | None] = {}
        #: what :meth:`close` undoes: the enqueue hooks this executor registered
        self._unsubscribe: list[Callable[[], None]] = []
        #: the supervisor asked for the jobs not begun yet back: it is stopping
        self.draining = False
        #: messages read while looking for a drain request, to handle next
        self.inbox: list[ToExecutor] = []

    def registry(self, db_index: int) -> Registry:
        registry = self.registries.get(db_index)
        if registry is None:
            url = self.settings.databases[db_index]
            registry = Registry(url, list(self.settings.modules), init=False)
            self.registries[db_index] = registry
            wake = Wake(db_index)
            self._unsubscribe.append(jobstore.on_local_enqueue(url, lambda: self._send(wake)))
            store = jobstore.for_backend(registry.backend)
            self.sessions[db_index] = store.session(role="executor")
        return registry

    def _send(self, message: FromExecutor) -> None:
        self.conn.send(message)

    def run(self, db_index: int, jobs: Sequence[jobstore.ClaimedJob]) -> int:
        """Run the first jobs of ``jobs`` as one batch in one transaction, a savepoint
        each, and report their outcomes once it ended (one :class:`~.protocol.Finished`).
        A job with a timeout is a batch of one; a batch of short jobs stops before a job
        with a timeout, at a drain request, or once its transaction is
        :data:`COMMIT_EVERY` old. Returns how many of ``jobs`` it ran or gave back (at
        least one).

        Three round trips for the whole batch on PostgreSQL: the jobs begin together,
        the done states are written together, then the commit. A job's savepoint opens
        only if the job talks to the database. Jobs the transaction took over
        (:meth:`_hand_off`) are left in :attr:`handed`, to run next.

        A batch of short jobs that holds its channel's capacity while nothing but
        limits holds jobs back goes on as a slot's run, in the same transaction: each
        round trip marks the jobs run so far done and takes the channel's next ones,
        which run one after the other in the weight the batch holds (marked started in
        this transaction only: to any other, the batch's own jobs still hold that weight),
        begun together as a batch's are (a second round trip), until the transaction is
        :data:`COMMIT_EVERY` old; it then hands the capacity on as above, and commits. A
        run whose last round trip found no job for the slot commits without looking
        again (a round trip less a job where jobs come one at a time), unless the jobs
        that round trip marked released dependents. A channel at its limit drains a
        commit per transaction, not per job."""
        registry = self.registry(db_index)
        store = jobstore.for_backend(registry.backend)
        session = self.sessions[db_index]
        cr = self._cursor(session, registry)
        self._report_session(db_index, session)
        timed = jobs[0].timeout > 0
        batch = [jobs[0]] if timed else list(itertools.takewhile(_short, jobs))
        given = len(batch)  # those of ``jobs``; a slot's run adds the jobs it takes
        outcomes: list[JobOutcome] = []  # in the order of ``batch``
        finished: list[tuple[int, Any, float]] = []  # ran to the end: marked done together
        ended: dict[int, float] = {}  # when each finished job's code ended
        marked: set[int] = set()  # finished jobs marked done already (a slot's run)
        committed: list[tuple[int, Any, float]] = []
        running: jobstore.ClaimedJob | None = None
        begun = False
        hand_on = True  # whether the commit may hand the capacity on (see _end)
        commit_at = time.monotonic() + COMMIT_EVERY
        try:
            # the jobs' records are looked up with the begin, in the same round trip
            lookup = _RecordsLookup(registry, batch)
            ours, rows = store.begin_jobs_reading(
                cr, [job.id for job in batch], self.worker_id, lookup.queries
            )
            lookup.found(rows, cr.sql_count)
            begun = True
            if timed and ours:  # the timeout runs from here, not from the dispatch
                self._send(Began(db_index, batch[0].id))
            rolled_back = False
            while True:
                for job in batch[len(outcomes) :]:
                    if outcomes and (time.monotonic() >= commit_at or self._drain_requested()):
                        break
                    if job.id not in ours:  # cancelled, set by hand or reclaimed before its turn
                        outcomes.append(JobOutcome(job.id, Outcome.LOST))
                        continue
                    running = job
                    existing = lookup.existing(job, cr.sql_count)
                    outcomes.append(self._run_in_savepoint(cr, job, finished, existing))
                    ended[job.id] = time.monotonic()
                    running = None
                slot = self._hand_off(db_index, batch, given, outcomes, finished, commit_at)
                if slot is None:
                    break
                unmarked, newly, taken, cascaded = self._mark_done(
                    cr, finished, ended, marked, batch[given:], slot
                )
                if len(newly) < len(unmarked):  # a job of the batch was taken away meanwhile
                    outcomes = self._give_back(cr, batch, given, outcomes, finished, marked | newly)
                    rolled_back = True
                    break
                marked |= newly
                if not taken:
                    # no due job fitted the slot just now: a hand-off at the commit would
                    # find none either, but for the dependents this step released (and a
                    # job with a timeout, which the claim after the outcome takes)
                    hand_on = cascaded
                    break
                self._send(Handing(db_index, len(outcomes), taken))  # before they run
                batch.extend(taken)
                # begun like any batch: run locks, and their records looked up together
                lookup = _RecordsLookup(registry, taken)
                more, rows = store.begin_jobs_reading(
                    cr, [job.id for job in taken], self.worker_id, lookup.queries
                )
                lookup.found(rows, cr.sql_count)
                ours.update(more)
            if not rolled_back:
                outcomes, committed = self._end(
                    db_index, cr, batch, given, outcomes, finished, ended, marked, hand_on
                )
        except Exception as exc:
            # the connection broke, or the commit failed: nothing of the batch committed
            cr.close()
            if not begun and session.broken:  # nothing ran: all given back, uncounted
                _logger.warning(
                    "database connection lost before %d job(s) began",
                    len(batch),
                    extra={"event": "job.not_begun", "job_uuid": batch[0].uuid},
                )
                outcomes = [JobOutcome(job.id, Outcome.SKIPPED) for job in batch]
            else:
                ran = batch[: len(outcomes) + (running is not None)] if begun else batch
                outcomes = self._record_all(db_index, ran[:given], _report(exc, session))
                # a slot's run took them in this transaction: pending again, as they were
                outcomes += [JobOutcome(job.id, Outcome.LOST) for job in batch[given:]]
        finally:
            cr.close()  # rolls back whatever is left of the transaction
        self._send(Finished(db_index, outcomes))
        if committed:  # logged once the outcomes are sent
            by_id = {job.id: job for job in batch}
            for job_id, _result, duration in committed:
                _log_done(by_id[job_id], duration)
        return min(len(outcomes), given)

    def _end(
        self,
        db_index: int,
        cr: Any,
        batch: list[jobstore.ClaimedJob],
        given: int,
        outcomes: list[JobOutcome],
        finished: list[tuple[int, Any, float]],
        ended: dict[int, float],
        marked: set[int],
        hand_on: bool = True,
    ) -> tuple[list[JobOutcome], list[tuple[int, Any, float]]]:
        """End the batch's transaction: the jobs a slot's run took and did not run go
        back to pending; the finished jobs not marked yet are marked done, their
        capacity handed on where it may be (not with ``hand_on`` false: the run's last
        step found no job for the slot, and released none); commit. The outcomes, and
        the jobs committed done."""
        serial = batch[given:]
        left = serial[len(outcomes) - given :] if len(outcomes) >= given else []
        if left:  # its time was up, or the worker stops: never committed started
            states.return_to_pending(cr, [job.id for job in left], worker_id=self.worker_id)
            outcomes.extend(JobOutcome(job.id, Outcome.LOST) for job in left)
        hand_off = self._hand_off(db_index, batch, given, outcomes, finished) if hand_on else None
        unmarked, newly, self.handed, _cascaded = self._mark_done(
            cr, finished, ended, marked, serial, hand_off
        )
        if self.handed:  # told before the commit: a death right then loses nothing
            self._send(Handing(db_index, len(outcomes), self.handed))
        if len(newly) < len(unmarked):
            return self._give_back(cr, batch, given, outcomes, finished, marked | newly), []
        cr.commit()
        return outcomes, finished

    def _mark_done(
        self,
        cr: Any,
        finished: list[tuple[int, Any, float]],
        ended: dict[int, float],
        marked: set[int],
        serial: Sequence[jobstore.ClaimedJob],
        hand_off: jobstore.HandOff | None,
    ) -> tuple[list[tuple[int, Any, float]], set[int], list[jobstore.ClaimedJob], bool]:
        """Mark the finished jobs not ``marked`` yet done, each dated when its code ended
        (and began, for a job a slot's run took: in ``serial``), handing their capacity
        on as ``hand_off`` says (None: not at all). The jobs it had to mark, those it
        marked (fewer if one was taken away meanwhile), the jobs it took, and whether a
        job it marked has dependents (their cascade came after the hand-off)."""
        unmarked = [row for row in finished if row[0] not in marked]
        now = time.monotonic()
        taken = {job.id for job in serial}
        timing = {row[0]: (max(now - ended[row[0]], 0.0), row[0] in taken) for row in unmarked}
        if hand_off is None:
            newly = states.mark_done_many(cr, unmarked, worker_id=self.worker_id, timing=timing)
            return unmarked, newly, [], False
        return unmarked, *states.mark_done_handing_off(
            cr, unmarked, worker_id=self.worker_id, hand_off=hand_off, timing=timing
        )

    def _hand_off(
        self,
        db_index: int,
        batch: Sequence[jobstore.ClaimedJob],
        given: int,
        outcomes: Sequence[JobOutcome],
        finished: Sequence[tuple[int, Any, float]],
        commit_at: float | None = None,
    ) -> jobstore.HandOff | None:
        """What the batch's finished jobs may hand on to the next jobs of their channel
        (all of one channel, the whole batch run), if the supervisor allows it now: it
        does while nothing but channels' limits holds jobs back (its last claim took
        every due job it could), and not once it stops. The weight handed is that of
        the batch's own jobs (``batch[:given]``, started by a commit) that finished.

        ``commit_at``: a slot's run (:attr:`~job_worker.db.jobstore.HandOff.serial`),
        asked for jobs that fit in the time left before the transaction commits; none
        after a job with a timeout (its deadline holds until its transaction ends)."""
        if len(outcomes) < len(batch) or self.hand_offs is None:
            return None
        done = {row[0] for row in finished}
        freeing = tuple(job.id for job in batch[:given] if job.id in done)
        if not freeing:
            return None
        default_limit = self.hand_offs.granted(db_index, time.monotonic())
        if default_limit is None or self._drain_requested():
            return None
        channels = {job.channel for job in batch}
        if len(channels) != 1:
            return None
        if commit_at is None:
            return jobstore.HandOff(channels.pop(), len(freeing), default_limit, freeing)
        now = time.monotonic()
        if now >= commit_at or any(job.timeout > 0 for job in batch):
            return None
        each = (now - (commit_at - COMMIT_EVERY)) / len(outcomes)  # a job, round trips included
        take = max(1, min(self.settings.batch, int((commit_at - now) / max(each, 1e-4))))
        return jobstore.HandOff(channels.pop(), take, default_limit, freeing, serial=True)

    def _run_in_savepoint(
        self,
        cr: Any,
        job: jobstore.ClaimedJob,
        finished: list[tuple[int, Any, float]],
        existing: set[int] | None = None,
    ) -> JobOutcome:
        """Run ``job`` in a savepoint of ``cr``'s transaction. A job that ends well is
        added to ``finished``, to be marked done with the others; a failure is rolled
        back to the savepoint and recorded. Raises only when the transaction as a whole
        is lost. ``existing``: which of its records exist, if read already."""
        self.current.value = job.id
        _log_start(job)
        try:
            marks = cr.callback_marks()
            started = time.monotonic()
            with cr.lazy_savepoint() as savepoint:
                try:
                    call = job.decoded_call()
                    result = call_job(job_environment(cr, call), call, existing)
                except Exception as exc:
                    failure, text = exc, traceback.format_exc()
                    cr.rollback_to_savepoint(savepoint, marks)  # raises if the connection is lost
                else:
                    finished.append((job.id, result, time.monotonic() - started))
                    return JobOutcome(job.id, Outcome.DONE)
            new_state = states.record_failure(
                cr,
                job.id,
                failure,
                traceback=text,
                worker_id=self.worker_id,
                max_backoff=self.settings.max_backoff,
            )
            self._log_failure(job, FailureReport.of(failure, text), new_state)
            return JobOutcome(job.id, Outcome.FAILED, new_state)
        finally:
            self.current.value = 0  # the job's code is over, whatever happened

    def _give_back(
        self,
        cr: Any,
        batch: list[jobstore.ClaimedJob],
        given: int,
        outcomes: list[JobOutcome],
        finished: list[tuple[int, Any, float]],
        marked: set[int],
    ) -> list[JobOutcome]:
        """A job of the batch ran to its end, but was cancelled or set by hand before its
        done state could be written: its writes are in the batch's transaction, so none
        of the batch may commit. Roll back: that job is no longer ours; the batch's other
        jobs go back to pending, uncounted, and run again; those a slot's run took are
        pending again by the rollback itself."""
        cr.rollback()
        overtaken = {job_id for job_id, _result, _duration in finished} - marked
        if len(batch) > 1:
            _logger.warning(
                "%d job(s) of a batch changed state while it ran: the batch is rolled back"
                " and its other jobs are given back",
                len(overtaken),
                extra={"event": "batch.rolled_back", "job_ids": sorted(overtaken)},
            )
        taken = {job.id for job in batch[given:]}
        return [
            JobOutcome(outcome.job_id, Outcome.LOST)
            if outcome.job_id in overtaken
            or outcome.job_id in taken
            or outcome.outcome is Outcome.LOST
            else JobOutcome(outcome.job_id, Outcome.SKIPPED)
            for outcome in outcomes
        ]

    def _record_all(
        self, db_index: int, jobs: list[jobstore.ClaimedJob], report: FailureReport
    ) -> list[JobOutcome]:
        """Record the same failure for each of ``jobs``; once the database does not
        answer, the supervisor records the rest."""
        outcomes: list[JobOutcome] = []
        for job in jobs:
            if outcomes and outcomes[-1].outcome is Outcome.UNRECORDED:
                outcomes.append(JobOutcome(job.id, Outcome.UNRECORDED, report=report))
            else:
                outcomes.append(self.record(db_index, job, report))
        return outcomes

    def _report_session(self, db_index: int, session: jobstore.Session) -> None:
        if session.session_id != self.reported_sessions.get(db_index):
            self.reported_sessions[db_index] = session.session_id
            self._send(SessionOpened(db_index, session.session_id))

    @staticmethod
    def _cursor(session: jobstore.Session, registry: Registry) -> Any:
        """The job's transaction. The job has not begun yet: while the database is away
        (restarting), wait for it rather than count an attempt against the job."""
        delay, waited = 0.1, 0.0
        while True:
            try:
                return session.cursor(registry)
            except Exception:
                if waited >= CONNECT_PATIENCE:
                    raise
                time.sleep(delay)  # backing off from a database that is down
                waited += delay
                delay = min(delay * 2, 2.0)

    def record(self, db_index: int, job: jobstore.ClaimedJob, report: FailureReport) -> JobOutcome:
        """Record the failure in a transaction of its own; the supervisor does it if the
        database is unreachable now."""
        registry = self.registries[db_index]
        try:
            with self.sessions[db_index].cursor(registry) as cr:
                new_state = states.record_failure(
                    cr,
                    job.id,
                    report.exception(),
                    traceback=report.traceback,
                    worker_id=self.worker_id,
                    max_backoff=self.settings.max_backoff,
                )
        except Exception:
            _logger.warning(
                "could not record the failure of job %s now; the supervisor will",
                job.uuid,
                exc_info=True,
                extra={"event": "job.failure_unrecorded", "job_id": job.id, "job_uuid": job.uuid},
            )
            return JobOutcome(job.id, Outcome.UNRECORDED, report=report)
        self._log_failure(job, report, new_state)
        return JobOutcome(job.id, Outcome.FAILED, new_state)

    @staticmethod
    def _log_failure(
        job: jobstore.ClaimedJob, report: FailureReport, new_state: str | None
    ) -> None:
        """A retry is a WARNING (``job.retry``), a final failure an ERROR (``job.failed``),
        a channel backoff (back to pending) a WARNING (``job.backoff``)."""
        final = new_state == "failed"
        event = "job.failed" if final else "job.retry"
        if report.kind == "backoff" and new_state == "pending":
            event = "job.backoff"
        _logger.log(
            logging.ERROR if final else logging.WARNING,
            "job %s failed with %s: %s%s",
            job.uuid,
            report.exc_qualname,
            report.message,
            ", will be retried" if new_state == "pending" else "",
            extra={
                "event": event,
                "job_id": job.id,
                "job_uuid": job.uuid,
                "state": new_state,
            },
        )

    def warm_up(self) -> None:
        """Build the registries and connect before taking jobs, so that the first job
        does not pay for it (a database that is down now is connected to later)."""
        for db_index in range(len(self.settings.databases)):
            registry = self.registry(db_index)
            try:
                self.sessions[db_index].cursor(registry).close()
            except Exception as exc:
                _logger.debug(
                    "executor could not connect yet: %s",
                    exc,
                    extra={"event": "executor.connect_later"},
                )

    def loop(self) -> None:
        self.warm_up()
        self._send(Ready(os.getpid()))
        while True:
            try:
                message = self.inbox.pop(0) if self.inbox else self.conn.recv()
            except (EOFError, OSError):
                return
            if isinstance(message, Stop):
                return
            if not isinstance(message, Run):
                continue  # a drain that came after its batch ended
            jobs = list(message.jobs)
            while jobs:
                if self._drain_requested():
                    skipped = [JobOutcome(job.id, Outcome.SKIPPED) for job in jobs]
                    self._send(Finished(message.db_index, skipped))
                    break
                self._take_next_batches(message.db_index, jobs)
                ran = self.run(message.db_index, jobs)
                # the jobs its transaction took over come next (back as LOST or SKIPPED
                # if it did not commit)
                jobs, self.handed = [*self.handed, *jobs[ran:]], []

    def _take_next_batches(self, db_index: int, jobs: list[jobstore.ClaimedJob]) -> None:
        """Add to ``jobs`` those of the batches of the same database that came meanwhile
        (the supervisor tops an executor's jobs up while it runs them): they run after
        them, as they would anyway, and may share their transaction."""
        while self.inbox:
            message = self.inbox[0]
            if not isinstance(message, Run) or message.db_index != db_index:
                return
            jobs.extend(message.jobs)
            self.inbox.pop(0)

    def _drain_requested(self) -> bool:
        """Whether the supervisor asked to give back the jobs not begun (it is stopping:
        for good). Jobs it gives meanwhile (the next batch) wait in the inbox."""
        while self.conn.poll():
            message = self.conn.recv()
            if isinstance(message, Drain):
                self.draining = True
            else:
                self.inbox.append(message)
        return self.draining

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for session in self.sessions.values():
            session.close()


def _ignore_stop_signals() -> None:
    """Ignore SIGINT/SIGTERM, then unblock them: the fork server forks an executor with
    them blocked (see ``ExecutorPool.spawn``), so one sent to the group at any moment is
    either still pending here (and dropped by ``SIG_IGN``) or arrives once ignored."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _die_with_parent() -> None:
    """An executor never outlives its supervisor: a job it runs could otherwise overlap
    the same job reclaimed elsewhere.

    Two ways, so that one holds when the other cannot. A thread watches the
    supervisor's sentinel and exits the process; it needs the GIL, which a job busy in
    C code may hold for long. So the kernel kills the executor too when its parent, the
    fork server, exits (``PR_SET_PDEATHSIG``); and the fork server exits as soon as
    the supervisor dies, since it serves until every holder of its "alive" pipe is
    gone: the supervisor, and each executor it forked with a copy, which the executor
    closes here (it starts no process through that fork server)."""
    try:  # the kernel's way (Linux): SIGKILL when the parent (the fork server) exits
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    fork_server: Any = getattr(multiprocessing.forkserver, "_forkserver", None)
    alive_fd = getattr(fork_server, "_forkserver_alive_fd", None)
    if alive_fd is not None:  # after PR_SET_PDEATHSIG: the fork server may exit from now on
        os.close(alive_fd)
        fork_server._forkserver_alive_fd = None
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(ORPHANED)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


class _Current:
    """Stands in for the shared value when an executor runs outside a pool (tests)."""

    value = 0


class _RecordsLookup:
    """The records of a batch's jobs, looked up when the batch begins (one query per
    model, in the begin's round trip), so that a job on records starts without a round
    trip of its own. What was found stands for a job as long as nothing was sent to the
    database since (the batch's earlier jobs never talked to it): the job then sees
    what its own look-up would have seen, but for other transactions' commits meanwhile
    (a look-up is never more than a moment: any record may go right after it). A job
    after one that talked to the database looks its records up itself."""

    def __init__(self, registry: Registry, batch: Sequence[jobstore.ClaimedJob]):
        self.models: dict[int, str] = {}  # job id -> model of the records it checks
        wanted: dict[str, set[int]] = {}
        for job in batch:
            ids = job.call["record_ids"]
            try:
                if isinstance(ids, str):
                    ids = json.loads(ids)
            except ValueError:
                continue  # the job fails as it begins, as it would anyway
            model = job.call["model_name"]
            if checks_records(registry, model, ids):
                self.models[job.id] = model
                wanted.setdefault(model, set()).update(ids)
        self.queries = [
            records_query(registry, registry.backend, model, sorted(ids))
            for model, ids in wanted.items()
        ]
        self._names = list(wanted)
        self._found: dict[str, set[int]] = {}
        self._sent = -1

    def found(self, rows: list[list[tuple[Any, ...]]], sent: int) -> None:
        """The rows of :attr:`queries`; ``sent``: the cursor's statement count then."""
        self._found = {
            model: {row[0] for row in result}
            for model, result in zip(self._names, rows, strict=True)
        }
        self._sent = sent

    def existing(self, job: jobstore.ClaimedJob, sent: int) -> set[int] | None:
        """Ids found among those of ``job``'s model, or None: the job looks them up."""
        model = self.models.get(job.id)
        if model is None or sent != self._sent:
            return None
        return self._found[model]


def _short(job: jobstore.ClaimedJob) -> bool:
    """Whether ``job`` may share a transaction with others: it has no timeout."""
    return job.timeout <= 0


def _log_start(job: jobstore.ClaimedJob) -> None:
    """DEBUG: one line per job begun would double the log of a busy worker; the
    ``job.done`` line carries the duration."""
    _logger.debug(
        "job %s started: %s.%s",
        job.uuid,
        job.call["model_name"],
        job.call["method_name"],
        extra={
            "event": "job.started",
            "job_id": job.id,
            "job_uuid": job.uuid,
            "channel": job.channel,
        },
    )


def _log_done(job: jobstore.ClaimedJob, duration: float) -> None:
    _logger.info(
        "job %s done in %.3f s: %s.%s",
        job.uuid,
        duration,
        job.call["model_name"],
        job.call["method_name"],
        extra={
            "event": "job.done",
            "job_id": job.id,
            "job_uuid": job.uuid,
            "duration": round(duration, 6),
        },
    )


def main(
    conn: Connection,
    settings: WorkerSettings,
    worker_id: str,
    current: Any = None,
    hand_offs: Any = None,
) -> None:
    """Entry point of an executor process."""
    # The supervisor alone decides when an executor stops: a Ctrl-C or a SIGTERM sent
    # to the whole process group must not kill jobs behind its back.
    _ignore_stop_signals()
    _die_with_parent()
    logs.configure(settings.log_format, settings.log_level)
    shared = HandOffs(hand_offs) if hand_offs is not None else None
    executor = Executor(settings, worker_id, conn, current, shared)
    try:
        executor.loop()
    finally:
        executor.close()
