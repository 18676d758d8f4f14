"""The job store's named operations, one conformance suite over both databases."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from worker_helpers import enqueue, query, set_limit

from job_worker import SUPERUSER_ID, api
from job_worker.db import jobstore
from job_worker.db.postgres import PostgresBackend
from job_worker.orm.fields import Datetime
from job_worker.queue import states

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["at once", "in steps"])
def store(request, registry, monkeypatch):
    """The job store; on PostgreSQL each test runs twice: with the claim in one statement
    where it applies, and with every claim in steps (lock and state, then the take)."""
    store = jobstore.for_backend(registry.backend)
    if request.param == "in steps":
        if not isinstance(registry.backend, PostgresBackend):
            pytest.skip("SQLite claims in steps only")
        monkeypatch.setattr(type(store), "_claim_at_once", lambda self, *args: None)
    return store


@pytest.fixture
def claim(registry, store):
    session = store.session(role="supervisor")

    def claim(wanted: int = 10, worker_id: str = "w1", default_limit: int = 1, channels=None):
        cr = session.cursor(registry)
        try:
            return store.claim(
                cr,
                worker_id=worker_id,
                wanted=wanted,
                default_limit=default_limit,
                channels=channels,
            )
        finally:
            cr.close()

    yield claim
    session.close()


def test_claim_orders_by_priority_then_due_time_then_id(registry, claim):
    set_limit(registry, "root", 10)
    now = Datetime.now()
    late = enqueue(registry, "noop", priority=5)
    early_due = enqueue(registry, "noop", priority=5, eta=now - timedelta(seconds=30))
    urgent = enqueue(registry, "noop", priority=1)
    second = enqueue(registry, "noop", priority=5)
    jobs = claim(10).jobs
    assert [j.id for j in jobs] == [*urgent, *early_due, *late, *second]
    assert {row[0] for row in query(registry, "SELECT state FROM queue_job")} == {"started"}


def test_future_jobs_are_invisible_until_due(registry, claim):
    enqueue(registry, "noop", eta=timedelta(seconds=60))
    result = claim(5)
    assert result.jobs == []
    assert result.retry_in is not None and 55 < result.retry_in <= 60


def test_claim_marks_jobs_started_by_the_worker(registry, claim):
    [job_id] = enqueue(registry, "noop")
    [job] = claim(1, worker_id="me").jobs
    assert job.id == job_id and job.call["method_name"] == "noop"
    state, worker, started, heartbeat = query(
        registry, "SELECT state, worker_id, started_at, heartbeat FROM queue_job"
    )[0]
    assert (state, worker) == ("started", "me") and started and heartbeat


def test_channel_limit_counts_running_jobs(registry, claim):
    set_limit(registry, "root", 2)
    enqueue(registry, "noop", count=5)
    assert len(claim(10).jobs) == 2
    assert claim(10).jobs == []  # both still running


def test_channel_without_row_uses_the_default_limit(registry, claim):
    enqueue(registry, "noop", count=5, channel="free")
    assert len(claim(10, default_limit=3).jobs) == 3


def test_limit_zero_pauses_a_channel_and_others_still_run(registry, claim):
    set_limit(registry, "paused", 0)
    set_limit(registry, "root", 5)
    enqueue(registry, "noop", count=3, channel="paused")
    other = enqueue(registry, "noop", count=2)
    assert sorted(j.id for j in claim(10).jobs) == other


def test_a_full_channel_never_blocks_others(registry, claim):
    set_limit(registry, "busy", 1)
    set_limit(registry, "root", 5)
    busy = enqueue(registry, "noop", count=3, channel="busy", priority=0)
    other = enqueue(registry, "noop", count=2, priority=9)
    first = claim(10).jobs
    assert [j.id for j in first] == [busy[0], *other]
    assert claim(10).jobs == []


def test_rate_limit_spaces_starts_by_one_over_rate(registry, claim):
    set_limit(registry, "rated", 10, rate_limit=4)
    enqueue(registry, "noop", count=5, channel="rated")
    assert len(claim(10).jobs) == 1
    again = claim(10)
    assert again.jobs == [] and again.retry_in is not None and 0 < again.retry_in <= 0.25


def _weigh(registry, job_ids, weight: int) -> None:
    with registry.cursor() as cr:
        for job_id in job_ids:
            cr.execute("UPDATE queue_job SET weight = %s WHERE id = %s", (weight, job_id))


def test_a_limit_counts_the_weights_of_running_jobs(registry, claim):
    set_limit(registry, "video", 10)
    heavy = enqueue(registry, "noop", channel="video", count=2)
    _weigh(registry, heavy, 4)
    light = enqueue(registry, "noop", channel="video", count=5)
    # 4 + 4 + 1 + 1 = 10: the third light job would pass the limit
    assert [j.id for j in claim(10).jobs] == [*heavy, *light[:2]]
    assert claim(10).jobs == []
    assert query(registry, "SELECT sum(weight) FROM queue_job WHERE state = 'started'")[0][0] == 10


def test_a_heavy_job_at_the_head_is_not_overtaken_by_lighter_ones(registry, store, claim):
    set_limit(registry, "video", 10)
    first = enqueue(registry, "noop", channel="video", count=3)
    [heavy] = enqueue(registry, "noop", channel="video")
    _weigh(registry, [heavy], 8)
    behind = enqueue(registry, "noop", channel="video", count=3)
    assert [j.id for j in claim(10).jobs] == first  # 3 running: 8 does not fit in 7
    assert claim(10).jobs == []  # the light jobs behind it wait too
    with registry.cursor() as cr:  # one light job ends: 2 running, 8 fits
        store.finish(cr, [(first[0], None, 0.1)], "w1")
    assert [j.id for j in claim(10).jobs] == [heavy]
    assert claim(10).jobs == []  # 2 + 8 = 10
    with registry.cursor() as cr:
        store.finish(cr, [(heavy, None, 0.1)], "w1")
    assert [j.id for j in claim(10).jobs] == behind


def test_a_job_heavier_than_the_limit_stops_its_channel_only(registry, claim):
    set_limit(registry, "video", 5)
    [heavy] = enqueue(registry, "noop", channel="video")
    _weigh(registry, [heavy], 8)
    enqueue(registry, "noop", channel="video")
    other = enqueue(registry, "noop", channel="root")
    assert [j.id for j in claim(10).jobs] == other


def test_rate_windows_stack_and_each_holds(registry, claim):
    set_limit(registry, "api", 10, rates="3/s 4/min")
    enqueue(registry, "noop", count=10, channel="api")
    assert len(claim(10).jobs) == 3  # 3/s
    full = claim(10)
    assert full.jobs == [] and full.retry_in is not None and 0 < full.retry_in <= 1.0
    with registry.cursor() as cr:  # the first second is over for the log
        cr.execute(
            "UPDATE queue_channel_start SET started_at = started_at - interval '2 seconds'"
            if registry.backend.dialect == "postgresql"
            else "UPDATE queue_channel_start SET started_at = datetime(started_at, '-2 seconds')"
        )
    second = claim(10)
    assert len(second.jobs) == 1  # 4/min: one left in the minute
    third = claim(10)
    assert third.jobs == [] and third.retry_in is not None and 55 < third.retry_in <= 60
    assert query(registry, "SELECT count(*) FROM queue_channel_start")[0][0] == 4


def test_starts_that_left_every_window_are_forgotten(registry, claim):
    set_limit(registry, "api", 10, rates="5/s")
    enqueue(registry, "noop", count=6, channel="api")
    assert len(claim(2).jobs) == 2
    with registry.cursor() as cr:
        cr.execute("UPDATE queue_channel_start SET started_at = %s", (datetime(2000, 1, 1),))
    assert len(claim(10).jobs) == 4
    assert query(registry, "SELECT count(*) FROM queue_channel_start")[0][0] == 4


def test_the_maintenance_forgets_starts_older_than_any_window(registry, claim):
    set_limit(registry, "api", 10, rates="5/s")
    enqueue(registry, "noop", count=2, channel="api")
    assert len(claim(2).jobs) == 2
    with registry.cursor() as cr:
        cr.execute("UPDATE queue_channel_start SET started_at = %s", (datetime(2000, 1, 1),))
        counters = api.Environment(cr, SUPERUSER_ID, {})["queue.maintenance"]._run_maintenance({})
    assert counters["starts_forgotten"] == 2
    assert query(registry, "SELECT count(*) FROM queue_channel_start")[0][0] == 0


def _keyed(registry, key: str, count: int, channel: str = "shared", **options) -> list[int]:
    ids = enqueue(registry, "noop", count=count, channel=channel, **options)
    with registry.cursor() as cr:
        for job_id in ids:
            cr.execute("UPDATE queue_job SET fair_key = %s WHERE id = %s", (key, job_id))
    return ids


def _keys_of(registry, jobs) -> list[str]:
    keys = dict(query(registry, "SELECT id, fair_key FROM queue_job"))
    return [keys[job.id] for job in jobs]


def _one_by_one(claim, count: int) -> list:
    started = []
    for _ in range(count):
        started.extend(claim(1, default_limit=1000).jobs)
    return started


def test_fair_keys_take_turns_at_equal_priority(registry, claim):
    _keyed(registry, "a", 10)
    _keyed(registry, "b", 3)
    _keyed(registry, "c", 3)
    started = _one_by_one(claim, 12)
    assert _keys_of(registry, started) == [*"abcabcabc", "a", "a", "a"]


def test_a_claim_of_several_jobs_gives_each_key_a_turn_first(registry, claim):
    _keyed(registry, "a", 10)
    _keyed(registry, "b", 2)
    first = claim(3, default_limit=1000).jobs
    assert sorted(_keys_of(registry, first)) == ["a", "a", "b"]
    second = claim(3, default_limit=1000).jobs
    assert sorted(_keys_of(registry, second)) == ["a", "a", "b"]


def test_fair_share_serves_the_best_priority_first(registry, claim):
    _keyed(registry, "a", 3, priority=10)
    [urgent] = _keyed(registry, "b", 1, priority=1)
    assert [job.id for job in claim(1, default_limit=1000).jobs] == [urgent]


def test_a_weighted_key_gets_as_many_turns_a_round(registry, store, claim):
    _keyed(registry, "a", 6)
    _keyed(registry, "b", 6)
    with registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["queue.fair.key"].set_weight("shared", "a", 2)
    assert _keys_of(registry, _one_by_one(claim, 6)) == [*"aabaab"]


def test_jobs_without_a_key_share_one_turn(registry, claim):
    _keyed(registry, "a", 4)
    _keyed(registry, "b", 4)
    plain = enqueue(registry, "noop", count=4, channel="shared")
    started = _one_by_one(claim, 6)
    assert _keys_of(registry, started) == ["a", "b", "", "a", "b", ""]
    assert [job.id for job in started if job.id in plain] == plain[:2]


def test_a_key_with_few_jobs_is_not_held_behind_a_big_one(registry, store, claim):
    set_limit(registry, "shared", 2)
    big = _keyed(registry, "big", 300)
    small = set(_keyed(registry, "small", 20))
    started: list[int] = []
    while small - set(started):
        jobs = claim(2).jobs
        assert jobs, "a claim with room took nothing"
        started.extend(job.id for job in jobs)
        with registry.cursor() as cr:
            store.finish(cr, [(job.id, None, 0.0) for job in jobs], "w1")
    assert len(started) <= 40 and started[0] == big[0]


def test_fair_channels_and_plain_channels_share_a_claim(registry, claim):
    set_limit(registry, "root", 5)
    _keyed(registry, "a", 2, priority=5)
    plain = enqueue(registry, "noop", count=2, channel="root", priority=1)
    jobs = claim(3, default_limit=1000).jobs
    assert [job.id for job in jobs][:2] == plain
    assert len(jobs) == 3


def test_a_heavy_job_of_a_fair_key_waits_for_room_at_its_turn(registry, claim):
    set_limit(registry, "shared", 4)
    [heavy] = _keyed(registry, "a", 1)
    _weigh(registry, [heavy], 4)
    _keyed(registry, "b", 3)
    jobs = claim(4).jobs
    assert [job.id for job in jobs] == [heavy]


def test_channels_filter(registry, claim):
    set_limit(registry, "a", 5)
    set_limit(registry, "b", 5)
    enqueue(registry, "noop", channel="a")
    b = enqueue(registry, "noop", channel="b")
    assert [j.id for j in claim(10, channels=["b"]).jobs] == b


def test_begin_job_refuses_a_job_no_longer_started_by_the_worker(registry, store, claim):
    [job_id] = enqueue(registry, "noop")
    claim(1, worker_id="me")
    session = store.session(role="executor")
    try:
        cr = session.cursor(registry)
        assert store.begin_job(cr, job_id, "me")
        cr.rollback()
        assert not store.begin_job(cr, job_id, "someone-else")
        cr.rollback()
        query(registry, "UPDATE queue_job SET state = 'cancelled'")
        assert not store.begin_job(cr, job_id, "me")
        cr.close()
    finally:
        session.close()


def test_begin_jobs_reading_runs_the_read_after_the_check_in_the_same_transaction(
    registry, store, claim
):
    ids = enqueue(registry, "noop", count=2, channel="x")
    set_limit(registry, "x", 2)
    claim(2, worker_id="me")
    query(registry, "UPDATE queue_job SET state = 'cancelled' WHERE id = %s", (ids[1],))
    session = store.session(role="executor")
    try:
        cr = session.cursor(registry)
        read = ("SELECT id FROM queue_job WHERE id = %s AND state = %s", (ids[0], "started"))
        in_ids, params = registry.backend.in_ids("id", ids)
        other = (f"SELECT count(*) FROM queue_job WHERE {in_ids}", params)
        ours, rows = store.begin_jobs_reading(cr, ids, "me", [read, other])
        assert ours == {ids[0]}
        assert rows == [[(ids[0],)], [(2,)]]
        if isinstance(registry.backend, PostgresBackend):  # SQLite: its write lock is the proof
            # the begin holds its proof until the transaction ends: no reclaim meanwhile
            with registry.cursor() as other:
                assert not store.executor_gone(other, ids[0])
        cr.rollback()
        assert store.begin_jobs_reading(cr, ids, "me", []) == ({ids[0]}, [])
        cr.close()
    finally:
        session.close()


def test_not_running_lists_jobs_taken_away(registry, store, claim):
    ids = enqueue(registry, "noop", count=2, channel="x")
    set_limit(registry, "x", 2)
    claim(2, worker_id="me")
    query(registry, "UPDATE queue_job SET state = 'cancelled' WHERE id = %s", (ids[0],))
    with registry.cursor() as cr:
        assert store.not_running(cr, "me", ids) == {ids[0]}


def test_stale_jobs_are_those_without_heartbeat(registry, store, claim):
    [job_id] = enqueue(registry, "noop")
    claim(1, worker_id="gone:1:x")
    with registry.cursor() as cr:
        now = store.now(cr)
        assert store.stale_jobs(cr, now - timedelta(seconds=30)) == []
    with registry.cursor() as cr:
        [stale] = store.stale_jobs(cr, now + timedelta(seconds=1))
    assert (stale.id, stale.worker_id) == (job_id, "gone:1:x")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # sessions and advisory locks
def test_postgres_never_reclaims_a_job_whose_executor_session_lives(registry, store, claim, db_url):
    [job_id] = enqueue(registry, "noop")
    claim(1, worker_id="w")
    session = store.session(role="executor")
    try:
        running = session.cursor(registry)
        assert store.begin_job(running, job_id, "w")  # the executor's transaction is open
        with registry.cursor() as cr:
            assert not store.executor_gone(cr, job_id)
            assert store.stale_jobs(cr, store.now(cr) + timedelta(seconds=5)) == []
        running.rollback()
        running.close()
        with registry.cursor() as cr:
            assert store.executor_gone(cr, job_id)
    finally:
        session.close()


def test_elect_gives_the_role_to_one_holder(registry, store):
    first, second = store.session(role="supervisor"), store.session(role="supervisor")
    try:
        assert store.elect(first, "maintenance", "a", ttl=30)
        assert not store.elect(second, "maintenance", "b", ttl=30)
        assert store.elect(first, "maintenance", "a", ttl=30)  # kept
    finally:
        first.close()
        second.close()


def test_enqueue_notifies_listeners_at_commit_only(registry, store, db_url):
    listener = store.listener()
    listener.open()
    try:
        listener.woken()  # whatever happened before
        with registry.cursor() as cr:
            from job_worker import SUPERUSER_ID, api

            api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"].with_delay().noop()
            cr.rollback()
        if db_url.startswith("postgresql"):
            assert not listener.woken()
        enqueue(registry, "noop")
        import time

        deadline = time.monotonic() + 5
        while not listener.woken():
            assert time.monotonic() < deadline, "no wake-up after a committed enqueue"
            time.sleep(0.01)
    finally:
        listener.close()


def test_a_commit_that_releases_dependents_wakes_idle_workers(registry, store, claim, db_url):
    """A parent done makes its dependent pending: the commit wakes every idle worker as
    an enqueue does (PostgreSQL: the NOTIFY; SQLite: this process's wake-up hooks), not
    only the worker whose job it was, which may have no slot free."""
    import time

    with registry.cursor() as cr:
        task = api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"]
        parent, child = task.delayable().record("parent"), task.delayable().record("child")
        parent.on_done(child)
        parent.delay()
    [job] = claim(10).jobs
    assert job.id == parent._job.id
    hooked: list[bool] = []
    unhook = jobstore.on_local_enqueue(registry.backend.url, lambda: hooked.append(True))
    listener = store.listener()
    listener.open()
    try:
        listener.woken()  # the enqueue's
        with registry.cursor() as cr:
            assert states.mark_done(cr, job.id, None, worker_id="w1")
            assert not hooked
        assert query(registry, "SELECT state FROM queue_job WHERE id = %s", (child._job.id,)) == [
            ("pending",)
        ]
        if db_url.startswith("postgresql"):
            deadline = time.monotonic() + 5
            while not listener.woken():
                assert time.monotonic() < deadline, "no wake-up after the dependent's release"
                time.sleep(0.01)
        else:  # SQLite's poll sees any commit: its in-process wake-up is the hook
            assert hooked == [True]
    finally:
        listener.close()
        unhook()


def test_listener_tells_a_change_of_the_periodic_jobs_from_an_enqueue(registry, store, db_url):
    """PostgreSQL: an enqueue wakes claims and says nothing of the crons; a change of a
    cron says that and wakes no claim. SQLite's poll cannot tell: any change says both."""
    import time

    postgres = db_url.startswith("postgresql")

    def received() -> tuple[bool, bool]:
        deadline = time.monotonic() + 5
        while True:
            woken, crons = listener.woken(), listener.crons_changed()
            if woken or crons:
                return woken, crons
            assert time.monotonic() < deadline, "no wake-up after a commit"
            time.sleep(0.01)

    listener = store.listener()
    listener.open()
    try:
        listener.woken()  # whatever happened before
        listener.crons_changed()
        enqueue(registry, "noop")
        assert received() == (True, not postgres)
        with registry.cursor() as cr:
            vals = {"name": "hourly", "model_name": "workerapp.task", "method_name": "noop"}
            api.Environment(cr, SUPERUSER_ID, {})["queue.cron"].create({**vals, "interval": 3600})
        assert received() == (not postgres, True)
    finally:
        listener.close()


def test_claims_of_concurrent_sessions_never_exceed_the_limit(registry, store):
    """Two claimers racing: the claim lock makes the counts exact."""
    set_limit(registry, "root", 3)
    enqueue(registry, "noop", count=20)
    import threading

    got: list[int] = []
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        session = store.session(role="supervisor")
        try:
            for _ in range(10):
                cr = session.cursor(registry)
                try:
                    got.extend(
                        j.id
                        for j in store.claim(cr, worker_id=name, wanted=2, default_limit=1).jobs
                    )
                except (psycopg.Error, Exception) as exc:  # SQLite may be busy: retry
                    if "locked" not in str(exc):
                        errors.append(exc)
                finally:
                    cr.close()
        finally:
            session.close()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(got) == 3 == len(set(got))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_claim_locks_no_more_candidates_than_it_wants(registry, store, claim, monkeypatch):
    # a channel with room for 100 and 30 jobs waiting: a claim of 2 looks at 2 of them,
    # not at all 30 (each candidate is locked FOR UPDATE: a big limit made claims O(n))
    enqueue(registry, "noop", count=30)
    from job_worker.db.postgres import PostgresCursor

    real, plans = PostgresCursor._send, []

    def spy(self, statements):
        plans.extend(json.loads(p[0]) for q, p, _prepared in statements if "json_to_recordset" in q)
        return real(self, statements)

    monkeypatch.setattr(PostgresCursor, "_send", spy)
    assert len(claim(wanted=2, default_limit=100).jobs) == 2
    # in steps, the plan says so; at once, the database works the same plan out itself
    assert plans in ([[{"channel": "root", "free": 100, "take": 2}]], [])
    # a row locked FOR UPDATE keeps the locker's transaction id in xmax after the commit
    locked = query(
        registry, "SELECT count(*) FROM queue_job WHERE state = 'pending' AND xmax::text <> '0'"
    )
    assert locked == [(0,)]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # round trips to count
def test_a_claim_takes_one_round_trip_where_no_rule_is_worked_out_in_python(
    registry, store, claim, monkeypatch
):
    if type(store)._claim_at_once.__name__ == "<lambda>":  # the "in steps" run of the store
        pytest.skip("the claim in one statement is what this test counts")
    enqueue(registry, "noop", count=5)
    enqueue(registry, "noop", eta=timedelta(seconds=30))
    claim(wanted=1)  # the connection is open and its statements prepared: count from here
    sent = []
    real_execute = psycopg.Cursor.execute

    def execute(self, query, *args, **kwargs):
        sent.append(query)
        return real_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    result = claim(wanted=10, default_limit=10)
    assert len(result.jobs) == 4
    assert len(sent) == 1 and sent[0].endswith(b"COMMIT")  # BEGIN, lock, claim, COMMIT
    # the channel came up short: the next job's due time came with the claim
    assert result.retry_in is not None and 25 < result.retry_in <= 30
    query(registry, "DELETE FROM queue_job")
    sent.clear()
    assert claim(wanted=10, default_limit=10).jobs == []
    assert len(sent) == 1
    # a channel with fair keys: its turns are worked out in Python, in steps; the claim in
    # one statement takes nothing then and is not tried again while such a channel has room
    enqueue(registry, "noop", count=2, fair_key="tenant")
    sent.clear()
    assert len(claim(wanted=10, default_limit=10).jobs) == 2
    tried = len(sent)
    enqueue(registry, "noop", count=2, fair_key="tenant")
    sent.clear()
    assert len(claim(wanted=10, default_limit=10).jobs) == 2
    assert len(sent) == tried - 1 >= 3  # in steps alone: lock and state, turns, the take
    enqueue(registry, "noop", count=2)  # no fair key left: at once again from the next one
    assert len(claim(wanted=10, default_limit=10).jobs) == 2
    enqueue(registry, "noop", count=2)
    sent.clear()
    assert len(claim(wanted=10, default_limit=10).jobs) == 2
    assert len(sent) == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # round trips to count
def test_a_claim_in_steps_takes_two_round_trips(registry, store, claim, monkeypatch):
    monkeypatch.setattr(type(store), "_claim_at_once", lambda self, *args: None)
    enqueue(registry, "noop", count=5)
    enqueue(registry, "noop", eta=timedelta(seconds=30))
    claim(wanted=1)  # the connection is open and its statements prepared: count from here
    sent = []
    real_execute, real_commit = psycopg.Cursor.execute, psycopg.Connection.commit

    def execute(self, query, *args, **kwargs):
        sent.append(query)
        return real_execute(self, query, *args, **kwargs)

    def commit(self):
        sent.append("commit()")
        return real_commit(self)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    monkeypatch.setattr(psycopg.Connection, "commit", commit)
    result = claim(wanted=10, default_limit=10)
    assert len(result.jobs) == 4
    assert len(sent) == 2 and sent[1].endswith(b"COMMIT")  # lock and state; pick and commit
    # the channel came up short: the next job's due time came with the pick
    assert result.retry_in is not None and 25 < result.retry_in <= 30
    query(registry, "DELETE FROM queue_job")
    sent.clear()
    assert claim(wanted=10, default_limit=10).jobs == []  # nothing waits: the clock came
    assert len(sent) == 2 and sent[1] == "commit()"  # with the state, and no pick is sent


# -- PostgreSQL: a claim costs the same whatever the backlog ------------------------------

POSTGRESQL = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def _with_options(url: str, options: str) -> str:
    """``url`` whose connections also start with the server ``options`` given."""
    parts = urlsplit(url)
    params = parse_qs(parts.query)
    params["options"] = [" ".join([*params.get("options", []), options])]
    return urlunsplit(parts._replace(query=urlencode(params, doseq=True, quote_via=quote)))


def _prepared_take(cr, head: str = "WITH plan AS ") -> tuple[str, str]:
    """The name and the PREPARE command of the claim's pick on ``cr``'s connection (it was
    prepared in the message that first ran it: ``PREPARE name AS ...; EXECUTE name(...)``);
    ``head``: how its text begins (the take in steps, by default)."""
    cr.execute("SELECT statement FROM pg_prepared_statements")
    found = {
        match.group(1): match.group(0)
        for (message,) in cr.fetchall()
        for match in re.finditer(rf"PREPARE (\w+) AS\s+{head}.*?(?=; EXECUTE \1\()", message, re.S)
    }
    assert len(found) == 1, found
    [(name, prepare)] = found.items()
    return name, prepare


#: how the claim in one statement begins
AT_ONCE = r"WITH RECURSIVE channels\(name\) AS \("


def _execute_at_once(name: str, default_limit: int, wanted: int) -> str:
    args = [default_limit, None, None, wanted, wanted, "w1", wanted]
    literals = sql.SQL(", ").join(sql.Literal(arg) for arg in args).as_string()
    return f"EXECUTE {name}({literals})"


def _prepared_pick(cr, store, channels: dict[str, int], wanted: int) -> tuple[str, str]:
    """The claim's pick as prepared on ``cr``'s connection (at once, or in steps, as the
    claim that ran went), and the EXECUTE of it for ``channels`` (name: free weight)."""
    try:
        name, prepare = _prepared_take(cr, AT_ONCE)
        return prepare, _execute_at_once(name, max(channels.values()), wanted)
    except AssertionError:
        name, prepare = _prepared_take(cr)
        return prepare, _execute_take(name, channels, wanted)


def _execute_take(name: str, channels: dict[str, int], wanted: int) -> str:
    now = Datetime.now()
    plan = json.dumps([{"channel": c, "free": free} for c, free in channels.items()])
    args = [plan, now, wanted, "w1", now, now, now]
    literals = sql.SQL(", ").join(sql.Literal(arg) for arg in args).as_string()
    return f"EXECUTE {name}({literals})"


def _grow_backlog(registry, jobs: int) -> None:
    """``jobs`` copies of the one pending job, then fresh statistics."""
    columns = [
        row[0]
        for row in query(
            registry,
            "SELECT column_name FROM information_schema.columns WHERE table_schema ="
            " current_schema() AND table_name = 'queue_job' AND column_name NOT IN ('id', 'uuid')",
        )
    ]
    listed = ", ".join(f'"{c}"' for c in columns)
    query(
        registry,
        f"INSERT INTO queue_job (uuid, {listed}) SELECT md5(g::text), {listed}"
        " FROM queue_job, generate_series(1, %s) AS g",
        (jobs,),
    )
    query(registry, "ANALYZE queue_job")


@POSTGRESQL
def test_postgres_worker_sessions_never_jit_compile_a_claim(registry, db_url):
    # this database's connections start with JIT on for any statement that costs anything
    eager = _with_options(db_url, "-cjit=on -cjit_above_cost=0")
    store = jobstore.for_backend(PostgresBackend(eager))
    enqueue(registry, "noop", count=3)
    for role in ("supervisor", "maintenance"):
        session = store.session(role=role)
        try:
            cr = session.cursor(registry)
            cr.execute("SHOW jit_above_cost")
            assert cr.fetchone()[0] == "0"  # the connection did start with the options
            cr.execute("SHOW jit")
            assert cr.fetchone()[0] == "off", role
            cr.rollback()
            cr.close()
        finally:
            session.close()
    session = store.session(role="supervisor")
    try:
        cr = session.cursor(registry)
        assert len(store.claim(cr, worker_id="w1", wanted=2, default_limit=2).jobs) == 2
        prepare, execute = _prepared_pick(cr, store, {"root": 1}, 1)
        cr.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {execute}")
        [worker_plan] = cr.fetchone()[0]
        cr.rollback()
        cr.close()
    finally:
        session.close()
    assert "JIT" not in worker_plan
    # the same statement on a connection of its own, with the database's settings: compiled
    with psycopg.connect(eager, autocommit=True) as cnx:
        if cnx.execute("SELECT pg_jit_available()").fetchone()[0]:  # type: ignore[index]
            cnx.execute(prepare)
            with cnx.transaction(force_rollback=True):
                plan = cnx.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {execute}").fetchone()
            assert "JIT" in plan[0][0]  # type: ignore[index]


@POSTGRESQL
def test_postgres_claim_estimate_does_not_grow_with_the_backlog(registry, store):
    enqueue(registry, "noop")
    _grow_backlog(registry, 20_000)
    session = store.session(role="supervisor")
    try:
        cr = session.cursor(registry)
        assert len(store.claim(cr, worker_id="w1", wanted=2, default_limit=2).jobs) == 2
        _prepare, execute = _prepared_pick(cr, store, {"root": 2}, 2)
        cr.execute("SET LOCAL plan_cache_mode = force_generic_plan")  # as a claim runs it
        cr.execute(f"EXPLAIN (FORMAT JSON) {execute}")
        [plan] = cr.fetchone()[0]
        cr.rollback()
        cr.close()
    finally:
        session.close()
    # a few index pages per channel: far below any JIT threshold (100,000 by default),
    # where the row counts guessed from 20,000 pending jobs would cost ~100 times more
    assert plan["Plan"]["Total Cost"] < 1_000, plan["Plan"]["Total Cost"]


def test_a_claim_says_whether_only_limits_held_jobs_back(registry, claim):
    set_limit(registry, "root", 2)
    set_limit(registry, "wide", 10)
    enqueue(registry, "noop", count=5)
    result = claim(10)
    assert len(result.jobs) == 2 and result.exhausted  # root's room used, nothing else due
    enqueue(registry, "noop", count=5, channel="wide")
    result = claim(2)
    assert len(result.jobs) == 2 and not result.exhausted  # wide has room and due jobs
    result = claim(10)
    assert len(result.jobs) == 3 and result.exhausted  # wide has no due job left


@POSTGRESQL
def test_a_claim_locks_only_the_jobs_each_channel_may_give(registry, claim):
    # channel "one" may give 1 job, "three" 3: the claim wants all 4, so the statement is
    # made for 4 jobs per channel, and "one" must still lock a single job
    set_limit(registry, "one", 1)
    set_limit(registry, "three", 3)
    enqueue(registry, "noop", count=5, channel="one")
    enqueue(registry, "noop", count=5, channel="three")
    assert len(claim(wanted=4).jobs) == 4
    # a row locked FOR UPDATE keeps the locker's transaction id in xmax after the commit
    locked = query(
        registry,
        "SELECT count(*) FROM queue_job WHERE state = 'pending' AND xmax::text <> '0'",
    )
    assert locked == [(0,)]


@POSTGRESQL
def test_postgres_claims_survive_a_rollback_after_repeated_statements(registry, store):
    # psycopg prepares a statement run 5 times by itself, and answers the next rollback
    # with DEALLOCATE ALL: that must not take the claim's own prepared statements along
    enqueue(registry, "noop", count=4)
    session = store.session(role="supervisor")
    try:
        cr = session.cursor(registry)
        assert len(store.claim(cr, worker_id="w1", wanted=1, default_limit=4).jobs) == 1
        cr = session.cursor(registry)
        for _ in range(6):
            store.heartbeat(cr, "w1")
        cr.rollback()
        assert len(store.claim(cr, worker_id="w1", wanted=1, default_limit=4).jobs) == 1
        cr.close()
    finally:
        session.close()


@POSTGRESQL
def test_postgres_claims_prepare_again_after_their_statements_are_gone(registry, store):
    enqueue(registry, "noop", count=4)
    session = store.session(role="supervisor")
    try:
        cr = session.cursor(registry)
        assert len(store.claim(cr, worker_id="w1", wanted=1, default_limit=4).jobs) == 1
        cr = session.cursor(registry)
        cr.execute("DEALLOCATE ALL")  # seen by the cursor: prepared again at once
        cr.commit()
        assert len(store.claim(cr, worker_id="w1", wanted=1, default_limit=4).jobs) == 1
        cr._cnx.execute("DEALLOCATE ALL")  # unseen, as a pooler or a DISCARD ALL would
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            store.claim(cr, worker_id="w1", wanted=1, default_limit=4)
        cr.rollback()
        # the next claim (the supervisor's next turn) prepares them again
        assert len(store.claim(cr, worker_id="w1", wanted=1, default_limit=4).jobs) == 1
        cr.close()
    finally:
        session.close()


@POSTGRESQL
def test_postgres_heartbeat_never_waits_for_a_job_its_executor_is_writing(registry, store, claim):
    # an executor marking its batch done locks the batch's rows one by one: a heartbeat
    # that waited on one of them while holding another would deadlock with it
    first, second = enqueue(registry, "noop", count=2)
    set_limit(registry, "root", 2)
    assert len(claim(wanted=2, default_limit=2).jobs) == 2
    executor = store.session(role="executor")
    supervisor = store.session(role="supervisor")
    try:
        writing = executor.cursor(registry)
        writing.execute("UPDATE queue_job SET write_date = write_date WHERE id = %s", (second,))
        beat = supervisor.cursor(registry)
        beat.execute("SET LOCAL lock_timeout = 5000")  # waiting would fail the test, not hang it
        store.heartbeat(beat, "w1")  # the job being written is skipped: its executor lives
        beat.commit()
        writing.execute("UPDATE queue_job SET write_date = write_date WHERE id = %s", (first,))
        writing.commit()
        heartbeats = dict(query(registry, "SELECT id, heartbeat FROM queue_job"))
        assert heartbeats[first] > heartbeats[second]
        beat.close()
        writing.close()
    finally:
        executor.close()
        supervisor.close()


# -- state changes: every operation, on both databases ------------------------------------


def _row(registry, job_id: int, columns: str) -> tuple:
    [row] = query(registry, f"SELECT {columns} FROM queue_job WHERE id = %s", (job_id,))
    return row


def _at(value):
    """A datetime column as read back on either database."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _graph(registry):
    """parent -> child (on done) and parent -> rescue (on error), enqueued; their ids."""
    with registry.cursor() as cr:
        task = api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"]
        parent, child, rescue = (task.delayable().noop() for _ in range(3))
        parent.on_done(child)
        parent.on_error(rescue)
        parent.delay()
        return parent._job.id, child._job.id, rescue._job.id


def test_finish_marks_the_worker_s_started_jobs_done(registry, store, claim):
    set_limit(registry, "root", 3)
    first, second, other = enqueue(registry, "noop", count=3)
    claim(2, worker_id="me")
    with registry.cursor() as cr:
        cr.execute(
            "UPDATE queue_job SET state = 'started', worker_id = 'else' WHERE id = %s", (other,)
        )
        marked = store.finish(
            cr, [(first, '{"n": 1}', 0.5), (second, None, None), (other, None, 1.0)], "me"
        )
        assert marked == {first: False, second: False}  # the other worker's job is left alone
        assert store.finish(cr, [(first, None, 0.1)], "me") == {}  # done already
    state, result, duration, completed, written = _row(
        registry, first, "state, result, duration, completed_at, write_date"
    )
    assert (state, duration) == ("done", 0.5) and completed and completed == written
    assert (json.loads(result) if isinstance(result, str) else result) == {"n": 1}
    assert _row(registry, other, "state")[0] == "started"


def test_finish_keeps_each_job_s_result_and_duration_as_given(registry, store, claim):
    set_limit(registry, "root", 3)
    quoted, empty, null = enqueue(registry, "noop", count=3)
    claim(3, worker_id="me")
    text = json.dumps({"quote": 'it\'s \\ "x" {1,2} ünïcode ☃', "list": [1, None]})
    with registry.cursor() as cr:
        marked = store.finish(
            cr, [(quoted, text, 1e-06), (empty, None, 2), (null, "null", None)], "me"
        )
        assert marked == {quoted: False, empty: False, null: False}
    expected = {quoted: (json.loads(text), 1e-06), empty: (None, 2.0), null: (None, None)}
    for job_id, (result, duration) in expected.items():
        got, took = _row(registry, job_id, "result, duration")
        assert (json.loads(got) if isinstance(got, str) else got, took) == (result, duration)


def test_a_failed_attempt_is_retried_then_fails_when_its_retries_are_spent(registry, store, claim):
    [job_id] = enqueue(registry, "noop", max_retries=1)
    claim(1, worker_id="me")
    with registry.cursor() as cr:
        assert states.record_failure(cr, job_id, ValueError("first"), worker_id="other") is None
        assert states.record_failure(cr, job_id, ValueError("first"), worker_id="me") == "pending"
        now = store.now(cr)
    state, attempts, worker, due, name, info = _row(
        registry, job_id, "state, attempts, worker_id, scheduled_at, exc_name, exc_info"
    )
    assert (state, attempts, worker, name) == ("pending", 1, None, "ValueError")
    assert now + timedelta(seconds=8) < _at(due) <= now + timedelta(seconds=10)
    assert "--- attempt 1 at" in info and "ValueError: first" in info
    query(
        registry,
        "UPDATE queue_job SET scheduled_at = %s WHERE id = %s",
        (now - timedelta(1), job_id),
    )
    claim(1, worker_id="me")
    with registry.cursor() as cr:
        assert states.record_failure(cr, job_id, ValueError("second"), worker_id="me") == "failed"
    state, attempts, completed, duration, info = _row(
        registry, job_id, "state, attempts, completed_at, duration, exc_info"
    )
    assert (state, attempts) == ("failed", 2) and completed and duration is not None
    assert info.count("--- attempt") == 2


def test_failing_job_reads_the_job_and_the_database_clock(registry, store, claim):
    [job_id] = enqueue(registry, "noop", max_retries=4)
    claim(1, worker_id="me")
    with registry.cursor() as cr:
        assert store.failing_job(cr, job_id, "pending", None) is None  # not in that state
        job = store.failing_job(cr, job_id, "started", "me")
        assert job is not None
        assert (job.attempts, job.max_retries, job.worker_id, job.has_dependents) == (
            0,
            4,
            "me",
            False,
        )
        assert job.started_at is not None and job.started_at <= job.now


def test_return_to_pending_counts_no_attempt(registry, store, claim):
    set_limit(registry, "root", 2)
    ids = enqueue(registry, "noop", count=2)
    claim(2, worker_id="me")
    with registry.cursor() as cr:
        assert store.return_to_pending(cr, ids, "someone-else") == []
        assert sorted(states.return_to_pending(cr, ids, worker_id="me")) == ids
        assert states.return_to_pending(cr, ids, worker_id="me") == []  # pending already
    for job_id in ids:
        assert _row(registry, job_id, "state, attempts, worker_id, started_at, heartbeat") == (
            "pending",
            0,
            None,
            None,
            None,
        )


@pytest.mark.parametrize(
    "state, stamp",
    [("done", "completed_at"), ("failed", "completed_at"), ("cancelled", "cancelled_at")],
)
def test_force_sets_a_state_by_hand_and_cascades(registry, store, state, stamp):
    parent, child, rescue = _graph(registry)
    with registry.cursor() as cr:
        states.force_state(cr, [parent], state, message="by hand")
    assert _row(registry, parent, f"state, {stamp} IS NOT NULL") == (state, True)
    expected = {
        "done": ("pending", "cancelled"),
        "failed": ("failed", "pending"),
        "cancelled": ("cancelled", "cancelled"),
    }[state]
    assert (_row(registry, child, "state")[0], _row(registry, rescue, "state")[0]) == expected
    if state == "failed":
        name, message, info = _row(registry, parent, "exc_name, exc_message, exc_info")
        assert (name, message) == ("job_worker.exceptions.FailedJobError", "by hand")
        assert re.search(r"--- set failed at \S+ \S+ ---\nby hand$", info)
        name, message, cascaded = _row(registry, child, "exc_name, exc_message, cascaded_from_id")
        assert (name, message, cascaded) == (
            states.DEPENDENCY_FAILED,
            f"parent job {parent} failed",
            parent,
        )


def test_force_refuses_a_state_that_is_not_set_by_hand(registry, store):
    [job_id] = enqueue(registry, "noop")
    with registry.cursor() as cr:
        with pytest.raises(ValueError, match="not 'started'"):
            store.force(cr, [job_id], "started")
        with pytest.raises(ValueError, match="not 'waiting'"):
            states.force_state(cr, [job_id], "waiting")


def test_finishing_a_parent_releases_its_dependents_and_cancels_its_rescue(registry, store, claim):
    parent, child, rescue = _graph(registry)
    assert _row(registry, child, "state")[0] == "waiting"
    claim(1, worker_id="me")
    with registry.cursor() as cr:
        assert states.mark_done(cr, parent, None, duration=0.1, worker_id="me")
    assert _row(registry, child, "state, cascaded_from_id") == ("pending", None)
    assert _row(registry, rescue, "state, cascaded_from_id, cancelled_at IS NOT NULL") == (
        "cancelled",
        parent,
        True,
    )


def test_a_failed_parent_fails_its_dependents_and_releases_its_rescue(registry, store, claim):
    parent, child, rescue = _graph(registry)
    query(registry, "UPDATE queue_job SET max_retries = 1 WHERE id = %s", (parent,))
    claim(1, worker_id="me")
    with registry.cursor() as cr:
        assert (
            states.record_failure(cr, parent, ValueError("x"), worker_id="me", final=True)
            == "failed"
        )
    state, name, info, cascaded = _row(
        registry, child, "state, exc_name, exc_info, cascaded_from_id"
    )
    assert (state, name, cascaded) == ("failed", states.DEPENDENCY_FAILED, parent)
    assert re.match(r"--- failed at \S+ \S+ ---\n", info)
    assert _row(registry, rescue, "state")[0] == "pending"
    # a requeue of the parent: the child waits for it again, the rescue too
    with registry.cursor() as cr:
        states.requeue(cr, [parent])
    assert _row(registry, parent, "state, attempts, exc_name, completed_at") == (
        "pending",
        0,
        None,
        None,
    )
    assert _row(registry, child, "state, exc_name, cascaded_from_id") == ("waiting", None, None)
    assert _row(registry, rescue, "state")[0] == "waiting"


def test_cascade_reads_dependents_edges_and_locks_waiting_ones(registry, store):
    parent, child, rescue = _graph(registry)
    with registry.cursor() as cr:
        assert sorted(store.dependents(cr, [parent])) == sorted([child, rescue])
        assert store.lock_dependents(cr, [child, rescue, parent], ["waiting"]) == sorted(
            [child, rescue]
        )
        assert store.edges(cr, [child, rescue]) == sorted(
            [(child, parent, "done", "pending"), (rescue, parent, "error", "pending")]
        )
        store.release(cr, [child])
        store.wait_back(cr, [child])
        store.release(cr, [rescue])
        assert store.lock_dependents(cr, [child, rescue], ["pending"]) == [rescue]


def test_requeue_makes_a_job_due_now_with_its_error_cleared(registry, store):
    [job_id] = enqueue(registry, "noop", eta=timedelta(hours=1))
    with registry.cursor() as cr:
        states.force_state(cr, [job_id], "failed", message="no")
        states.requeue(cr, [job_id])
        now = store.now(cr)
    state, attempts, info, due = _row(registry, job_id, "state, attempts, exc_info, scheduled_at")
    assert (state, attempts, info) == ("pending", 0, None)
    assert now - timedelta(seconds=5) < _at(due) <= now


def test_reclaim_counts_the_attempt_of_a_job_whose_worker_died(registry, store, claim):
    from job_worker.worker.maintenance import reclaim_stale_jobs

    alive, dead = enqueue(registry, "noop", count=2, channel="r")
    set_limit(registry, "r", 2)
    claim(2, worker_id="gone:1:x", channels=["r"])
    with registry.cursor() as cr:
        old = store.now(cr) - timedelta(seconds=60)
    query(registry, "UPDATE queue_job SET heartbeat = %s WHERE id = %s", (old, dead))
    with registry.cursor() as cr:
        assert reclaim_stale_jobs(cr, stale_after=30) == 1
    state, attempts, name = _row(registry, dead, "state, attempts, exc_name")
    assert (state, attempts, name) == ("pending", 1, "job_worker.exceptions.WorkerDiedJobError")
    assert _row(registry, alive, "state")[0] == "started"


def test_purge_deletes_old_finished_jobs_only(registry, store):
    old_done, new_done, old_pending = enqueue(registry, "noop", count=3)
    with registry.cursor() as cr:
        states.force_state(cr, [old_done, new_done], "done")
    long_ago = Datetime.now() - timedelta(days=40)
    query(
        registry,
        "UPDATE queue_job SET write_date = %s WHERE id IN (%s, %s)",
        (long_ago, old_done, old_pending),
    )
    with registry.cursor() as cr:
        assert store.purge(cr, 0, 100) == 0  # 0 days: kept for ever
        assert store.purge(cr, 30, 100) == 1
    assert sorted(r[0] for r in query(registry, "SELECT id FROM queue_job")) == [
        new_done,
        old_pending,
    ]


def test_register_heartbeat_and_stop_a_worker(registry, store, claim):
    [job_id] = enqueue(registry, "noop")
    claim(1, worker_id="me")
    values = {
        "worker_id": "me",
        "hostname": "h",
        "pid": 1,
        "concurrency": 2,
        "channels": "",
        "version": "1",
    }
    with registry.cursor() as cr:
        store.register_worker(cr, {**values, "heartbeat_interval": 2.5})
    with registry.cursor() as cr:
        before = store.now(cr)
    query(registry, "UPDATE queue_job SET heartbeat = NULL")
    with registry.cursor() as cr:
        store.heartbeat(cr, "me")
    interval, worker_beat, stopped = query(
        registry, "SELECT heartbeat_interval, heartbeat, stopped_at FROM queue_worker"
    )[0]
    assert interval == 2.5 and _at(worker_beat) >= before and stopped is None
    assert _at(_row(registry, job_id, "heartbeat")[0]) >= before
    with registry.cursor() as cr:
        store.stop_worker(cr, "me")
    [(stopped,)] = query(registry, "SELECT stopped_at FROM queue_worker")
    assert _at(stopped) >= before


@POSTGRESQL
def test_postgres_times_come_from_the_database_clock(registry, store, claim, monkeypatch):
    """Python's clock set a century ahead: every time the engine writes is still the
    database's."""
    parent, _child, rescue = _graph(registry)
    other, retried = enqueue(registry, "noop", count=2, channel="c")
    set_limit(registry, "c", 2)
    claim(1, worker_id="me")
    claim(2, worker_id="me", channels=["c"])
    far = datetime(2126, 1, 1)
    monkeypatch.setattr(Datetime, "now", staticmethod(lambda: far))
    values = {
        "worker_id": "me",
        "hostname": "h",
        "pid": 1,
        "concurrency": 1,
        "channels": "",
        "version": "1",
    }
    with registry.cursor() as cr:
        store.register_worker(cr, values)
        store.heartbeat(cr, "me")
        states.mark_done(cr, parent, None, duration=0.1, worker_id="me")  # releases child
        assert states.record_failure(cr, retried, ValueError("x"), worker_id="me") == "pending"
        states.force_state(cr, [other], "failed", message="by hand")
        states.force_state(cr, [rescue], "cancelled")
    [(db_now,)] = query(registry, "SELECT timezone('UTC', clock_timestamp())")
    times = query(
        registry,
        "SELECT started_at, completed_at, cancelled_at, heartbeat, write_date, scheduled_at,"
        " exc_info FROM queue_job",
    ) + query(
        registry,
        "SELECT started_at, heartbeat, create_date, write_date, NULL, NULL, NULL FROM queue_worker",
    )
    for *stamps, info in times:
        for stamp in stamps:
            assert stamp is None or stamp <= db_now + timedelta(seconds=15), stamps
        assert "2126" not in (info or "")
    [(due,)] = query(registry, "SELECT scheduled_at FROM queue_job WHERE id = %s", (retried,))
    assert db_now < due <= db_now + timedelta(seconds=10)


# -- how a store is found ---------------------------------------------------------------


def test_each_backend_names_its_store_and_has_one(registry, store):
    assert jobstore.job_store(registry.backend) is store is jobstore.for_backend(registry.backend)
    assert type(store) is jobstore.store_class(type(registry.backend).job_store_class)


@pytest.mark.parametrize(
    "name, error",
    [
        ("jobstore_sqlite", "module:Class"),
        (".jobstore:ClaimedJob", "not a job store class"),
        (".jobstore_sqlite:Nothing", "not a job store class"),
    ],
)
def test_a_store_named_wrongly_is_refused_clearly(name, error):
    with pytest.raises((ValueError, TypeError), match=error):
        jobstore.store_class(name)


def test_the_store_modules_import_no_cycle():
    """jobstore imports neither database's module; each imports jobstore and its backend,
    and no backend module imports a store."""
    import ast
    import importlib.util
    from pathlib import Path

    def imports(module: str) -> set[str]:
        spec = importlib.util.find_spec(f"job_worker.db.{module}")
        assert spec is not None and spec.origin
        tree = ast.parse(Path(spec.origin).read_text())
        return {
            (node.module or "").lstrip(".")
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1
        }

    assert not imports("jobstore") & {"jobstore_postgres", "jobstore_sqlite", "postgres", "sqlite"}
    for backend in ("postgres", "sqlite", "backend", "cursor"):
        assert not imports(backend) & {"jobstore", "jobstore_postgres", "jobstore_sqlite"}


# -- in-process wake-ups ------------------------------------------------------------------


def test_on_local_enqueue_gives_a_way_to_unsubscribe():
    calls = []
    off = jobstore.on_local_enqueue("sqlite:///nowhere", lambda: calls.append(1))
    jobstore.fire_local_enqueue("sqlite:///nowhere")
    off()
    jobstore.fire_local_enqueue("sqlite:///nowhere")
    off()  # twice: nothing to do
    assert calls == [1]
    assert "sqlite:///nowhere" not in jobstore._local_hooks


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_listener_close_releases_its_hook_and_its_pipe(registry, store):
    import os

    listener = store.listener()
    read_fd, write_fd = listener._read_fd, listener._write_fd
    assert listener._poke in jobstore._local_hooks[registry.backend.url]
    listener.woken()
    listener.close()
    assert listener._poke not in jobstore._local_hooks.get(registry.backend.url, [])
    for fd in (read_fd, write_fd):
        with pytest.raises(OSError):
            os.fstat(fd)
    listener.close()  # twice: nothing to do
    assert listener.fileno() is None and not listener.woken()


# -- SQLite: whether a job's statement writes -----------------------------------------------


@pytest.mark.parametrize(
    "statement, writes",
    [
        ("SELECT 1", False),
        ("  select id FROM t", False),
        ("VALUES (1)", False),
        ("UPDATE t SET a = 1", True),
        ("INSERT INTO t VALUES (1)", True),
        ("DELETE FROM t", True),
        ("WITH x AS (SELECT 1) SELECT * FROM x", True),
        ("SAVEPOINT sp", True),
        ("PRAGMA foo = 1", True),
        ("SELECTED_ROWS", True),
    ],
)
def test_sqlite_statement_writes_rule(statement, writes):
    from job_worker.db.jobstore_sqlite import statement_writes

    assert statement_writes(statement) is writes


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_job_cursor_opens_its_write_transaction_when_a_statement_writes(registry, store):
    session = store.session(role="executor")
    try:
        cr = session.cursor(registry)
        cr.execute("SELECT count(*) FROM queue_job")
        assert not cr.in_transaction  # a read, outside the transaction
        cr.execute("WITH x AS (SELECT 1) SELECT * FROM x", write=False)
        assert not cr.in_transaction  # said so
        cr.execute("SELECT count(*) FROM queue_job", write=True)
        assert cr.in_transaction  # said so: the write lock is held from here
        cr.rollback()
        cr.execute("UPDATE queue_job SET priority = priority")
        assert cr.in_transaction
        cr.rollback()
        cr.close()
    finally:
        session.close()
