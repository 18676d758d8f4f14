"""A finishing job hands its channel capacity to the channel's next job, in the finishing
transaction (``JobStore.finish_handing_off``): exact limits without a claim per job."""

from __future__ import annotations

import itertools
import time

import pytest
from worker_helpers import FAST, enqueue, is_postgres, query, set_limit, wait_for
from worker_helpers import states as counts

from job_worker import SUPERUSER_ID, api
from job_worker.db import jobstore
from job_worker.queue import states as states_module
from job_worker.worker import executor as executor_module
from job_worker.worker.executor import Executor
from job_worker.worker.protocol import Finished, Handing, HandOffs, Outcome, SessionOpened
from job_worker.worker.settings import WorkerSettings

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(registry, db_url):
    """The job store of PostgreSQL: SQLite claims the next job the usual way
    (``test_sqlite_hands_nothing_over``)."""
    if not is_postgres(db_url):
        pytest.skip("PostgreSQL hands capacity over; SQLite claims")
    return jobstore.for_backend(registry.backend)


@pytest.fixture
def claim(registry, store):
    session = store.session(role="supervisor")

    def claim(wanted: int = 10, worker_id: str = "w1", default_limit: int = 1):
        cr = session.cursor(registry)
        try:
            return store.claim(
                cr, worker_id=worker_id, wanted=wanted, default_limit=default_limit
            ).jobs
        finally:
            cr.close()

    yield claim
    session.close()


def finish(registry, store, jobs, worker_id="w1", default_limit=1, take=None, commit=True):
    """Finish ``jobs`` (one channel) handing their capacity on; the ids marked, the
    jobs taken over."""
    cr = registry.cursor()
    try:
        marked, handed = store.finish_handing_off(
            cr,
            [(job.id, None, 0.0) for job in jobs],
            worker_id,
            jobstore.HandOff(jobs[0].channel, take or len(jobs), default_limit),
        )
        if commit:
            cr.commit()
        return set(marked), handed
    finally:
        cr.close()


def states(registry):
    return dict(query(registry, "SELECT id, state FROM queue_job"))


def test_a_finishing_job_hands_its_slot_to_the_channel_s_next_job(registry, store, claim):
    set_limit(registry, "root", 2)
    ids = enqueue(registry, "noop", count=4)
    first, second = claim(10)
    assert [first.id, second.id] == ids[:2]
    marked, handed = finish(registry, store, [first])
    assert marked == {first.id}
    assert [job.id for job in handed] == [ids[2]]
    assert handed[0].call["method_name"] == "noop"
    assert states(registry) == {
        ids[0]: "done",
        ids[1]: "started",
        ids[2]: "started",
        ids[3]: "pending",
    }
    [[worker, started, completed]] = query(
        registry,
        "SELECT h.worker_id, h.started_at, f.completed_at FROM queue_job h, queue_job f"
        " WHERE h.id = %s AND f.id = %s",
        (ids[2], ids[0]),
    )
    assert worker == "w1" and started >= completed  # it starts once the other finished
    assert claim(10) == []  # the limit holds: two started


def test_the_next_jobs_come_in_order_and_no_more_than_finished(registry, store, claim):
    set_limit(registry, "root", 3)
    ids = enqueue(registry, "noop", count=3)
    late = enqueue(registry, "noop", priority=20, count=2)
    urgent = enqueue(registry, "noop", priority=1)
    jobs = claim(10)
    assert [j.id for j in jobs] == [*urgent, *ids[:2]]
    _marked, handed = finish(registry, store, jobs[:2])
    assert [job.id for job in handed] == [ids[2], late[0]]


def test_nothing_is_handed_over_a_lowered_limit(registry, store, claim):
    set_limit(registry, "root", 2)
    ids = enqueue(registry, "noop", count=3)
    first, _second = claim(10)
    set_limit(registry, "root", 1)
    _marked, handed = finish(registry, store, [first])
    assert handed == []  # one still runs: the channel is full at its new limit
    assert states(registry)[ids[2]] == "pending"


def test_a_heavier_next_job_waits_for_a_claim(registry, store, claim):
    set_limit(registry, "root", 2)
    [light] = enqueue(registry, "noop")
    [heavy] = enqueue(registry, "noop", weight=2)
    [job] = claim(10)
    assert job.id == light
    _marked, handed = finish(registry, store, [job])
    assert handed == []  # it frees 1: the next job weighs 2 (a claim takes it, in order)
    assert [j.id for j in claim(10)] == [heavy]


