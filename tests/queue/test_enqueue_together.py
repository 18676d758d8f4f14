"""The jobs of one transaction go to the database together (PostgreSQL).

Plain jobs take their ids from the block of ids the process holds (``db.ids``) and
their rows wait on the cursor until the next statement of the transaction, whatever it
is, or its commit, whose message carries them when they are few; the user's company
is looked up by the row's INSERT itself: a single enqueue is one round trip. Nothing
may tell the difference: reads see them, savepoints and rollbacks undo them, counts stay
exact, and an error in one of them is raised with a note naming it. Jobs that need
the database at once (identity keys, store hooks, graphs, bounded channels,
synchronous mode) are written at once. SQLite writes every job at once.
"""

from __future__ import annotations

import os
import re
import threading

import psycopg
import pytest

from job_worker import SUPERUSER_ID, api
from job_worker.db import ids as db_ids
from job_worker.db.jobstore import job_store
from job_worker.delay import chain


@pytest.fixture
def partner(qenv):
    return qenv["res.partner"].create({"name": "Acme"})


def _count(cr) -> int:
    cr.execute("SELECT count(*) FROM queue_job")
    return int(cr.fetchone()[0])


def _waiting(cr) -> int:
    """Rows waiting on the cursor (none on SQLite: it writes each job at once)."""
    return cr.deferred_rows


def _fields_of(job):
    return {f.name: job[f.name] for f in job._column_fields}


def _fields_of_cached(job):
    """The fields of ``job`` that its enqueue knows (all but a company looked up)."""
    return {f.name: job[f.name] for f in job._column_fields if f.name != "company_id"}


def test_jobs_after_the_first_wait_and_a_read_sees_them(qenv, partner):
    cr = qenv.cr
    jobs = [partner.with_delay(channel="bulk").record(str(i)) for i in range(5)]
    assert _waiting(cr) == (5 if cr.defers_inserts else 0)
    assert qenv["queue.job"].search_count([("channel", "=", "bulk")]) == 5  # a read: written
    assert _waiting(cr) == 0
    ids = [job.id for job in jobs]
    assert ids == sorted(ids) and len(set(ids)) == 5
    cr.execute("SELECT id, name FROM queue_job WHERE channel = 'bulk' ORDER BY id")
    assert cr.fetchall() == [(job.id, "res.partner.record") for job in jobs]


def test_a_waiting_job_reads_as_the_row_in_the_database(qenv, partner):
    partner.with_delay().record("first")
    job = partner.with_delay(priority=3, eta=60, description="D").record("x", value=2)
    cached = _fields_of(job)
    count = qenv.cr.sql_count
    qenv.cr.flush()
    qenv.invalidate_all()
    assert _fields_of(job) == cached
    assert qenv.cr.sql_count > count


def test_commit_writes_the_waiting_jobs_and_wakes_the_workers(qregistry):
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        partner_id = env["res.partner"].create({"name": "Acme"}).id
    listener = None
    if qregistry.backend.dialect == "postgresql":
        listener = psycopg.connect(qregistry.backend.url, autocommit=True)
        listener.execute("LISTEN job_worker")
    try:
        with qregistry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            partner = env["res.partner"].browse(partner_id)
            ids = [partner.with_delay().record(str(i)).id for i in range(40)]
            assert _waiting(cr) == (40 if cr.defers_inserts else 0)
        with qregistry.cursor() as cr:
            cr.execute("SELECT id FROM queue_job ORDER BY id")
            assert [row[0] for row in cr.fetchall()] == ids
        if listener is not None:
            notices = list(listener.notifies(timeout=5, stop_after=1))
            assert notices and notices[0].channel == "job_worker"
    finally:
        if listener is not None:
            listener.close()


class _Counting:
    """A DB-API cursor that records the messages sent through it (one per round trip)."""

    def __init__(self, cur):
        self._cur, self.sent = cur, []

    def execute(self, query, params=None, **kwargs):
        self.sent.append(query if isinstance(query, str) else bytes(query).decode())
        return self._cur.execute(query, params, **kwargs)

    def executemany(self, query, params_seq, **kwargs):
        self.sent.append(f"executemany {query}")
        return self._cur.executemany(query, params_seq, **kwargs)

    def copy(self, statement, *args, **kwargs):
        self.sent.append(f"copy {statement}")
        return self._cur.copy(statement, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._cur, name)


def _partner_id(qregistry) -> int:
    """A partner, and a first job enqueued and rolled back: the process has read the
    channels' rules (once every few seconds)."""
    with qregistry.cursor() as cr:
        partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].create({"name": "A"})
    with qregistry.cursor() as cr:
        partner.with_env(api.Environment(cr, SUPERUSER_ID, {})).with_delay().record()
        cr.rollback()
    return partner.id


