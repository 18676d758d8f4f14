"""The executor's handling of jobs, in-process: batches of short jobs sharing one
transaction with a savepoint each, and a job alone (a batch of one)."""

from __future__ import annotations

import pytest
from worker_helpers import enqueue, query, set_limit

from job_worker import SUPERUSER_ID, api
from job_worker.db import TransactionOwnedError, jobstore
from job_worker.exceptions import FailedJobError, RetryableJobError
from job_worker.queue import states
from job_worker.worker.executor import Executor
from job_worker.worker.protocol import (
    Began,
    Drain,
    FailureReport,
    Finished,
    JobOutcome,
    Outcome,
    Run,
    SessionOpened,
)
from job_worker.worker.settings import WorkerSettings

pytestmark = pytest.mark.timeout(60)


class Pipe:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, message: object) -> None:
        self.sent.append(message)

    def poll(self) -> bool:
        return False  # the supervisor says nothing meanwhile


@pytest.fixture
def run(registry, db_url):
    store = jobstore.for_backend(registry.backend)
    supervisor = store.session(role="supervisor")
    executor = Executor(WorkerSettings(databases=(db_url,), modules=("workerapp",)), "w1", Pipe())

    def run(job_id: int) -> tuple:
        cr = supervisor.cursor(registry)
        try:
            [job] = [
                j
                for j in store.claim(cr, worker_id="w1", wanted=10, default_limit=10).jobs
                if j.id == job_id
            ]
        finally:
            cr.close()
        return run_one(executor, job)

    run.executor = executor  # type: ignore[attr-defined]
    run.one = lambda job: run_one(executor, job)  # type: ignore[attr-defined]
    run.claim = lambda ids: claim(store, supervisor, registry, ids)  # type: ignore[attr-defined]
    yield run
    executor.close()
    supervisor.close()


def claim(store, supervisor, registry, ids: list[int]) -> list:
    """Claim the jobs ``ids`` for worker w1, in the order of ``ids``."""
    cr = supervisor.cursor(registry)
    try:
        claimed = {
            j.id: j for j in store.claim(cr, worker_id="w1", wanted=100, default_limit=100).jobs
        }
    finally:
        cr.close()
    return [claimed[i] for i in ids]


def short(outcome: JobOutcome) -> tuple:
    """An outcome as a short tuple: ("done",), ("failed", new state)..."""
    assert isinstance(outcome, JobOutcome)
    if outcome.outcome is Outcome.FAILED:
        return (outcome.outcome.value, outcome.state)
    return (outcome.outcome.value,)


def finished_of(executor: Executor) -> Finished:
    finished = [m for m in executor.conn.sent if isinstance(m, Finished)]
    assert len(finished) == 1, executor.conn.sent  # one message per committed transaction
    return finished[0]


def run_one(executor: Executor, job) -> tuple:
    """Run one job, alone; returns its outcome as reported (see :func:`short`)."""
    executor.conn.sent.clear()
    assert executor.run(0, [job]) == 1
    [outcome] = finished_of(executor).outcomes
    assert outcome.job_id == job.id
    return short(outcome)


def run_together(run, ids: list[int], jobs: list | None = None) -> tuple[int, list[tuple]]:
    """Run the jobs ``ids`` (claimed now unless given) as one batch; returns how many ran
    and the outcomes reported."""
    executor = run.executor
    executor.conn.sent.clear()
    count = executor.run(0, jobs if jobs is not None else run.claim(ids))
    outcomes = finished_of(executor).outcomes
    return count, [(outcome.job_id, short(outcome)) for outcome in outcomes]


def effects(registry) -> list[str]:
    return [row[0] for row in query(registry, "SELECT name FROM workerapp_effect ORDER BY id")]


def test_done_job_commits_its_writes_and_its_state_together(registry, run):
    [job_id] = enqueue(registry, "record", "hello")
    assert run(job_id) == ("done",)
    assert effects(registry) == ["hello"]
    state, result, worker = query(
        registry, "SELECT state, result, worker_id FROM queue_job WHERE id = %s", (job_id,)
    )[0]
    assert state == "done" and "hello" in str(result) and worker == "w1"


