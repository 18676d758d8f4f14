"""The jobs of one transaction go to the database together (PostgreSQL).

Plain jobs take their ids from the table's sequence in blocks (the first block in the
round trip that reads the user's company for the first job) and their rows wait on the
cursor until the next statement of the transaction, whatever it is, or its commit,
whose message carries them when they are few: a single enqueue is two round trips.
(With nothing to read, the first job of a transaction is inserted at once.) Nothing may tell
the difference: reads see them, savepoints and rollbacks undo them, counts stay
exact, and an error in one of them is raised with a note naming it. Jobs that need
the database at once (identity keys, store hooks, graphs, bounded channels,
synchronous mode) are written at once. SQLite writes every job at once.
"""

from __future__ import annotations

import psycopg
import pytest

from job_worker import SUPERUSER_ID, api
from job_worker.db.cursor import Cursor
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


def test_a_single_enqueue_is_two_round_trips(qregistry):
    partner_id = _partner_id(qregistry)
    for _ in range(2):  # the second transaction reads the user again: nothing is kept
        cr = qregistry.cursor()
        try:
            if not cr.defers_inserts:
                pytest.skip("SQLite has no round trips")
            counting = cr._cur = _Counting(cr._cur)
            env = api.Environment(cr, SUPERUSER_ID, {})
            job = env["res.partner"].browse(partner_id).with_delay().record()
            assert len(counting.sent) == 1
            first = counting.sent[0]
            assert first.startswith("BEGIN; SELECT nextval(") and '"res_users"' in first
            assert _waiting(cr) == 1  # its id is taken: its row goes with the commit
            cr.commit()
            assert len(counting.sent) == 2
            assert counting.sent[1].startswith('INSERT INTO "queue_job"')
            assert counting.sent[1].endswith(
                "; SELECT pg_notify('job_worker', current_schema()); COMMIT"
            )
        finally:
            cr.close()
        with qregistry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            stored = env["queue.job"].browse(job.id)
            assert (stored.user_id.id, stored.company_id) == (SUPERUSER_ID, env.user.company_id)


def test_the_users_company_is_read_in_each_transaction(qregistry):
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


def test_with_the_company_in_the_context_the_first_job_goes_at_once(qregistry):
    partner_id = _partner_id(qregistry)
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        company_id = env["res.company"].create({"name": "Branch"}).id
        sql_count = cr.sql_count
        partner = env["res.partner"].browse(partner_id).with_company(company_id)
        job = partner.with_delay().record()
        assert _waiting(cr) == 0  # nothing to read: its INSERT gives its id
        assert cr.sql_count == sql_count + 1
        assert job.company_id.id == company_id


def test_sqlite_writes_a_single_enqueue_at_once_as_before(qregistry):
    partner_id = _partner_id(qregistry)
    with qregistry.cursor() as cr:
        if cr.defers_inserts:
            pytest.skip("PostgreSQL defers the rows")
        env = api.Environment(cr, SUPERUSER_ID, {})
        sql_count = cr.sql_count
        job = env["res.partner"].browse(partner_id).with_delay().record()
        assert _waiting(cr) == 0 and not cr.taking_ids("queue_job")
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
        env.user.company_id  # noqa: B018  (read: the first job goes at once)
        env["res.partner"].browse(partner_id).with_delay().record()
        assert _waiting(cr) == 0  # the first job of a transaction goes at once
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
        assert [sent.split(" ")[0] for sent in counting.sent] == ["copy", "SELECT"]
    finally:
        cr.close()
    with qregistry.cursor() as cr:
        cr.execute("SELECT id FROM queue_job ORDER BY id")
        assert [row[0] for row in cr.fetchall()] == ids


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


def test_ids_are_taken_in_growing_blocks_and_few_are_lost(qregistry):
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
            cr.execute("SELECT nextval('\"queue_job_id_seq\"')")
            lost = cr.fetchone()[0] - ids[-1] - 1
            assert 0 <= lost < min(count, cr.ID_BLOCK_MAX)
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
        cached = _fields_of(job)
        assert _waiting(cr) == (1 if cr.defers_inserts else 0)
    with qregistry.cursor() as cr:
        job = api.Environment(cr, SUPERUSER_ID, {})["queue.job"].browse(job.id)
        assert _fields_of(job) == cached


def test_trap_jobs_sees_every_job_of_the_transaction(qenv, partner):
    from job_worker.testing import trap_jobs

    with trap_jobs(qenv) as trap:
        for i in range(5):
            partner.with_delay().record(f"trapped {i}")
        trap.assert_jobs_count(5, model="res.partner", method="record")
        trap.perform_enqueued_jobs()
    assert qenv["queue.job"].search_count([("state", "=", "done")]) == 5


class _Blocks(Cursor):
    """A cursor without a database: ids come from a counter, blocks are recorded."""

    def __init__(self):  # (no connection)
        self._id_blocks = {}
        self.blocks: list[int] = []

    def _fetch_ids(self, table, count):
        start = sum(self.blocks) + 1
        self.blocks.append(count)
        return list(range(start, start + count))


def test_ids_come_in_blocks_that_double_up_to_the_cap_in_order():
    cr = _Blocks()
    ids = [i for _ in range(600) for i in cr.take_ids("t", 1)]
    assert ids == list(range(1, 601))
    assert cr.blocks == [1, 2, 4, 8, 16, 32, 64, 128, 128, 128, 128]
    assert cr.take_ids("t", 3) == [601, 602, 603]
    assert cr.take_ids("t", 500)[-1] == 1103  # more than a block: what it asks, no more
    assert cr.blocks[-1] == 500 - (sum(cr.blocks[:-1]) - 603)


def test_after_a_first_row_inserted_the_blocks_start_at_two():
    cr = _Blocks()
    cr.start_taking_ids("t")
    assert cr.taking_ids("t") and not cr.taking_ids("other")
    cr.take_ids("t", 1)
    assert cr.blocks == [2]