def test_a_single_enqueue_is_one_round_trip(qregistry):
    partner_id = _partner_id(qregistry)
    fetched = refilled = 0
    names: dict[int, str] = {}  # a connection (its server process) -> its INSERT's name
    for _ in range(6):
        cr = qregistry.cursor()
        try:
            if not cr.defers_inserts:
                pytest.skip("SQLite has no round trips")
            counting = cr._cur = _Counting(cr._cur)
            env = api.Environment(cr, SUPERUSER_ID, {})
            job = env["res.partner"].browse(partner_id).with_delay().record()
            # nothing is read; new ids come now and then, outside the transaction
            assert all(sent.startswith("SELECT nextval(") for sent in counting.sent)
            fetched += len(counting.sent)
            assert _waiting(cr) == 1 and not cr.in_transaction
            sent = len(counting.sent)
            cr.commit()
            assert len(counting.sent) == sent + 1
            message = counting.sent[-1]
            # the INSERT is prepared on a connection once, and the user's company
            # looked up in it as the row is written
            connection = cr._cnx.info.backend_pid
            prepare = re.match(
                r'BEGIN; PREPARE (job_worker_\d+) AS INSERT INTO "queue_job"', message
            )
            if prepare:
                assert connection not in names
                assert '(SELECT company_id FROM "res_users" WHERE id = $' in message
                names[connection] = prepare.group(1)
            name = names.get(connection, r"job_worker_\d+")  # (or by an earlier test)
            assert re.search(rf"(BEGIN|\)); EXECUTE {name}\({job.id}, ", message)
            # with the COMMIT, the next block of ids once this one is used up
            refill = re.search(
                r"; SELECT pg_notify\('job_worker', current_schema\(\)\)"
                r"(; SELECT nextval\('\"queue_job_id_seq\"'::regclass\)"
                r" FROM generate_series\(1, \d+\))?; COMMIT$",
                message,
            )
            assert refill
            refilled += bool(refill.group(1))
        finally:
            cr.close()
        with qregistry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            stored = env["queue.job"].browse(job.id)
            assert (stored.user_id.id, stored.company_id) == (SUPERUSER_ID, env.user.company_id)
    assert fetched <= 2 and refilled  # blocks of 1, 2, then 4 ids with a commit


def test_an_enqueue_after_the_applications_deallocate_all_commits(qregistry):
    if qregistry.backend.dialect != "postgresql":
        pytest.skip("PostgreSQL's prepared statements")
    partner_id = _partner_id(qregistry)
    ids = []
    with qregistry.cursor() as cr:  # one connection throughout
        partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse(partner_id)
        ids.append(partner.with_delay().record().id)
        cr.commit()  # the INSERT is prepared on the connection
        cr.execute("DEALLOCATE ALL")  # and dropped by the application
        ids.append(partner.with_delay().record().id)
        cr.commit()  # prepared again, not executed by a name that is gone
    with qregistry.cursor() as cr:
        stored = api.Environment(cr, SUPERUSER_ID, {})["queue.job"].browse(ids).exists()
        assert sorted(stored.ids) == sorted(ids)


def test_the_users_company_is_the_one_it_has_when_the_job_is_written(qregistry):
    partner_id = _partner_id(qregistry)
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        first = env["res.company"].create({"name": "First"})
        second = env["res.company"].create({"name": "Second"})
        user = env["res.users"].create({"name": "Ann", "login": "ann", "company_id": first.id})
        user_id, first_id, second_id = user.id, first.id, second.id
    companies = []
    for company_id in (first_id, second_id):
        with qregistry.cursor() as cr:  # another process changes the user's company
            api.Environment(cr, SUPERUSER_ID, {})["res.users"].browse(user_id).write(
                {"company_id": company_id}
            )
        with qregistry.cursor() as cr:
            env = api.Environment(cr, user_id, {})
            job = env["res.partner"].browse(partner_id).with_delay().record()
            companies.append(job.company_id.id)
    assert companies == [first_id, second_id]
    with qregistry.cursor() as cr:
        jobs = api.Environment(cr, SUPERUSER_ID, {})["queue.job"].search([], order="id")
        assert [job.company_id.id for job in jobs] == [first_id, second_id]