def test_failed_job_rolls_back_its_writes_and_records_the_attempt(registry, run):
    [job_id] = enqueue(registry, "fail", "boom")
    assert run(job_id) == ("failed", "pending")
    state, attempts, exc_name, exc_info = query(
        registry, "SELECT state, attempts, exc_name, exc_info FROM queue_job"
    )[0]
    assert (state, attempts, exc_name) == ("pending", 1, "ValueError")
    assert "boom" in exc_info


def test_job_cancelled_while_running_is_not_marked_done(registry, run, monkeypatch):
    # (a no-op job: on SQLite a job that wrote holds the write lock, the cancel would wait)
    [job_id] = enqueue(registry, "noop")
    real = states.mark_done_many

    def cancel_first(cr, finished, *args, **kwargs):
        with registry.cursor() as other:
            other.execute("UPDATE queue_job SET state = 'cancelled' WHERE id = %s", (job_id,))
        return real(cr, finished, *args, **kwargs)

    monkeypatch.setattr(states, "mark_done_many", cancel_first)
    assert run(job_id) == ("lost",)
    assert query(registry, "SELECT state FROM queue_job")[0][0] == "cancelled"


def test_job_cancelled_before_it_starts_does_not_run(registry, run, monkeypatch):
    [job_id] = enqueue(registry, "record", "never")
    real = jobstore.JobStore.claim

    def claim_then_cancel(self, cr, **kwargs):
        claimed = real(self, cr, **kwargs)
        cr.execute("UPDATE queue_job SET state = 'cancelled' WHERE id = %s", (job_id,))
        cr.commit()
        return claimed

    monkeypatch.setattr(jobstore.JobStore, "claim", claim_then_cancel)
    assert run(job_id) == ("lost",)
    assert effects(registry) == []


def test_job_runs_as_its_user_and_company(registry, run):
    set_limit(registry, "root", 5)
    [job_id] = enqueue(registry, "whoami", "ctx")
    assert run(job_id) == ("done",)
    assert effects(registry) == ["ctx:1:1:None"]


def enqueue_as(registry, uid: int, model: str, ids: list[int], method: str, *args) -> int:
    with registry.cursor() as cr:
        env = api.Environment(cr, uid, {})
        return getattr(env[model].browse(ids).with_delay(max_retries=5), method)(*args).id


def test_job_on_records_that_no_longer_exist_fails_at_once(registry, run):
    job_id = enqueue_as(registry, SUPERUSER_ID, "res.partner", [999999], "exists")
    assert run(job_id) == ("failed", "failed")
    [(state, attempts, exc_name, message)] = query(
        registry, "SELECT state, attempts, exc_name, exc_message FROM queue_job"
    )
    assert (state, attempts, exc_name) == ("failed", 1, "job_worker.exceptions.MissingRecordsError")
    assert "res.partner record(s) 999999 no longer exist" in message


def test_first_job_on_some_records_that_no_longer_exist_names_only_those(registry, run):
    with registry.cursor() as cr:
        partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].create({"name": "p"}).id
    job_id = enqueue_as(registry, SUPERUSER_ID, "res.partner", [partner, 999999], "exists")
    assert run(job_id) == ("failed", "failed")
    [(exc_name, message)] = query(registry, "SELECT exc_name, exc_message FROM queue_job")
    assert exc_name == "job_worker.exceptions.MissingRecordsError"
    assert "res.partner record(s) 999999 no longer exist" in message  # the missing one alone


def test_job_of_a_batch_on_records_that_no_longer_exist_fails_at_once(registry, run):
    ids = [
        *enqueue(registry, "record", "before"),
        enqueue_as(registry, SUPERUSER_ID, "res.partner", [999998, 999999], "exists"),
        *enqueue(registry, "record", "after"),
    ]
    _count, outcomes = run_together(run, ids)
    assert outcomes == [(ids[0], ("done",)), (ids[1], ("failed", "failed")), (ids[2], ("done",))]
    assert effects(registry) == ["before", "after"]
    [(exc_name, message)] = query(
        registry, "SELECT exc_name, exc_message FROM queue_job WHERE id = %s", (ids[1],)
    )
    assert exc_name == "job_worker.exceptions.MissingRecordsError"
    assert "999998, 999999" in message