@pytest.mark.parametrize("rule", ["fair key", "rates", "backoff"])
def test_channels_whose_rules_the_claim_works_out_hand_nothing(registry, store, claim, rule):
    set_limit(registry, "root", 2, rates="100/s" if rule == "rates" else None)
    ids = enqueue(registry, "noop", count=2)
    [first, _second] = claim(10)
    if rule == "fair key":
        enqueue(registry, "noop", fair_key="tenant")
    else:
        enqueue(registry, "noop")
    if rule == "backoff":
        query(
            registry,
            "INSERT INTO queue_channel (name, backoff_until)"
            " VALUES ('root', timezone('UTC', now()) + interval '1 hour')",
        )
    _marked, handed = finish(registry, store, [first])
    assert handed == []
    assert states(registry)[ids[1]] == "started"


def test_a_rolled_back_hand_off_takes_nothing(registry, store, claim):
    set_limit(registry, "root", 1)
    ids = enqueue(registry, "noop", count=2)
    [first] = claim(10)
    marked, handed = finish(registry, store, [first], commit=False)
    assert marked == {first.id} and [job.id for job in handed] == [ids[1]]
    assert states(registry) == {ids[0]: "started", ids[1]: "pending"}


def test_another_worker_s_job_is_neither_finished_nor_its_capacity_handed(registry, store, claim):
    set_limit(registry, "root", 1)
    ids = enqueue(registry, "noop", count=2)
    [first] = claim(10, worker_id="other")
    marked, handed = finish(registry, store, [first], worker_id="w1")
    assert marked == set() and handed == []
    assert states(registry) == {ids[0]: "started", ids[1]: "pending"}


def test_a_claim_and_hand_offs_together_never_pass_the_limit(registry, store, claim):
    """A claim that runs while jobs finish counts them as started; each hand-off takes
    no more than what its own jobs free, even with room to take more as it sees it."""
    set_limit(registry, "root", 3)
    enqueue(registry, "noop", count=10)
    first, second = claim(2)  # one slot left
    one, two = registry.cursor(), registry.cursor()
    try:
        _marked, handed = store.finish_handing_off(
            one, [(first.id, None, 0.0)], "w1", jobstore.HandOff("root", 2, 1)
        )
        assert len(handed) == 1  # it sees room for two, but freed one
        assert len(claim(10, worker_id="w2")) == 1  # the free slot: the claim sees first started
        _marked, handed = store.finish_handing_off(
            two, [(second.id, None, 0.0)], "w1", jobstore.HandOff("root", 2, 1)
        )
        assert len(handed) == 1  # one job freed, no more room than that
        one.commit()
        two.commit()
    finally:
        one.close()
        two.close()
    started = query(registry, "SELECT count(*) FROM queue_job WHERE state = 'started'")
    assert started == [(3,)]


def serial(jobs, take, default_limit=1):
    """The hand-off of a slot's run: ``jobs`` (committed started) free their weight."""
    return jobstore.HandOff(
        jobs[0].channel, take, default_limit, tuple(job.id for job in jobs), serial=True
    )


def test_a_slot_s_run_takes_jobs_to_run_one_after_the_other_unseen_by_other_claims(
    registry, store, claim
):
    set_limit(registry, "root", 1)
    ids = enqueue(registry, "noop", count=3)
    [timed] = enqueue(registry, "noop", timeout=60)
    last = enqueue(registry, "noop", count=2)
    [first] = claim(10)
    cr = registry.cursor()
    try:
        marked, taken = store.finish_handing_off(
            cr, [(first.id, None, 0.0)], "w1", serial([first], 10)
        )
        # each fits in the slot alone; a job with a timeout ends the run (a batch of its own)
        assert set(marked) == {first.id} and [job.id for job in taken] == ids[1:]
        # the others see the slot held by the first job, and the jobs taken as pending
        assert states(registry) == {
            **dict.fromkeys([*ids, timed, *last], "pending"),
            first.id: "started",
        }
        assert claim(10, worker_id="w2") == []
        marked, taken = store.finish_handing_off(
            cr, [(ids[1], None, 0.0), (ids[2], None, 0.0)], "w1", serial([first], 10)
        )
        assert set(marked) == {ids[1], ids[2]} and taken == []  # a timeout ends the run
        # the end of the run hands the slot on: the job with a timeout, committed started
        marked, handed = store.finish_handing_off(
            cr, [], "w1", jobstore.HandOff("root", 1, 1, (first.id,))
        )
        assert [job.id for job in handed] == [timed]
        cr.commit()
    finally:
        cr.close()
    assert states(registry) == {
        **dict.fromkeys(ids, "done"),
        timed: "started",
        **dict.fromkeys(last, "pending"),
    }