def test_with_the_company_in_the_context_nothing_is_looked_up(qregistry):
    partner_id = _partner_id(qregistry)
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        company_id = env["res.company"].create({"name": "Branch"}).id
        partner = env["res.partner"].browse(partner_id).with_company(company_id)
        job = partner.with_delay().record()
        assert _waiting(cr) == (1 if cr.defers_inserts else 0)
        assert job.company_id.id == company_id  # known: no read
        assert _waiting(cr) == (1 if cr.defers_inserts else 0)
    with qregistry.cursor() as cr:
        cr.execute("SELECT company_id FROM queue_job WHERE id = %s", (job.id,))
        assert cr.fetchone()[0] == company_id


def test_a_job_reads_its_looked_up_company_once_written(qregistry):
    partner_id = _partner_id(qregistry)
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        job = env["res.partner"].browse(partner_id).with_delay().record()
        assert _waiting(cr) == (1 if cr.defers_inserts else 0)
        assert job.company_id == env.user.company_id  # a read: the row goes first
        assert _waiting(cr) == 0


def test_sqlite_writes_a_single_enqueue_at_once_as_before(qregistry):
    partner_id = _partner_id(qregistry)
    with qregistry.cursor() as cr:
        if cr.defers_inserts:
            pytest.skip("PostgreSQL defers the rows")
        env = api.Environment(cr, SUPERUSER_ID, {})
        sql_count = cr.sql_count
        job = env["res.partner"].browse(partner_id).with_delay().record()
        assert _waiting(cr) == 0
        assert cr.sql_count == sql_count + 2  # the user's row, the INSERT, as before
        cr.execute("SELECT id, company_id FROM queue_job")
        assert cr.fetchall() == [(job.id, env.user.company_id.id)]


def test_a_commit_sends_the_notify_with_the_commit_and_begin_goes_with_the_first_statement(
    qregistry,
):
    with qregistry.cursor() as cr:
        if not cr.defers_inserts:
            pytest.skip("SQLite has no NOTIFY")
        partner_id = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].create({"name": "A"}).id
    cr = qregistry.cursor()
    try:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["res.partner"].browse(partner_id).with_delay().record()
        cr.flush()  # its row, written now (with the BEGIN)
        assert _waiting(cr) == 0 and cr.in_transaction
        counting = cr._cur = _Counting(cr._cur)
        cr.commit()
        assert counting.sent == [
            "SELECT pg_notify('job_worker', current_schema()); COMMIT"
        ]  # one round trip
        assert not cr.in_transaction
        counting.sent.clear()
        api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse(partner_id).name  # noqa: B018
        assert len(counting.sent) == 1 and counting.sent[0].startswith("BEGIN; SELECT")
        assert cr.in_transaction
        cr.commit()
    finally:
        cr.close()
    with qregistry.cursor() as cr:
        assert _count(cr) == 1


def test_many_waiting_jobs_go_with_copy_before_the_commit(qregistry):
    partner_id = _partner_id(qregistry)
    cr = qregistry.cursor()
    try:
        if not cr.defers_inserts:
            pytest.skip("SQLite writes each job at once")
        partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse(partner_id)
        ids = [partner.with_delay().record(str(i)).id for i in range(20)]
        counting = cr._cur = _Counting(cr._cur)
        cr.commit()
        # the user's company read first (COPY takes values), with the BEGIN
        assert [sent.split(" ")[0] for sent in counting.sent] == ["BEGIN;", "copy", "SELECT"]
        lookup = '(SELECT company_id FROM "res_users" WHERE id = 1)'
        assert counting.sent[0] == f"BEGIN; SELECT 0, {lookup}"
    finally:
        cr.close()
    with qregistry.cursor() as cr:
        company_id = api.Environment(cr, SUPERUSER_ID, {}).user.company_id.id
        cr.execute("SELECT id, company_id FROM queue_job ORDER BY id")
        assert cr.fetchall() == [(job_id, company_id) for job_id in ids]


def test_jobs_of_two_users_in_one_copy_take_each_its_users_company(qregistry):
    partner_id = _partner_id(qregistry)
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        users = []
        for name in ("Ann", "Bob"):
            company = env["res.company"].create({"name": name})
            users.append(
                env["res.users"].create({"name": name, "login": name, "company_id": company.id})
            )
        expected = {user.id: user.company_id.id for user in users}
    with qregistry.cursor() as cr:
        if not cr.defers_inserts:
            pytest.skip("SQLite writes each job at once")
        envs = [api.Environment(cr, user_id, {}) for user_id in expected]
        for i in range(40):  # the two users' lookups alternate from row to row
            envs[i % 2]["res.partner"].browse(partner_id).with_delay().record(str(i))
    with qregistry.cursor() as cr:
        cr.execute("SELECT user_id, company_id FROM queue_job ORDER BY id")
        rows = cr.fetchall()
    assert len(rows) == 40 and all(company == expected[user] for user, company in rows)