def test_job_of_a_deleted_user_fails_instead_of_running_as_the_superuser(registry, run):
    with registry.cursor() as cr:
        uid = (
            api.Environment(cr, SUPERUSER_ID, {})["res.users"]
            .create({"name": "Ann", "login": "ann"})
            .id
        )
    solo = enqueue_as(registry, uid, "workerapp.task", [], "whoami", "solo")
    batched = [
        enqueue_as(registry, uid, "workerapp.task", [], "whoami", "batched"),
        *enqueue(registry, "record", "other"),
    ]
    with registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["res.users"].browse(uid).unlink()
    jobs = run.claim([solo, *batched])
    assert run.one(jobs[0]) == ("failed", "failed")
    _count, outcomes = run_together(run, batched, jobs[1:])
    assert outcomes == [(batched[0], ("failed", "failed")), (batched[1], ("done",))]
    assert effects(registry) == ["other"]  # neither job ran, as anyone
    rows = query(
        registry,
        "SELECT state, attempts, exc_name FROM queue_job WHERE id IN (%s, %s) ORDER BY id",
        (solo, batched[0]),
    )
    assert rows == [("failed", 1, "job_worker.exceptions.MissingUserError")] * 2


def test_failure_report_rebuilds_an_equivalent_exception():
    try:
        raise RetryableJobError("later", seconds=3, ignore_retry=True)
    except RetryableJobError as exc:
        rebuilt = FailureReport.of(exc, "tb").exception()
    assert isinstance(rebuilt, RetryableJobError)
    assert (rebuilt.seconds, rebuilt.ignore_retry, str(rebuilt)) == (3, True, "later")
    assert states.exception_name(rebuilt) == "job_worker.exceptions.RetryableJobError"
    failed = FailureReport.of(FailedJobError("no"), "tb").exception()
    assert isinstance(failed, FailedJobError)
    plain = FailureReport.of(KeyError("k"), "tb").exception()
    assert states.exception_name(plain) == "KeyError" and not isinstance(plain, RetryableJobError)


def test_a_batch_commits_each_job_with_its_own_outcome(registry, run):
    ids = [
        *enqueue(registry, "record", "first"),
        *enqueue(registry, "fail", "boom"),
        *enqueue(registry, "record", "third"),
    ]
    count, outcomes = run_together(run, ids)
    assert count == 3
    assert outcomes == [(ids[0], ("done",)), (ids[1], ("failed", "pending")), (ids[2], ("done",))]
    assert effects(registry) == ["first", "third"]
    rows = query(registry, "SELECT id, state, attempts, exc_name FROM queue_job ORDER BY id")
    assert rows == [
        (ids[0], "done", 0, None),
        (ids[1], "pending", 1, "ValueError"),
        (ids[2], "done", 0, None),
    ]


def test_a_batch_whose_jobs_all_fail_records_each_failure(registry, run):
    ids = [*enqueue(registry, "fail", "one"), *enqueue(registry, "fail", "two")]
    count, outcomes = run_together(run, ids)
    assert (count, outcomes) == (2, [(i, ("failed", "pending")) for i in ids])
    rows = query(registry, "SELECT state, attempts, exc_message FROM queue_job ORDER BY id")
    assert rows == [("pending", 1, "one"), ("pending", 1, "two")]


def test_a_failed_job_of_a_batch_leaves_no_write_and_no_post_commit_action(registry, run, tmp_path):
    actions = tmp_path / "actions"
    ids = [
        *enqueue(registry, "record_then_after_commit", "kept", str(actions)),
        *enqueue(registry, "record_then_after_commit", "undone", str(actions), True),
        *enqueue(registry, "record_then_after_commit", "also kept", str(actions)),
    ]
    _count, outcomes = run_together(run, ids)
    assert [outcome[0] for _id, outcome in outcomes] == ["done", "failed", "done"]
    assert effects(registry) == ["kept", "also kept"]
    assert actions.read_text().splitlines() == ["kept", "also kept"]