def test_a_slot_s_run_takes_no_job_heavier_than_its_slot_nor_past_a_lowered_limit(
    registry, store, claim
):
    set_limit(registry, "root", 2)
    [light] = enqueue(registry, "noop")
    [other] = enqueue(registry, "noop")
    [next_light] = enqueue(registry, "noop")
    [heavy] = enqueue(registry, "noop", weight=2)
    first, second = claim(10)
    assert (first.id, second.id) == (light, other)
    cr = registry.cursor()
    try:
        _marked, taken = store.finish_handing_off(
            cr, [(first.id, None, 0.0)], "w1", serial([first], 10)
        )
        assert [job.id for job in taken] == [next_light]  # the heavy one stops the line
        assert heavy not in {job.id for job in taken}
    finally:
        cr.close()
    set_limit(registry, "root", 1)  # the other job fills the channel at its new limit
    cr = registry.cursor()
    try:
        _marked, taken = store.finish_handing_off(
            cr, [(first.id, None, 0.0)], "w1", serial([first], 10)
        )
        assert taken == []
    finally:
        cr.close()


def test_a_hand_off_reads_a_few_rows_however_many_jobs_of_its_channel_are_done(
    registry, store, claim
):
    """The finished jobs are found by their ids. Found by their state and channel too, the
    statement's kept plan, made while the channel had few done jobs, read every done job
    of the channel at each hand-off: 4 ms instead of 0.7 after 8,000 of them."""
    set_limit(registry, "root", 1)
    enqueue(registry, "noop", count=2012)
    query(registry, "ANALYZE queue_job")  # statistics of a channel without done jobs
    query(
        registry,
        "UPDATE queue_job SET state = 'done' WHERE id IN"
        " (SELECT id FROM queue_job ORDER BY id LIMIT 2000)",
    )
    [job] = claim(10)
    session = store.session(role="executor")  # one connection: its statements prepared once
    fetched = "SELECT idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relname = 'queue_job'"
    try:
        for _ in range(10):  # past the executions a prepared statement plans for its values
            cr = session.cursor(registry)
            try:
                cr.execute(fetched)
                [(before,)] = cr.fetchall()
                _marked, handed = store.finish_handing_off(
                    cr, [(job.id, None, 0.0)], "w1", jobstore.HandOff("root", 1, 1)
                )
                cr.execute(fetched)
                [(after,)] = cr.fetchall()
                cr.commit()
            finally:
                cr.close()
            assert after - before < 50, f"{after - before} rows read to hand one slot on"
            [job] = handed
    finally:
        session.close()


def test_jobs_a_claim_picked_are_marked_started_reading_a_few_rows_however_many_wait(
    registry, store
):
    """The claim that serves fair channels marks the jobs it picked by their ids. Found
    by their state too, its plan, made while few jobs were pending by the statistics,
    read every pending job at each claim."""
    query(registry, "ANALYZE queue_job")  # statistics of a queue without pending jobs
    ids = enqueue(registry, "noop", count=2000, fair_key="tenant")
    session = store.session(role="supervisor")
    fetched = "SELECT idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relname = 'queue_job'"
    cr = session.cursor(registry)
    try:
        now = store.now(cr)
        for picked in (ids[:4], ids[4:8], ids[8:9]):
            cr.execute(fetched)
            [(before,)] = cr.fetchall()
            marked = store._mark_started(cr, picked, "w1", now)
            cr.execute(fetched)
            [(after,)] = cr.fetchall()
            assert [job.id for job in marked] == picked
            assert after - before < 50, f"{after - before} rows read to mark {len(picked)}"
        cr.commit()
    finally:
        cr.close()
        session.close()