def test_many_jobs_go_while_created_each_with_its_users_company_and_counted(qregistry):
    from job_worker.db.postgres import SEND_AHEAD_ROWS

    partner_id = _partner_id(qregistry)
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        users = []
        for name in ("Ann", "Bob", "Cy"):
            company = env["res.company"].create({"name": name})
            users.append(
                env["res.users"].create({"name": name, "login": name, "company_id": company.id})
            )
        expected = {user.id: user.company_id.id for user in users}
    with qregistry.cursor() as cr:
        envs = [api.Environment(cr, user.id, {}) for user in users]

        def enqueue(env, i):
            env["res.partner"].browse(partner_id).with_delay(channel="bulk").record(str(i))

        for i in range(SEND_AHEAD_ROWS + 10):  # Ann's and Bob's, alternating
            enqueue(envs[i % 2], i)
        assert _waiting(cr) < SEND_AHEAD_ROWS  # sent ahead, by batches
        for i in range(5):  # Cy's company, not read yet: read before the next batch goes
            enqueue(envs[2], i)
        for i in range(SEND_AHEAD_ROWS):
            enqueue(envs[0], i)
        total = 2 * SEND_AHEAD_ROWS + 15
        assert job_store(cr.backend).queued_counts(cr) == {("bulk", "pending"): total}
    with qregistry.cursor() as cr:
        cr.execute("SELECT user_id, company_id FROM queue_job ORDER BY id")
        rows = cr.fetchall()
    assert len(rows) == total and all(company == expected[user] for user, company in rows)
    assert [user for user, _company in rows].count(users[2].id) == 5


def test_rollback_drops_the_waiting_jobs(qregistry):
    with qregistry.cursor() as cr:
        partner_id = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].create({"name": "A"}).id
    cr = qregistry.cursor()
    try:
        partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse(partner_id)
        for i in range(5):
            partner.with_delay().record(str(i))
        cr.rollback()
        assert _waiting(cr) == 0
        assert _count(cr) == 0
        partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse(partner_id)
        partner.with_delay().record("after")  # a new transaction starts over
        cr.commit()
    finally:
        cr.close()
    with qregistry.cursor() as cr:
        assert _count(cr) == 1


def test_a_rolled_back_savepoint_drops_its_waiting_jobs_only(qenv, partner):
    cr = qenv.cr
    kept = [partner.with_delay().record(f"kept {i}") for i in range(3)]
    with pytest.raises(RuntimeError), cr.savepoint():
        for i in range(3):
            partner.with_delay().record(f"undone {i}")
        raise RuntimeError("undo")
    kept.append(partner.with_delay().record("kept after"))
    cr.execute("SELECT id FROM queue_job ORDER BY id")
    assert [row[0] for row in cr.fetchall()] == [job.id for job in kept]


def test_a_lazy_savepoint_rolled_back_before_it_opened_drops_its_jobs(qenv, partner):
    cr = qenv.cr
    before = [partner.with_delay().record(f"before {i}") for i in range(2)]
    marks = cr.callback_marks()
    with cr.lazy_savepoint() as name:
        partner.with_delay().record("inside")  # its id may come from a block: no statement
        cr.rollback_to_savepoint(name, marks)
    cr.execute("SELECT id FROM queue_job ORDER BY id")
    assert [row[0] for row in cr.fetchall()] == [job.id for job in before]


def test_ids_come_from_the_processs_blocks_in_order_and_few_are_lost(qregistry):
    with qregistry.cursor() as cr:
        partner_id = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].create({"name": "A"}).id
    for count in (1, 2, 3, 17, 300):
        with qregistry.cursor() as cr:
            partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse(partner_id)
            ids = [partner.with_delay().record().id for _ in range(count)]
        with qregistry.cursor() as cr:
            cr.execute("SELECT max(id) FROM queue_job")
            assert cr.fetchone()[0] == ids[-1]
            if not cr.defers_inserts:
                continue
            # the ids the process holds still come next, after the last one used
            held = cr.backend.id_blocks.lowest_free("queue_job")
            assert held is None or held == ids[-1] + 1
            cr.execute("SELECT nextval('\"queue_job_id_seq\"')")
            lost = cr.fetchone()[0] - ids[-1] - 1  # held: lost if the process ended now
            assert 0 <= lost < db_ids.IdBlocks.MAX
            cr.rollback()