def test_a_job_may_not_end_its_transaction(registry, run):
    [solo] = enqueue(registry, "commit_itself", "solo")
    assert run(solo) == ("failed", "pending")
    ids = [*enqueue(registry, "record", "before"), *enqueue(registry, "commit_itself", "batched")]
    _count, outcomes = run_together(run, ids)
    assert outcomes == [(ids[0], ("done",)), (ids[1], ("failed", "pending"))]
    assert effects(registry) == ["before"]  # neither commit_itself write was committed
    exc_names = query(
        registry, "SELECT exc_name FROM queue_job WHERE id IN (%s, %s)", (solo, ids[1])
    )
    expected = f"{TransactionOwnedError.__module__}.{TransactionOwnedError.__qualname__}"
    assert [row[0] for row in exc_names] == [expected, expected]


def test_a_batch_stops_before_a_job_with_a_timeout(registry, run):
    ids = [*enqueue(registry, "record", "short"), *enqueue(registry, "record", "timed", timeout=5)]
    count, outcomes = run_together(run, ids)
    assert (count, outcomes) == (1, [(ids[0], ("done",))])
    assert query(registry, "SELECT state FROM queue_job WHERE id = %s", (ids[1],)) == [("started",)]


def test_a_job_cancelled_before_its_turn_in_a_batch_does_not_run(registry, run, monkeypatch):
    ids = [
        *enqueue(registry, "noop"),
        *enqueue(registry, "record", "never"),
        *enqueue(registry, "noop"),
    ]
    jobs = run.claim(ids)
    with registry.cursor() as cr:
        cr.execute("UPDATE queue_job SET state = 'cancelled' WHERE id = %s", (ids[1],))
    _count, outcomes = run_together(run, ids, jobs)
    assert outcomes == [(ids[0], ("done",)), (ids[1], ("lost",)), (ids[2], ("done",))]
    assert effects(registry) == []


def test_the_executor_shows_which_job_of_a_batch_it_runs(registry, run, monkeypatch):
    from job_worker.worker import executor as executor_module

    ids = [*enqueue(registry, "noop"), *enqueue(registry, "noop")]
    seen = []
    real = executor_module.call_job

    def spy(env, call, *existing):
        seen.append(run.executor.current.value)
        return real(env, call, *existing)

    monkeypatch.setattr(executor_module, "call_job", spy)
    run_together(run, ids)
    assert seen == ids
    assert run.executor.current.value == 0  # nothing runs once the batch is reported


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # a server session to lose
def test_a_batch_whose_connection_is_lost_commits_nothing_and_counts_the_jobs_begun(
    registry, run, db_url
):
    ids = [
        *enqueue(registry, "record", "lost with the batch"),
        *enqueue(registry, "lose_connection"),
        *enqueue(registry, "record", "later"),
    ]
    jobs = run.claim(ids)
    count, outcomes = run_together(run, ids, jobs)
    # the two jobs begun count an attempt (retried in a second); the third is left to
    # the executor's loop, which runs it on a new connection
    assert count == 2
    assert [(job_id, outcome[0]) for job_id, outcome in outcomes] == [
        (ids[0], "failed"),
        (ids[1], "failed"),
    ]
    rows = query(registry, "SELECT id, state, attempts FROM queue_job ORDER BY id")
    assert rows == [(ids[0], "pending", 1), (ids[1], "pending", 1), (ids[2], "started", 0)]
    assert effects(registry) == []
    assert run.one(jobs[2]) == ("done",)
    assert effects(registry) == ["later"]