def test_dependents_are_released_reading_a_few_rows_however_many_wait(registry, store):
    """The same for the statements of graphs given the ids of jobs: a parent that ends
    releases its dependents by their ids, not through the waiting jobs."""
    query(registry, "ANALYZE queue_job")  # statistics of a queue without waiting jobs
    ids = enqueue(registry, "noop", count=2000)
    query(registry, "UPDATE queue_job SET state = 'waiting'")
    fetched = "SELECT idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relname = 'queue_job'"
    cr = registry.cursor()  # a connection of the pool: it prepares what it runs often
    try:
        for first in range(0, 36, 3):  # past the executions planned for their values
            cr.execute(fetched)
            [(before,)] = cr.fetchall()
            store.release(cr, ids[first : first + 3])
            cr.execute(fetched)
            [(after,)] = cr.fetchall()
            assert after - before < 50, f"{after - before} rows read to release 3"
        cr.commit()
    finally:
        cr.close()
    assert counts(registry) == {"pending": 36, "waiting": 1964}


def test_sqlite_hands_nothing_over(registry, db_url):
    if is_postgres(db_url):
        pytest.skip("SQLite's store")
    store = jobstore.for_backend(registry.backend)
    set_limit(registry, "root", 1)
    ids = enqueue(registry, "noop", count=2)
    with store.session(role="supervisor").cursor(registry) as cr:
        [first] = store.claim(cr, worker_id="w1", wanted=5, default_limit=1).jobs
    with registry.cursor() as cr:
        marked, handed = store.finish_handing_off(
            cr, [(first.id, None, 0.0)], "w1", jobstore.HandOff("root", 1, 1)
        )
    assert set(marked) == {first.id} and handed == []
    assert states(registry) == {ids[0]: "done", ids[1]: "pending"}