def test_identity_keys_resolve_at_once_to_the_active_job(qenv, partner):
    cr = qenv.cr
    partner.with_delay().record("plain")
    waiting = partner.with_delay().record("plain 2")
    first = partner.with_delay(identity_key="same").record("a")
    assert _waiting(cr) == 0  # written (with the plain job before it) at once
    again = partner.with_delay(identity_key="same").record("a")
    assert again == first and again.id != waiting.id
    assert qenv["queue.job"].search_count([("identity_key", "=", "same")]) == 1


def test_a_store_hook_writes_its_job_at_once(qenv, partner):
    partner.with_delay().record("plain")
    lead = qenv["crm.lead"].create({"name": "L"})
    hooked = [lead.with_context(store_hook="extra").with_delay().qualify() for _ in range(2)]
    assert _waiting(qenv.cr) == 0
    assert {job.origin for job in hooked} == {"lead-hook"}


def test_graphs_and_bounded_channels_write_at_once(qenv, partner):
    cr = qenv.cr
    partner.with_delay().record("plain")
    chain(partner.delayable().record("a"), partner.delayable().record("b")).delay()
    assert _waiting(cr) == 0
    qenv["queue.limit"].set_limit("bounded", 4, max_depth=3)
    for i in range(3):
        partner.with_delay(channel="bounded").record(str(i))
    assert _waiting(cr) == 0
    assert qenv["queue.job"].search_count([("channel", "=", "bounded")]) == 3


def test_kept_counts_stay_exact_with_jobs_written_together(qenv, partner):
    cr = qenv.cr
    for i in range(60):
        partner.with_delay(channel="root.a" if i % 3 else "root.b").record(str(i))
    cr.execute(
        "SELECT channel, state, COUNT(*) FROM queue_job"
        " WHERE state IN ('waiting', 'pending') GROUP BY channel, state"
    )
    live = {(channel, state): int(n) for channel, state, n in cr.fetchall()}
    assert live == {("root.a", "pending"): 40, ("root.b", "pending"): 20}
    assert job_store(cr.backend).queued_counts(cr) == live


@pytest.fixture
def refusing(qregistry) -> int:
    """A database that refuses jobs named "refused" (PostgreSQL: SQLite writes each job
    at once); the id of a partner to enqueue on."""
    with qregistry.cursor() as cr:
        if not cr.defers_inserts:
            pytest.skip("SQLite writes each job at once")
        partner_id = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].create({"name": "A"}).id
        cr.execute("ALTER TABLE queue_job ADD CONSTRAINT refused CHECK (name <> 'refused')")
    return partner_id


def test_an_error_in_a_waiting_job_names_it_at_the_next_statement(qregistry, refusing):
    partner_id = refusing
    cr = qregistry.cursor()
    try:
        env = api.Environment(cr, SUPERUSER_ID, {})
        partner = env["res.partner"].browse(partner_id)
        partner.with_delay().record("fine")
        bad = partner.with_delay(description="refused").record()
        with pytest.raises(psycopg.errors.CheckViolation) as raised:
            env["queue.job"].search_count([])
        notes = "\n".join(raised.value.__notes__)
        assert f"queue.job {bad.id} (refused)" in notes and "roll it back" in notes
        cr.rollback()
    finally:
        cr.close()
    with qregistry.cursor() as cr:
        assert _count(cr) == 0


def test_an_error_in_a_waiting_job_at_commit_commits_nothing(qregistry, refusing):
    partner_id = refusing
    cr = qregistry.cursor()
    partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse(partner_id)
    partner.with_delay().record("fine")
    bad = [partner.with_delay(description="refused").record() for _ in range(20)]
    with pytest.raises(psycopg.errors.CheckViolation) as raised:
        cr.__exit__(None, None, None)  # the end of a `with registry.cursor()` block
    assert f"queue.job {bad[0].id} (refused)" in "\n".join(raised.value.__notes__)
    with qregistry.cursor() as cr:
        assert _count(cr) == 0


def test_an_error_in_a_job_sent_with_the_commit_commits_nothing(qregistry, refusing):
    partner_id = refusing
    with qregistry.cursor() as cr:
        cr.execute("CREATE TABLE side (n integer)")
    cr = qregistry.cursor()
    try:
        env = api.Environment(cr, SUPERUSER_ID, {})
        partner = env["res.partner"].browse(partner_id)
        fine = partner.with_delay().record("fine")
        bad = partner.with_delay(description="refused").record()
        assert _waiting(cr) == 2  # both go in the COMMIT's message
        cr.precommit.add(lambda: cr.execute("INSERT INTO side VALUES (1)"))
        with pytest.raises(psycopg.errors.CheckViolation) as raised:
            cr.__exit__(None, None, None)  # the end of a `with registry.cursor()` block
        notes = "\n".join(raised.value.__notes__)
        assert f"queue.job {bad.id} (refused)" in notes and f"queue.job {fine.id} " in notes
    finally:
        cr.close()
    with qregistry.cursor() as cr:
        assert _count(cr) == 0
        cr.execute("SELECT count(*) FROM side")
        assert cr.fetchone()[0] == 0  # nothing of the transaction committed


