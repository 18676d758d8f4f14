"""The job store's named operations, one conformance suite over both databases."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from worker_helpers import enqueue, query, set_limit

from job_worker.db import jobstore
from job_worker.db.postgres import PostgresBackend
from job_worker.orm.fields import Datetime

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(registry):
    return jobstore.for_backend(registry.backend)


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
    assert plans == [[{"channel": "root", "free": 2}]]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # round trips to count
def test_a_claim_takes_two_round_trips(registry, claim, monkeypatch):
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


def _prepared_take(cr) -> tuple[str, str]:
    """The name and the PREPARE command of the claim's pick on ``cr``'s connection (it was
    prepared in the message that first ran it: ``PREPARE name AS ...; EXECUTE name(...)``)."""
    cr.execute("SELECT statement FROM pg_prepared_statements")
    found = {
        match.group(1): match.group(0)
        for (message,) in cr.fetchall()
        for match in re.finditer(
            r"PREPARE (\w+) AS\s+WITH plan AS .*?(?=; EXECUTE \1\()", message, re.S
        )
    }
    assert len(found) == 1, found
    [(name, prepare)] = found.items()
    return name, prepare


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
        name, prepare = _prepared_take(cr)
        execute = _execute_take(name, {"root": 1}, 1)
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
        name, _prepare = _prepared_take(cr)
        cr.execute("SET LOCAL plan_cache_mode = force_generic_plan")  # as a claim runs it
        cr.execute(f"EXPLAIN (FORMAT JSON) {_execute_take(name, {'root': 2}, 2)}")
        [plan] = cr.fetchone()[0]
        cr.rollback()
        cr.close()
    finally:
        session.close()
    # a few index pages per channel: far below any JIT threshold (100,000 by default),
    # where the row counts guessed from 20,000 pending jobs would cost ~100 times more
    assert plan["Plan"]["Total Cost"] < 1_000, plan["Plan"]["Total Cost"]


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
        cr.execute("DEALLOCATE ALL")  # as a pooler or a DISCARD ALL would
        cr.commit()
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