class Pipe:
    """What the executor sends, but the session it opened."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, message: object) -> None:
        if not isinstance(message, SessionOpened):
            self.sent.append(message)

    def poll(self) -> bool:
        return False


@pytest.fixture
def executor(db_url, store):
    hand_offs = HandOffs([0.0, 0.0])
    made = Executor(
        WorkerSettings(databases=(db_url,), modules=("workerapp",)), "w1", Pipe(), None, hand_offs
    )
    yield made
    made.close()


def test_an_executor_allowed_to_hands_its_slot_on_and_says_so_before_it_commits(
    registry, store, claim, executor, monkeypatch
):
    monkeypatch.setattr(executor_module, "COMMIT_EVERY", 0.0)  # no time for a slot's run
    set_limit(registry, "root", 1)
    ids = enqueue(registry, "noop", count=3)
    [first] = claim(10)
    executor.hand_offs.grant(0, time.monotonic() + 60, 1)
    assert executor.run(0, [first]) == 1
    handing, finished = executor.conn.sent
    assert isinstance(handing, Handing) and (handing.after, [j.id for j in handing.jobs]) == (
        1,
        [ids[1]],
    )
    assert isinstance(finished, Finished) and finished.outcomes[0].outcome is Outcome.DONE
    assert [job.id for job in executor.handed] == [ids[1]]
    assert states(registry) == {ids[0]: "done", ids[1]: "started", ids[2]: "pending"}
    second = executor.handed
    executor.conn.sent.clear()
    executor.hand_offs.revoke()
    assert executor.run(0, second) == 1  # no longer allowed: the slot frees for a claim
    assert [type(m) for m in executor.conn.sent] == [Finished]
    assert states(registry)[ids[2]] == "pending"


def test_an_executor_hands_nothing_on_while_not_allowed_or_asked_to_drain(
    registry, store, claim, executor, monkeypatch
):
    monkeypatch.setattr(executor_module, "COMMIT_EVERY", 0.0)
    set_limit(registry, "root", 1)
    ids = enqueue(registry, "noop", count=3)
    [first] = claim(10)
    assert executor.run(0, [first]) == 1  # never granted
    assert [type(m) for m in executor.conn.sent] == [Finished] and executor.handed == []
    [second] = claim(10)
    executor.hand_offs.grant(0, time.monotonic() + 60, 1)
    executor.draining = True  # the worker stops: what it gives back, it does not take
    executor.run(0, [second])
    assert states(registry)[ids[2]] == "pending" and executor.handed == []


def test_an_executor_runs_the_channel_s_next_jobs_in_its_transaction_then_hands_the_slot_on(
    registry, store, claim, executor
):
    set_limit(registry, "root", 1)
    ids = enqueue(registry, "record", "job-{i}", count=4)
    [first] = claim(10)
    executor.hand_offs.grant(0, time.monotonic() + 60, 1)
    assert executor.run(0, [first]) == 1
    *handings, finished = executor.conn.sent
    assert all(isinstance(m, Handing) for m in handings) and isinstance(finished, Finished)
    taken = [job.id for m in handings for job in m.jobs]
    assert taken == ids[1:]
    assert handings[0].after == 1  # each right after the jobs run so far
    assert [o.job_id for o in finished.outcomes] == ids
    assert all(o.outcome is Outcome.DONE for o in finished.outcomes)
    assert set(states(registry).values()) == {"done"} and executor.handed == []
    rows = query(
        registry,
        "SELECT started_at, completed_at FROM queue_job ORDER BY started_at",
    )
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(rows))  # dated one at a time
    effects = query(registry, "SELECT name FROM workerapp_effect ORDER BY id")
    assert [name for (name,) in effects] == [f"job-{i}" for i in range(4)]


def test_a_slot_s_run_that_finds_no_job_commits_without_looking_again(
    registry, store, claim, executor, monkeypatch
):
    """Jobs that come one at a time: the round trip that marks the job done finds no
    job for its slot, and the commit follows without a hand-off of its own (the
    supervisor claims when the outcome comes, as after any job)."""
    set_limit(registry, "root", 1)
    [job_id] = enqueue(registry, "noop")
    [job] = claim(10)
    executor.hand_offs.grant(0, time.monotonic() + 60, 1)
    looked: list[list[int]] = []
    mark_done_handing_off = states_module.mark_done_handing_off

    def counted(cr, finished, **kwargs):
        looked.append([row[0] for row in finished])
        return mark_done_handing_off(cr, finished, **kwargs)

    monkeypatch.setattr(states_module, "mark_done_handing_off", counted)
    assert executor.run(0, [job]) == 1
    assert looked == [[job_id]]  # the slot's run's one step, nothing at the commit
    [finished] = executor.conn.sent
    assert isinstance(finished, Finished) and finished.outcomes[0].outcome is Outcome.DONE
    assert executor.handed == [] and states(registry) == {job_id: "done"}


def test_a_job_of_a_slot_s_run_that_fails_is_recorded_and_the_run_goes_on(
    registry, store, claim, executor
):
    """A failure rolls back to the job's savepoint and is recorded in the run's
    transaction, as in any batch; the jobs after it run; a dependent the run's jobs
    release is pending by the run's end, and the slot is handed to it."""
    set_limit(registry, "root", 1)
    with registry.cursor() as cr:  # one commit: the first claim finds them all
        task = api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"]
        first = task.with_delay().record("first").id
        failing = task.with_delay(max_retries=1).fail("boom").id
        parent, child = task.delayable().record("parent"), task.delayable().record("child")
        parent.on_done(child)
        parent.delay()
        last = task.with_delay().record("last").id
    [job] = claim(10)
    assert job.id == first
    executor.hand_offs.grant(0, time.monotonic() + 60, 1)
    executor.run(0, [job])
    finished = executor.conn.sent[-1]
    outcomes = {o.job_id: o.outcome for o in finished.outcomes}
    assert outcomes[failing] is Outcome.FAILED
    assert outcomes[first] is outcomes[last] is outcomes[parent._job.id] is Outcome.DONE
    assert child._job.id not in outcomes  # waiting when the run's last take looked
    assert [j.id for j in executor.handed] == [child._job.id]  # the slot, at the commit
    assert states(registry)[child._job.id] == "started"
    executor.run(0, executor.handed)
    [(state, attempts, exc_name)] = query(
        registry, "SELECT state, attempts, exc_name FROM queue_job WHERE id = %s", (failing,)
    )
    assert (state, attempts, exc_name) == ("pending", 1, "ValueError")
    effects = query(registry, "SELECT name FROM workerapp_effect ORDER BY id")
    assert [name for (name,) in effects] == ["first", "parent", "last", "child"]
    assert query(registry, "SELECT count(*) FROM queue_job WHERE state = 'started'") == [(0,)]