def test_a_waiting_job_keeps_every_value_through_the_commit(qregistry):
    partner_id = _partner_id(qregistry)
    with qregistry.cursor() as cr:
        partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse(partner_id)
        job = partner.with_delay(
            priority=3, eta=60, description="it's a \\ back'slash", max_retries=0, timeout=1.5
        ).record("x\\y", value={"k": "l'é"})
        # (its company is not known before the row is written: reading it would write it)
        cached = _fields_of_cached(job)
        assert _waiting(cr) == (1 if cr.defers_inserts else 0)
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        job = env["queue.job"].browse(job.id)
        assert {name: _fields_of(job)[name] for name in cached} == cached
        assert job.company_id == env.user.company_id


def test_trap_jobs_sees_every_job_of_the_transaction(qenv, partner):
    from job_worker.testing import trap_jobs

    with trap_jobs(qenv) as trap:
        for i in range(5):
            partner.with_delay().record(f"trapped {i}")
        trap.assert_jobs_count(5, model="res.partner", method="record")
        trap.perform_enqueued_jobs()
    assert qenv["queue.job"].search_count([("state", "=", "done")]) == 5


def test_trap_jobs_sees_jobs_whose_ids_are_below_another_processs(qregistry):
    from job_worker.testing import trap_jobs

    partner_id = _partner_id(qregistry)
    with qregistry.cursor() as cr:
        if not cr.defers_inserts:
            pytest.skip("SQLite takes no ids ahead")
        partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse(partner_id)
        for _ in range(10):  # until a block has ids left (blocks of 1, 2, 4…)
            partner.with_delay().record("before")
            if qregistry.backend.id_blocks.lowest_free("queue_job") is not None:
                break
    held = qregistry.backend.id_blocks.lowest_free("queue_job")
    assert held is not None  # this process holds ids for its next jobs
    with psycopg.connect(qregistry.backend.url, autocommit=True) as other:
        # another process's job, committed with a higher id
        other.execute(
            "CREATE TEMP TABLE copied AS SELECT * FROM queue_job ORDER BY id LIMIT 1;"
            " UPDATE copied SET id = nextval('\"queue_job_id_seq\"'), uuid = 'other',"
            " method_name = 'other';"
            " INSERT INTO queue_job SELECT * FROM copied"
        )
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        with trap_jobs(env) as trap:
            job = env["res.partner"].browse(partner_id).with_delay().record("mine")
            assert job.id == held
            trap.assert_jobs_count(1, model="res.partner", method="record")


class _Sequence:
    """A sequence without a database: ids from a counter, the blocks asked recorded."""

    def __init__(self):
        self.blocks: list[int] = []
        self.last = 0

    def __call__(self, table, count):
        self.blocks.append(count)
        self.last += count
        return list(range(self.last - count + 1, self.last + 1))

    def skip(self, table, past):
        self.last = max(self.last, past)


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_ids_come_in_blocks_that_double_up_to_the_cap_in_order():
    blocks, sequence = db_ids.IdBlocks(clock=_Clock()), _Sequence()
    assert db_ids.IdBlocks.MAX == 1024
    ids = [i for _ in range(3000) for i in blocks.take("t", 1, sequence, sequence.skip)]
    assert ids == list(range(1, 3001))
    assert sequence.blocks == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1024]
    assert blocks.take("t", 3, sequence, sequence.skip) == [3001, 3002, 3003]
    # more than the block holds: another block, as big as the cap
    assert blocks.take("t", 500, sequence, sequence.skip)[-1] == 3503
    assert sequence.blocks[-1] == 1024 and blocks.lowest_free("t") == 3504
    free = sum(sequence.blocks) - 3503
    # more than a block: what it asks
    assert blocks.take("t", 5000, sequence, sequence.skip)[-1] == 8503
    assert sequence.blocks[-1] == 5000 - free
    assert blocks.lowest_free("t") is None and blocks.lowest_free("other") is None