def test_a_batch_given_while_one_runs_is_kept_and_a_drain_is_for_good(registry, run):
    first, second, third = (
        *enqueue(registry, "noop"),
        *enqueue(registry, "noop"),
        *enqueue(registry, "noop"),
    )
    jobs = run.claim([first, second, third])
    executor = run.executor
    executor.conn.sent.clear()
    arriving: list[object] = [Run(0, [jobs[2]])]
    executor.conn.poll = lambda: bool(arriving)
    executor.conn.recv = lambda: arriving.pop(0)
    assert not executor._drain_requested()
    assert executor.inbox == [Run(0, [jobs[2]])]  # kept for later, not lost
    arriving.append(Drain())
    assert executor._drain_requested() and executor._drain_requested()  # for good


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite: a cancel waits
def test_a_job_cancelled_once_its_batch_began_rolls_the_batch_back(registry, run, monkeypatch):
    # its writes are in the batch's transaction: nothing of the batch may commit, and the
    # other jobs go back to pending uncounted (by the supervisor) to run again
    from job_worker.worker import executor as executor_module

    ids = [
        *enqueue(registry, "record", "first"),
        *enqueue(registry, "record", "cancelled"),
        *enqueue(registry, "fail", "boom"),
        *enqueue(registry, "record", "last"),
    ]
    jobs = run.claim(ids)
    real = executor_module.call_job

    def cancel_the_second_as_it_runs(env, call, *existing):
        result = real(env, call, *existing)
        if run.executor.current.value == ids[1]:
            with registry.cursor() as cr:
                env_ = type(env)(cr, 1, {})
                env_["queue.job"].browse(ids[1]).cancel()
        return result

    monkeypatch.setattr(executor_module, "call_job", cancel_the_second_as_it_runs)
    count, outcomes = run_together(run, ids, jobs)
    assert count == 4
    assert outcomes == [
        (ids[0], ("skipped",)),
        (ids[1], ("lost",)),
        (ids[2], ("skipped",)),
        (ids[3], ("skipped",)),
    ]
    assert effects(registry) == []
    rows = query(registry, "SELECT state, attempts FROM queue_job ORDER BY id")
    assert rows == [("started", 0), ("cancelled", 0), ("started", 0), ("started", 0)]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # round trips to count
def test_a_batch_takes_three_round_trips_and_one_more_per_job_that_talks_to_the_database(
    registry, run, monkeypatch
):
    import psycopg

    ids = [*enqueue(registry, "noop"), *enqueue(registry, "noop"), *enqueue(registry, "noop")]
    jobs = run.claim(ids)
    run.executor.warm_up()  # connected before counting
    sent = []

    def count(real):
        def spy(self, *args, **kwargs):
            cnx = getattr(self, "connection", self)
            if cnx.info.parameter_status("application_name") == "job_worker executor":
                sent.append(real.__name__)
            return real(self, *args, **kwargs)

        return spy

    monkeypatch.setattr(psycopg.Cursor, "execute", count(psycopg.Cursor.execute))
    monkeypatch.setattr(psycopg.Connection, "commit", count(psycopg.Connection.commit))
    monkeypatch.setattr(psycopg.Connection, "rollback", count(psycopg.Connection.rollback))
    _count, outcomes = run_together(run, ids, jobs)
    assert [outcome for _id, outcome in outcomes] == [("done",)] * 3
    assert sent == ["execute", "execute", "commit"]  # begin all, mark all done, commit

    more = [*enqueue(registry, "noop"), *enqueue(registry, "record", "one write")]
    jobs = run.claim(more)
    sent.clear()
    _count, outcomes = run_together(run, more, jobs)
    assert [outcome for _id, outcome in outcomes] == [("done",)] * 2
    # the writing job opens its savepoint with its first statement: one round trip more
    assert sent == ["execute", "execute", "execute", "execute", "commit"]
    assert effects(registry) == ["one write"]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # round trips to count