def test_a_batch_whose_job_was_cancelled_while_it_ran_rolls_back_what_its_run_took(
    registry, store, claim, executor
):
    """The round trip that marks the batch's job done and takes the next ones finds the
    job cancelled meanwhile: the transaction rolls back, and the jobs it took are
    pending again, never announced."""
    set_limit(registry, "root", 1)
    ids = enqueue(registry, "noop", count=3)
    [first] = claim(10)
    executor.hand_offs.grant(0, time.monotonic() + 60, 1)
    run = executor._run_in_savepoint

    def run_then_cancel(cr, job, finished, existing=None):
        outcome = run(cr, job, finished, existing)
        query(registry, "UPDATE queue_job SET state = 'cancelled' WHERE id = %s", (job.id,))
        return outcome

    executor._run_in_savepoint = run_then_cancel
    executor.run(0, [first])
    assert [type(m) for m in executor.conn.sent] == [Finished]  # nothing taken was announced
    assert [(o.job_id, o.outcome) for o in executor.conn.sent[0].outcomes] == [
        (first.id, Outcome.LOST)
    ]
    assert states(registry) == {ids[0]: "cancelled", ids[1]: "pending", ids[2]: "pending"}
    assert executor.handed == []


def test_a_slot_s_run_gives_back_the_jobs_it_took_and_did_not_run_when_asked_to_drain(
    registry, store, claim, executor
):
    set_limit(registry, "root", 1)
    ids = enqueue(registry, "noop", count=4)
    [first] = claim(10)
    executor.hand_offs.grant(0, time.monotonic() + 60, 1)
    asked = executor._drain_requested

    def drain_after_the_take() -> bool:  # the supervisor stops while the run goes on
        if any(isinstance(m, Handing) for m in executor.conn.sent):
            executor.draining = True
        return asked()

    executor._drain_requested = drain_after_the_take
    executor.run(0, [first])
    finished = executor.conn.sent[-1]
    assert isinstance(executor.conn.sent[0], Handing) and isinstance(finished, Finished)
    outcomes = {o.job_id: o.outcome for o in finished.outcomes}
    assert outcomes[first.id] is Outcome.DONE
    lost = [job_id for job_id, outcome in outcomes.items() if outcome is Outcome.LOST]
    assert lost and set(lost) <= set(ids[1:])
    assert {states(registry)[job_id] for job_id in lost} == {"pending"}
    assert query(registry, "SELECT count(*) FROM queue_job WHERE state = 'started'") == [(0,)]


@pytest.mark.timeout(120)
def test_a_worker_drains_a_limit_bound_channel_by_hand_offs_yet_serves_a_better_job_first(
    registry, db_url, start_worker
):
    if not is_postgres(db_url):
        pytest.skip("PostgreSQL hands capacity over; SQLite claims")
    set_limit(registry, "root", 1)
    set_limit(registry, "other", 1)
    enqueue(registry, "sleep_then_record", "slow-{i}", 0.01, count=400)
    worker = start_worker("--concurrency", "1", "--log-level", "debug", *FAST)
    wait_for(lambda: counts(registry).get("done", 0) >= 50, 60, "the drain under way")
    [urgent] = enqueue(registry, "record", "urgent", priority=1, channel="other")
    wait_for(lambda: states(registry).get(urgent) == "done", 10, "the better job done")
    left = query(registry, "SELECT count(*) FROM queue_job WHERE state = 'pending'")[0][0]
    assert left > 100  # it did not wait for the backlog: the wake-up ended the hand-offs
    wait_for(lambda: counts(registry).get("done", 0) == 401, 60, "the backlog done")
    rows = query(registry, "SELECT started_at, completed_at FROM queue_job WHERE channel = 'root'")
    starts = sorted(rows)
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(starts))  # one at a time
    dispatched = worker.log().count("given to executor")
    assert dispatched < 100  # most jobs came by hand-off, not by a claim of the supervisor


@pytest.mark.timeout(120)
def test_jobs_taken_over_survive_a_cancel_check_around_the_taking_commit(
    registry, db_url, start_worker
):
    """A cancel check every few milliseconds reads jobs taken over by a transaction just
    before it commits: such a read must not get the executor that runs them killed (the
    job then stayed started by a live worker, never to run)."""
    if not is_postgres(db_url):
        pytest.skip("PostgreSQL hands capacity over; SQLite claims")
    set_limit(registry, "root", 16)
    enqueue(registry, "noop", count=10_000)
    worker = start_worker(
        "--concurrency", "2", "--batch", "8", "--cancel-check-interval", "0.005", *FAST
    )
    done = 0
    while done < 10_000:  # progress, or a stuck job, seen within seconds
        before = done
        done = wait_for(
            lambda before=before: (n := counts(registry).get("done", 0)) > before and n,
            15,
            f"progress past {before} done jobs",
            interval=0.2,
        )
    assert "cancel_kill" not in worker.log() and "cancelled while running" not in worker.log()