def test_ids_held_ahead_come_as_a_block_and_are_handed_out_in_order():
    blocks, sequence = db_ids.IdBlocks(clock=_Clock()), _Sequence()
    blocks.hold("t", 2, sequence, sequence.skip)  # no ids of the table taken: none held
    assert sequence.blocks == []
    assert blocks.take("t", 3, sequence, sequence.skip) == [1, 2, 3]  # a block of 3
    blocks.hold("t", 2, sequence, sequence.skip)  # none left: the next block, not used
    assert sequence.blocks == [3, 6] and blocks.lowest_free("t") == 4
    blocks.hold("t", 6, sequence, sequence.skip)  # enough already: nothing taken
    assert sequence.blocks == [3, 6]
    assert blocks.take("t", 7, sequence, sequence.skip) == list(range(4, 11))
    assert sequence.blocks == [3, 6, 12]


def test_ids_held_too_long_are_dropped_and_the_next_block_fits_the_pace():
    clock, sequence = _Clock(), _Sequence()
    blocks = db_ids.IdBlocks(clock=clock)
    for _ in range(7):  # blocks of 1, 2, 4: the last one is taken whole
        blocks.take("t", 1, sequence, sequence.skip)
    assert sequence.blocks == [1, 2, 4]
    blocks.take("t", 1, sequence, sequence.skip)  # a block of 8 for the 8th id
    blocks.take("t", 1, sequence, sequence.skip)
    assert blocks.lowest_free("t") == 10
    clock.now += db_ids.KEEP_SECONDS + 0.1
    assert blocks.take("t", 1, sequence, sequence.skip) == [16]  # 10 to 15 are lost
    assert sequence.blocks == [1, 2, 4, 8, 2]  # as many as the dropped block gave


def test_a_block_used_up_at_a_steady_pace_is_refilled_to_last_half_the_keep_time():
    clock, sequence = _Clock(), _Sequence()
    blocks = db_ids.IdBlocks(clock=clock)
    assert blocks.refill_size("t").size == 0  # no ids of the table taken
    blocks.take("t", 1, sequence, sequence.skip)
    assert blocks.refill_size("t").size == 0  # a block of one: no pace to go by
    clock.now += 0.02
    blocks.take("t", 1, sequence, sequence.skip)  # a block of 2, one id held
    assert blocks.refill_size("t").size == 0  # ids left
    clock.now += 0.02
    blocks.take("t", 1, sequence, sequence.skip)
    # used up in 20 ms: doubled (2 ids in 20 ms would allow 50 in half a second)
    assert blocks.refill_size("t") == (4, 3)
    blocks.refill("t", sequence("t", 4), 3)
    assert blocks.lowest_free("t") == 4 and sequence.blocks == [1, 2, 4]
    for _ in range(4):  # 4 ids in 800 ms
        clock.now += 0.2
        blocks.take("t", 1, sequence, sequence.skip)
    assert sequence.blocks == [1, 2, 4]  # none asked by a take
    assert blocks.refill_size("t") == (2, 7)  # what half a second holds at that pace
    blocks.refill("t", sequence("t", 2), 7)
    blocks.take("t", 1, sequence, sequence.skip)
    blocks.take("t", 1, sequence, sequence.skip)
    clock.now += db_ids.KEEP_SECONDS  # a long transaction used the last id, then commits
    assert blocks.refill_size("t").size == 0  # the next take sizes the next block itself


def test_ids_refilled_come_in_order_with_those_held_and_a_set_back_sequence_is_left_to_take():
    clock, sequence = _Clock(), _Sequence()
    blocks = db_ids.IdBlocks(clock=clock)
    blocks.refill("t", [5, 6], 0)  # a table whose ids were never taken: nothing
    assert blocks.lowest_free("t") is None
    for _ in range(2):  # blocks of 1, then 2: id 3 held
        blocks.take("t", 1, sequence, sequence.skip)
    blocks.refill("t", sequence("t", 2), 3)  # after the one held
    assert [blocks.take("t", 1, sequence, sequence.skip)[0] for _ in range(3)] == [3, 4, 5]
    sequence.last = 0  # set back: ids the process used already come again
    blocks.refill("t", sequence("t", 6), 5)  # 1 to 6: the next ids would pass the check
    assert blocks.lowest_free("t") is None  # left unused
    # the sequence gives ids past those taken (the refill's): the take moves it on anyway,
    # past the table's rows (another process's, made before it was set back)
    skipped = []
    take = blocks.take(
        "t", 1, sequence, lambda t, past: skipped.append(past) or sequence.skip(t, past)
    )
    assert take[0] > 6 and skipped == [5]