def test_jobs_on_records_find_them_in_the_round_trip_that_begins_their_batch(
    registry, run, monkeypatch
):
    import psycopg

    with registry.cursor() as cr:
        partners = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].create(
            [{"name": "p"}, {"name": "q"}]
        )
    ids = [
        enqueue_as(registry, SUPERUSER_ID, "res.partner", [partners.ids[0]], "ensure_one"),
        enqueue_as(registry, SUPERUSER_ID, "res.partner", [partners.ids[1]], "ensure_one"),
        enqueue_as(registry, SUPERUSER_ID, "res.partner", [999999], "ensure_one"),
    ]
    jobs = run.claim(ids)
    run.executor.warm_up()  # connected before counting
    sent: list[str] = []
    real = psycopg.Cursor.execute

    def execute(self, query, *args, **kwargs):
        if self.connection.info.parameter_status("application_name") == "job_worker executor":
            sent.append(bytes(query).decode() if isinstance(query, bytes) else str(query))
        return real(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    _count, outcomes = run_together(run, ids, jobs)
    assert [outcome for _id, outcome in outcomes] == [("done",), ("done",), ("failed", "failed")]
    # one message begins the three jobs and looks up their partners; no job looks up its
    # own (the third's is missing: it fails before its method runs)
    assert 'FROM "res_partner"' in sent[0] and "queue_job.run" in sent[0]
    assert not any('FROM "res_partner"' in text for text in sent[1:])


def test_a_job_after_one_that_talked_to_the_database_looks_its_records_up_itself(registry, run):
    with registry.cursor() as cr:
        partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].create({"name": "p"}).id
    ids = [
        enqueue_as(registry, SUPERUSER_ID, "res.partner", [partner], "unlink"),
        enqueue_as(registry, SUPERUSER_ID, "res.partner", [partner], "ensure_one"),
    ]
    _count, outcomes = run_together(run, ids)
    # the partner was there when the batch began, but the first job deleted it
    assert outcomes == [(ids[0], ("done",)), (ids[1], ("failed", "failed"))]
    [(exc_name,)] = query(registry, "SELECT exc_name FROM queue_job WHERE id = %s", (ids[1],))
    assert exc_name == "job_worker.exceptions.MissingRecordsError"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # a server session to lose
def test_a_batch_whose_connection_died_before_it_began_gives_every_job_back(registry, run):
    ids = [*enqueue(registry, "record", "one"), *enqueue(registry, "record", "two")]
    jobs = run.claim(ids)
    run.executor.warm_up()
    session_id = run.executor.sessions[0].session_id
    assert session_id
    query(registry, "SELECT pg_terminate_backend(%s)", (session_id,))
    count, outcomes = run_together(run, ids, jobs)
    assert (count, outcomes) == (2, [(ids[0], ("skipped",)), (ids[1], ("skipped",))])
    rows = query(registry, "SELECT state, attempts FROM queue_job ORDER BY id")
    assert rows == [("started", 0), ("started", 0)]  # the supervisor puts them back, uncounted
    assert effects(registry) == []


def test_a_job_with_a_timeout_runs_alone_and_says_when_it_began(registry, run):
    ids = [*enqueue(registry, "record", "timed", timeout=5), *enqueue(registry, "record", "next")]
    executor = run.executor
    executor.conn.sent.clear()
    assert executor.run(0, run.claim(ids)) == 1  # a batch of one: the next job waits
    kinds = [type(m) for m in executor.conn.sent if not isinstance(m, SessionOpened)]
    assert kinds == [Began, Finished]  # its deadline starts before it runs
    assert executor.conn.sent[-1] == Finished(0, [JobOutcome(ids[0], Outcome.DONE)])
    assert effects(registry) == ["timed"]


def test_a_timed_job_that_fails_records_its_failure_and_commits_nothing_else(registry, run):
    [job_id] = enqueue(registry, "fail", "late", timeout=5)
    assert run(job_id) == ("failed", "pending")
    assert query(registry, "SELECT state, attempts FROM queue_job") == [("pending", 1)]


def test_the_executor_gives_back_the_jobs_not_begun_at_a_drain(registry, run):
    ids = [*enqueue(registry, "noop"), *enqueue(registry, "noop"), *enqueue(registry, "noop")]
    jobs = run.claim(ids)
    executor = run.executor
    executor.conn.sent.clear()
    arriving: list[object] = [Run(0, jobs), Drain()]

    def recv() -> object:
        if not arriving:
            raise EOFError  # the supervisor is gone: the loop ends
        return arriving.pop(0)

    executor.conn.poll = lambda: bool(arriving)
    executor.conn.recv = recv
    executor.loop()
    [finished] = [m for m in executor.conn.sent if isinstance(m, Finished)]
    # the drain came before anything began: every job back, uncounted
    assert [short(o) for o in finished.outcomes] == [("skipped",)] * 3
    assert query(registry, "SELECT count(*) FROM queue_job WHERE state = 'started'") == [(3,)]