@pytest.mark.timeout(120)
def test_a_job_that_kills_its_executor_in_a_slot_s_run_has_its_attempts_counted(
    registry, db_url, start_worker
):
    """The crash comes after a job of its channel, at a limit of 1: a slot's run takes
    it, in a transaction that never commits. Each death counts an attempt all the
    same, and the job fails once its retries are spent; the other jobs run once."""
    if not is_postgres(db_url):
        pytest.skip("PostgreSQL hands capacity over; SQLite claims")
    set_limit(registry, "root", 1)
    with registry.cursor() as cr:  # one commit: the first claim finds them all
        task = api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"]
        for i in range(3):
            task.with_delay().record(f"before-{i}")
        crash = task.with_delay(max_retries=1).crash().id
        for i in range(3):
            task.with_delay().record(f"after-{i}")
    worker = start_worker("--concurrency", "1", *FAST)
    wait_for(lambda: counts(registry) == {"done": 6, "failed": 1}, 60, "the jobs, the crash failed")
    [(attempts, exc_name)] = query(
        registry, "SELECT attempts, exc_name FROM queue_job WHERE id = %s", (crash,)
    )
    assert (attempts, exc_name) == (2, "job_worker.exceptions.WorkerDiedJobError")
    deaths = [line for line in worker.log().splitlines() if "(died)" in line]
    assert len(deaths) == 2 and "now pending" in deaths[0] and "now failed" in deaths[1]
    effects = query(registry, "SELECT name FROM workerapp_effect ORDER BY name")
    assert [name for (name,) in effects] == sorted(
        [*(f"before-{i}" for i in range(3)), *(f"after-{i}" for i in range(3))]
    )


@pytest.mark.timeout(120)
def test_slots_runs_of_several_executors_never_pass_the_channel_s_limit(
    registry, db_url, start_worker
):
    """Four executors drain a channel limited to 2 by slots' runs: the database never
    shows more than 2 jobs started, and the jobs' own dates never overlap more than 2
    deep (a run's jobs are dated when their code ran, not when their batch was written)."""
    if not is_postgres(db_url):
        pytest.skip("PostgreSQL hands capacity over; SQLite claims")
    set_limit(registry, "root", 2)
    enqueue(registry, "noop", count=3_000)
    start_worker("--concurrency", "4", *FAST)
    most = 0
    while (done := counts(registry).get("done", 0)) < 3_000:
        [(started,)] = query(registry, "SELECT count(*) FROM queue_job WHERE state = 'started'")
        most = max(most, started)
        assert started <= 2, f"{started} jobs started with {done} done"
    rows = query(registry, "SELECT started_at, completed_at FROM queue_job")
    events = sorted([(start, 1) for start, _ in rows] + [(end, -1) for _, end in rows])
    depth = deepest = 0
    for _at, step in events:  # an end at the same instant as a start comes first
        depth += step
        deepest = max(deepest, depth)
    assert most >= 1 and deepest <= 2


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_executors_killed_in_slots_runs_lose_and_double_nothing(registry, db_url, start_worker):
    """A limit-bound drain by slots' runs while executors are killed one after the other:
    every job ends done, its effect committed once (a run dies uncommitted: its jobs
    are pending again, the batch's own given back), and the limit is never passed."""
    if not is_postgres(db_url):
        pytest.skip("PostgreSQL hands capacity over; SQLite claims")
    import os
    import random
    import signal

    set_limit(registry, "root", 2)
    total = 3_000
    with registry.cursor() as cr:
        task = api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"]
        for i in range(total):  # retried however often they are killed
            task.with_delay(max_retries=0).record(f"job-{i}")
    worker = start_worker("--concurrency", "2", *FAST)
    rng = random.Random(7)
    kills = 0
    while (done := counts(registry).get("done", 0)) < total:
        [(started,)] = query(registry, "SELECT count(*) FROM queue_job WHERE state = 'started'")
        assert started <= 2, f"{started} jobs started with {done} done"
        if kills < 12 and done > kills * total // 16:
            pids = worker.executor_pids()
            if pids:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
        time.sleep(0.01)  # a look at the database every 10 ms, the kills spread over the drain
    assert kills == 12
    assert counts(registry) == {"done": total}
    names = query(registry, "SELECT name, count(*) FROM workerapp_effect GROUP BY name")
    assert len(names) == total and {n for _name, n in names} == {1}
    assert worker.proc.poll() is None