def test_ids_refilled_while_another_thread_took_a_block_are_handed_out_in_order():
    clock, sequence = _Clock(), _Sequence()
    blocks = db_ids.IdBlocks(clock=clock)
    for _ in range(3):  # blocks of 1 and 2, used up
        blocks.take("t", 1, sequence, sequence.skip)
    refill = blocks.refill_size("t")
    assert refill == (4, 3)
    mine = sequence("t", 4)  # this commit's block: 4 to 7
    # meanwhile another thread used up the block and took the next one (8 to 11)
    assert blocks.take("t", 1, sequence, sequence.skip) == [8]
    blocks.refill("t", mine, refill.after)  # not a set-back: above what was taken then
    taken = [blocks.take("t", 1, sequence, sequence.skip)[0] for _ in range(7)]
    assert taken == [4, 5, 6, 7, 9, 10, 11]


def test_single_enqueues_at_a_steady_pace_never_wait_for_a_block_of_ids(qregistry, monkeypatch):
    partner_id = _partner_id(qregistry)
    with qregistry.cursor() as cr:
        if not cr.defers_inserts:
            pytest.skip("SQLite takes no ids ahead")
        cursor_class = type(cr)
    clock = _Clock()
    monkeypatch.setattr(qregistry.backend, "id_blocks", db_ids.IdBlocks(clock=clock))
    waited = []
    fetch = cursor_class._fetch_ids
    monkeypatch.setattr(
        cursor_class, "_fetch_ids", lambda cr, t, n: waited.append(n) or fetch(cr, t, n)
    )
    ids = []
    for _ in range(120):  # 50 a second
        clock.now += 0.02
        with qregistry.cursor() as cr:
            partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse(partner_id)
            ids.append(partner.with_delay().record().id)
    # the first two blocks (1, then 2) are taken as the rows ask; every later one came
    # with the commit that used the one before, and ran out before it was too old
    assert waited == [1, 2]
    assert ids == list(range(ids[0], ids[0] + 120))  # none lost, in order
    with qregistry.cursor() as cr:
        cr.execute("SELECT count(*) FROM queue_job WHERE id >= %s", [ids[0]])
        assert cr.fetchone()[0] == 120


def test_a_sequence_set_back_is_moved_past_the_ids_taken():
    blocks, sequence = db_ids.IdBlocks(clock=_Clock()), _Sequence()
    used = [i for _ in range(7) for i in blocks.take("t", 1, sequence, sequence.skip)]
    assert used == list(range(1, 8))
    sequence.last = 0  # TRUNCATE ... RESTART IDENTITY
    more = [i for _ in range(20) for i in blocks.take("t", 1, sequence, sequence.skip)]
    assert more[0] > max(used) and more == sorted(more)


def test_a_restarted_id_sequence_makes_no_duplicate_job(qregistry, caplog):
    partner_id = _partner_id(qregistry)
    with qregistry.cursor() as cr:
        if not cr.defers_inserts:
            pytest.skip("SQLite takes no ids ahead")
    for _ in range(3):  # the process holds ids from a block of 4
        with qregistry.cursor() as cr:
            partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse(partner_id)
            partner.with_delay().record()
    with qregistry.cursor() as cr:
        cr.execute("TRUNCATE queue_job RESTART IDENTITY CASCADE")
    ids = []
    for _ in range(20):  # the held ids, then blocks from the sequence set back
        with qregistry.cursor() as cr:
            partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse(partner_id)
            ids.append(partner.with_delay().record().id)
    assert ids == sorted(ids) and len(set(ids)) == 20
    assert "was set back" in caplog.text
    with qregistry.cursor() as cr:
        cr.execute("SELECT count(*) FROM queue_job")
        assert cr.fetchone()[0] == 20


def test_a_forked_child_does_not_use_its_parents_ids():
    blocks, sequence = db_ids.IdBlocks(), _Sequence()
    blocks.take("t", 1, sequence, sequence.skip)
    blocks.take("t", 1, sequence, sequence.skip)  # a block of 2: one id held
    assert blocks.lowest_free("t") == 3
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: reports what it holds, and exits at once
        os.write(write, repr(blocks.lowest_free("t")).encode())
        os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 100) == b"None"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert blocks.lowest_free("t") == 3  # the parent's stay its own


def test_threads_taking_ids_at_once_get_each_their_own():
    blocks, sequence = db_ids.IdBlocks(), _Sequence()
    taken: list[list[int]] = [[] for _ in range(4)]

    def take(mine):
        for _ in range(500):
            mine.extend(blocks.take("t", 1 + len(mine) % 3, sequence, sequence.skip))

    threads = [threading.Thread(target=take, args=(mine,)) for mine in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    every = [i for mine in taken for i in mine]
    assert len(every) == len(set(every)) == sum(len(mine) for mine in taken) > 2000
