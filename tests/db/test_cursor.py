"""The cursor: one SQL dialect for both databases, transactions, savepoints, callbacks."""

from __future__ import annotations

import logging
import sqlite3
from datetime import date, datetime

import pytest

from job_worker import SUPERUSER_ID, api
from job_worker.db import TransactionOwnedError


@pytest.fixture
def registry(make_registry):
    registry = make_registry()
    with registry.cursor() as cr:
        cr.execute("CREATE TABLE note (id INTEGER PRIMARY KEY, body VARCHAR)")
    return registry


def bodies(registry):
    """The note bodies as another transaction sees them."""
    with registry.cursor(readonly=True) as cr:
        cr.execute("SELECT body FROM note ORDER BY id")
        return [row[0] for row in cr.fetchall()]


def test_placeholders_are_percent_s_on_every_database(registry):
    with registry.cursor() as cr:
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "one"))
        cr.execute("SELECT id, body FROM note WHERE id = %s AND body = %s", [1, "one"])
        assert cr.fetchall() == [(1, "one")]


def test_a_doubled_percent_is_a_literal_percent_when_there_are_parameters(registry):
    with registry.cursor() as cr:
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "50% off"))
        cr.execute("SELECT body FROM note WHERE body LIKE '50%%' AND id = %s", [1])
        assert cr.fetchone() == ("50% off",)
        cr.execute("SELECT 'a%%b', %s", ["x"])
        assert cr.fetchone() == ("a%b", "x")


def test_a_query_without_parameters_is_sent_as_it_is(registry):
    with registry.cursor() as cr:
        cr.execute("SELECT '100%'")
        assert cr.fetchone() == ("100%",)


def test_fetchone_fetchall_fetchmany_dictfetchone_and_dictfetchall(registry):
    with registry.cursor() as cr:
        cr.executemany("INSERT INTO note (id, body) VALUES (%s, %s)", [(1, "a"), (2, "b")])
        cr.execute("SELECT id, body FROM note ORDER BY id")
        assert cr.fetchone() == (1, "a")
        assert cr.fetchone() == (2, "b")
        assert cr.fetchone() is None
        cr.execute("SELECT id, body FROM note ORDER BY id")
        assert cr.fetchall() == [(1, "a"), (2, "b")]
        cr.execute("SELECT id, body FROM note ORDER BY id")
        assert cr.fetchmany(1) == [(1, "a")]
        assert cr.fetchmany(5) == [(2, "b")]
        assert cr.fetchmany(5) == []
        cr.execute("SELECT id, body FROM note ORDER BY id")
        assert cr.dictfetchall() == [{"id": 1, "body": "a"}, {"id": 2, "body": "b"}]
        cr.execute("SELECT id AS ident FROM note WHERE id = %s", [2])
        assert cr.dictfetchone() == {"ident": 2}
        assert cr.dictfetchone() is None


def test_rowcount_tells_how_many_rows_a_statement_changed(registry):
    with registry.cursor() as cr:
        cr.executemany("INSERT INTO note (id, body) VALUES (%s, %s)", [(1, "a"), (2, "b")])
        cr.execute("UPDATE note SET body = %s", ["z"])
        assert cr.rowcount == 2


def test_commit_makes_changes_visible_to_other_transactions(registry):
    cr = registry.cursor()
    try:
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "pending"))
        assert bodies(registry) == []  # not committed yet
        cr.commit()
        assert bodies(registry) == ["pending"]
    finally:
        cr.close()


def test_rollback_discards_changes(registry):
    with registry.cursor() as cr:
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "kept"))
        cr.commit()
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (2, "dropped"))
        cr.rollback()
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (3, "later"))
    assert bodies(registry) == ["kept", "later"]


def test_a_cursor_block_that_raises_leaves_nothing(make_registry):
    registry = make_registry(["crm"])
    with pytest.raises(RuntimeError, match="boom"), registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        partner = env["res.partner"].create({"name": "Ghost"})
        env["crm.lead"].create({"name": "Ghost lead", "partner_id": partner.id})
        partner.tag_ids = [(0, 0, {"name": "ghost"})]
        raise RuntimeError("boom")
    with registry.environment() as env:
        assert env["res.partner"].search_count([("name", "=", "Ghost")]) == 0
        assert env["crm.lead"].search_count([]) == 0
        assert env["crm.tag"].search_count([]) == 0


def test_closing_a_cursor_rolls_back_what_was_not_committed(registry):
    cr = registry.cursor()
    cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "lost"))
    cr.close()
    assert cr.closed
    assert bodies(registry) == []
    with pytest.raises(RuntimeError, match="closed"):
        cr.execute("SELECT 1")


def test_a_savepoint_rolls_back_its_block_and_keeps_the_rest_of_the_transaction(registry):
    with registry.cursor() as cr:
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "before"))
        with pytest.raises(ValueError), cr.savepoint():
            cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (2, "inside"))
            raise ValueError("undo the block")
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (3, "after"))
    assert bodies(registry) == ["before", "after"]


def test_a_database_error_inside_a_savepoint_does_not_abort_the_transaction(registry):
    with registry.cursor() as cr:
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "first"))
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"), cr.savepoint():
            cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "duplicate id"))
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (2, "second"))
    assert bodies(registry) == ["first", "second"]


def test_nested_savepoints_roll_back_separately(registry):
    with registry.cursor() as cr, cr.savepoint():
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "outer"))
        with pytest.raises(KeyError), cr.savepoint():
            cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (2, "inner"))
            raise KeyError("inner only")
    assert bodies(registry) == ["outer"]


def test_a_savepoint_rollback_forgets_cached_values(make_registry):
    registry = make_registry()
    with registry.environment() as env:
        partner = env["res.partner"].create({"name": "Before"})
        with pytest.raises(ZeroDivisionError), env.cr.savepoint():
            partner.name = "Inside"
            _ = 1 / 0
        assert partner.name == "Before"


def test_a_savepoint_rollback_forgets_the_callbacks_its_block_added(registry):
    calls = []
    with registry.cursor() as cr:
        cr.postcommit.add(lambda: calls.append("before"))
        with pytest.raises(ValueError), cr.savepoint():
            cr.precommit.add(lambda: calls.append("pre, undone"))
            cr.postcommit.add(lambda: calls.append("post, undone"))
            cr.postrollback.add(lambda: calls.append("rollback, undone"))
            raise ValueError("undo the block")
        with cr.savepoint():
            cr.postcommit.add(lambda: calls.append("kept"))
    assert calls == ["before", "kept"]


def test_enqueueing_after_a_rolled_back_enqueue_still_wakes_workers(make_registry):
    registry = make_registry()
    with registry.environment() as env:
        with pytest.raises(ValueError), env.cr.savepoint():
            env["res.partner"].with_delay().exists()
            raise ValueError("undo the first enqueue")
        env["res.partner"].with_delay().exists()
        wake = env.cr.precommit if env.cr.dialect == "postgresql" else env.cr.postcommit
        assert len(wake) == 1  # the wake-up the savepoint took away is added again


def test_the_wake_up_is_asked_for_once_per_transaction_and_again_after_a_commit(make_registry):
    registry = make_registry()
    with registry.environment() as env:
        wake = env.cr.precommit if env.cr.dialect == "postgresql" else env.cr.postcommit
        for _ in range(3):
            env["res.partner"].with_delay().exists()
        assert len(wake) == 1
        env.cr.commit()
        assert len(wake) == 0  # run by the commit
        env["res.partner"].with_delay().exists()
        assert len(wake) == 1  # the next transaction's jobs wake the workers too


def test_an_owned_transaction_refuses_commit_and_rollback_in_its_block(registry):
    with registry.cursor() as cr:
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "kept"))
        with cr.owned("the caller ends it"):
            with pytest.raises(TransactionOwnedError, match="cannot commit here: the caller"):
                cr.commit()
            with pytest.raises(TransactionOwnedError, match="cannot roll back here"):
                cr.rollback()
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (2, "after"))
    assert bodies(registry) == ["kept", "after"]


def test_postcommit_callbacks_run_only_after_a_commit(registry):
    calls = []
    with registry.cursor() as cr:
        cr.postcommit.add(lambda: calls.append(bodies(registry)))
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "done"))
        assert calls == []
    assert calls == [["done"]]  # ran after the commit: another transaction sees the row


def test_postcommit_callbacks_are_dropped_on_rollback(registry):
    calls = []
    with registry.cursor() as cr:
        cr.postcommit.add(lambda: calls.append("dropped"))
        cr.rollback()
        cr.postcommit.add(lambda: calls.append("kept"))
    assert calls == ["kept"]
    with pytest.raises(RuntimeError), registry.cursor() as cr:
        cr.postcommit.add(lambda: calls.append("never"))
        raise RuntimeError
    assert calls == ["kept"]


def test_postrollback_callbacks_run_on_rollback_only(registry):
    calls = []
    with registry.cursor() as cr:
        cr.postrollback.add(lambda: calls.append("rolled back"))
        cr.rollback()
        cr.postrollback.add(lambda: calls.append("not after a commit"))
    assert calls == ["rolled back"]


def test_precommit_callbacks_run_inside_the_transaction_before_it_commits(registry):
    with registry.cursor() as cr:
        cr.precommit.add(
            lambda: cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (9, "pre"))
        )
    assert bodies(registry) == ["pre"]


def test_a_failing_postcommit_callback_is_logged_and_the_others_still_run(registry, caplog):
    calls = []

    def fail():
        raise RuntimeError("callback failed")

    with caplog.at_level(logging.ERROR), registry.cursor() as cr:
        cr.postcommit.add(fail)
        cr.postcommit.add(lambda: calls.append("second"))
    assert calls == ["second"]
    assert any(getattr(r, "event", None) == "db.callback_failed" for r in caplog.records)


def test_sql_count_counts_the_statements_sent(registry):
    with registry.cursor() as cr:
        start = cr.sql_count
        cr.execute("SELECT 1")
        cr.executemany("INSERT INTO note (id, body) VALUES (%s, %s)", [(1, "a"), (2, "b")])
        assert cr.sql_count - start == 2


def test_commit_and_rollback_forget_the_record_cache(make_registry):
    registry = make_registry()
    with registry.environment() as env:
        env["res.partner"].create({"name": "Cached"})
        assert env.cache
        env.cr.commit()
        assert not env.cache


def test_statements_sent_together_each_give_their_rows(registry):
    with registry.cursor() as cr:
        results = cr.execute_together(
            [
                ("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "it's \\ 100%")),
                ("SELECT body FROM note WHERE id = %s", (1,)),
                ("SELECT 1 WHERE false", ()),
            ]
        )
        assert results == [[], [("it's \\ 100%",)], []]
        assert cr.sql_count == 3
    assert bodies(registry) == ["it's \\ 100%"]


def test_a_lazy_savepoint_costs_nothing_when_its_block_sends_no_statement(registry):
    with registry.cursor() as cr:
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "kept"))
        before = cr.sql_count
        marks = cr.callback_marks()
        with cr.lazy_savepoint() as savepoint:
            cr.postcommit.add(lambda: None)
            cr.rollback_to_savepoint(savepoint, marks)  # nothing to undo but the callback
        assert cr.sql_count == before
        assert len(cr.postcommit) == 0
        cr.execute("SELECT 1")  # after the block: no savepoint opens
        assert cr.sql_count == before + 1
    assert bodies(registry) == ["kept"]


def test_a_lazy_savepoint_opens_before_its_block_s_first_statement(registry):
    with registry.cursor() as cr:
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "kept"))
        marks = cr.callback_marks()
        with cr.lazy_savepoint() as savepoint:
            cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (2, "undone"))
            cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (3, "undone too"))
            cr.rollback_to_savepoint(savepoint, marks)
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (4, "after"))
    assert bodies(registry) == ["kept", "after"]


def test_the_next_lazy_savepoint_releases_the_one_before(registry):
    with registry.cursor() as cr:
        with cr.lazy_savepoint() as first:
            cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "first"))
        with cr.lazy_savepoint():
            cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (2, "second"))
        with pytest.raises(Exception, match=r"(?i)no such savepoint|does not exist"):
            cr.execute(f'ROLLBACK TO SAVEPOINT "{first}"')  # released: no nesting piles up


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_lazy_savepoint_goes_with_the_statements_sent_together(registry, monkeypatch):
    import psycopg

    scripts = []
    real = psycopg.Cursor.execute

    def spy(self, query, *args, **kwargs):
        scripts.append(query)
        return real(self, query, *args, **kwargs)

    with registry.cursor() as cr:
        cr.execute("SELECT 1")
        monkeypatch.setattr(psycopg.Cursor, "execute", spy)
        with cr.lazy_savepoint():
            assert cr.execute_together([("SELECT %s", (5,))]) == [[(5,)]]
        monkeypatch.undo()
    assert len(scripts) == 1 and b"SAVEPOINT" in scripts[0]  # one round trip


def test_no_statement_sent_together_sends_nothing(registry):
    with registry.cursor() as cr:
        before = cr.sql_count
        assert cr.execute_together([]) == [] and cr.execute_together([], prepared=True) == []
        assert cr.sql_count == before


def test_statements_run_and_commit_together(registry):
    with registry.cursor() as cr:
        results = cr.execute_and_commit(
            [("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "one")), ("SELECT 2", ())]
        )
        assert results == [[], [(2,)]]
        assert bodies(registry) == ["one"]  # committed: another transaction sees it


def test_prepared_statements_give_the_same_rows_every_time(registry):
    insert = "INSERT INTO note (id, body) VALUES (%s, %s) RETURNING id, body"
    with registry.cursor() as cr:
        for number in (1, 2, 3):
            rows = cr.execute_together([(insert, (number, f"{number}% off"))], prepared=True)
            assert rows == [[(number, f"{number}% off")]]
        count = "SELECT count(*) FROM note WHERE body LIKE '%% off' AND id > %s"  # a literal %
        assert cr.execute_together([(count, (1,))], prepared=True) == [[(2,)]]
        assert cr.execute_together([(count, (2,))], prepared=True) == [[(1,)]]
    assert bodies(registry) == ["1% off", "2% off", "3% off"]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_prepared_statements_outlive_a_rollback_of_the_applications_transaction(registry, db_url):
    # psycopg would prepare a statement run five times by itself, and answer the next
    # rollback by deallocating every statement of the connection: the pool's connections
    # let it prepare none, so the product's own stay
    count = ("SELECT count(*) FROM note WHERE id > %s", (0,))
    with registry.cursor() as cr:
        assert cr.execute_together([count], prepared=True) == [[(0,)]]
        for number in range(8):
            cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (number, "x"))
        cr.rollback()
        assert cr.execute_together([count], prepared=True) == [[(0,)]]
        cr.execute("DEALLOCATE ALL")  # run by the application: they are prepared again
        assert cr.execute_together([count], prepared=True) == [[(0,)]]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_failed_message_commits_nothing_and_its_statements_are_prepared_again(registry, db_url):
    from job_worker.db import jobstore

    session = jobstore.for_backend(registry.backend).session(role="executor")
    insert = ("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "duplicate"))
    try:
        cr = session.cursor(registry)
        cr.execute_and_commit([insert])
        failing = ("SELECT count(*) FROM note WHERE id = %s", (1,))
        with pytest.raises(Exception, match="duplicate key"):  # the COMMIT did not run
            cr.execute_and_commit([insert, failing], prepared=True)
        cr.rollback()
        # the statement after the error was never prepared: it is prepared now, and
        # whether a statement of a failed message was prepared or not, it runs again
        assert cr.execute_together([failing], prepared=True) == [[(1,)]]
        with pytest.raises(Exception, match="duplicate key"):
            cr.execute_together([failing, insert], prepared=True)
        cr.rollback()
        assert cr.execute_together([failing, failing], prepared=True) == [[(1,)], [(1,)]]
        cr.close()
    finally:
        session.close()
    assert bodies(registry) == ["duplicate"]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_cursor_on_an_autocommit_connection_opens_its_transaction_itself(registry, db_url):
    from job_worker.db import jobstore

    session = jobstore.for_backend(registry.backend).session(role="executor")
    try:
        cr = session.cursor(registry)
        assert cr.execute_together([("SELECT %s", (7,))]) == [[(7,)]]  # BEGIN went with it
        assert cr.in_transaction
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "rolled back"))
        cr.rollback()
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (2, "committed"))
        assert cr.in_transaction  # a new transaction, begun by the cursor
        cr.commit()
        cr.close()
    finally:
        session.close()
    assert bodies(registry) == ["committed"]


def test_connections_opened_at_once_on_a_new_file_all_switch_it_to_wal(tmp_path):
    # SQLite answers "database is locked" at once, without its busy handler, to a
    # connection switching a new file to WAL while another one is doing so
    import threading

    from job_worker.db import connect

    errors: list[BaseException] = []
    for round_ in range(40):
        backend = connect(f"sqlite:///{tmp_path / f'fresh-{round_}.db'}")
        start = threading.Barrier(4)

        def open_one(backend=backend, start=start) -> None:
            start.wait(timeout=10)
            try:
                cnx = backend.connect()
                assert cnx.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                cnx.close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_stores_datetimes_as_text_that_sorts_like_time_without_global_adapters(registry):
    adapters = dict(sqlite3.adapters)
    with registry.cursor() as cr:
        cr.execute("CREATE TABLE moment (at TIMESTAMP, day DATE)")
        cr.execute("INSERT INTO moment VALUES (%s, %s)", [datetime(2026, 1, 2, 3, 4, 5), None])
        cr.executemany(
            "INSERT INTO moment VALUES (%s, %s)",
            [(datetime(2026, 1, 2, 3, 4, 5, 6), date(2026, 1, 2)), ("as text", "as text")],
        )
        cr.execute("SELECT at, day FROM moment ORDER BY rowid")
        assert cr.fetchall() == [
            ("2026-01-02 03:04:05.000000", None),
            ("2026-01-02 03:04:05.000006", "2026-01-02"),
            ("as text", "as text"),
        ]
    assert dict(sqlite3.adapters) == adapters


def test_limit_and_offset_read_the_same_rows_on_every_database(registry):
    with registry.cursor() as cr:
        cr.executemany(
            "INSERT INTO note (id, body) VALUES (%s, %s)", [(i, str(i)) for i in range(5)]
        )
        for limit, offset, ids in ((None, 0, [0, 1, 2, 3, 4]), (2, 0, [0, 1]), (None, 3, [3, 4])):
            cr.execute("SELECT id FROM note ORDER BY id" + cr.backend.limit_offset(limit, offset))
            assert [row[0] for row in cr.fetchall()] == ids
        cr.execute("SELECT id FROM note ORDER BY id" + cr.backend.limit_offset(2, 1))
        assert [row[0] for row in cr.fetchall()] == [1, 2]


def test_the_orm_writes_datetime_columns_in_the_form_the_database_binds(registry):
    write = registry.backend.column_writer("datetime")
    if registry.backend.dialect == "postgresql":
        assert write is None  # psycopg binds datetimes itself
        return
    assert write(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05.000000"
    assert write(None) is None and write("already text") == "already text"
    assert registry.backend.column_writer("varchar") is None


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_rows_written_later_keep_their_lookups_in_place(registry, db_url):
    # rows of one batch, some with a lookup (a subquery of the prepared INSERT, its
    # parameters among the statement's) and some without, in every order
    with registry.cursor() as cr:
        cr.execute("INSERT INTO note (id, body) VALUES (%s, %s)", (1, "one"))
        cr.commit()
        first = cr.lookup("SELECT body || %s FROM note WHERE id = %s", ("!", 1))
        gone = cr.lookup("SELECT body FROM note WHERE id = %s", (99,))
        rows = [(2, first), (3, "three"), (4, gone), (5, first), (6, "six's")]
        cr.defer_insert("note", ("id", "body"), rows, lambda row: f"note {row[0]}")
        cr.commit()
        cr.defer_insert("note", ("id", "body"), [(7, "seven"), (8, first)], str)
        cr.commit()
    assert bodies(registry) == ["one", "one!", "three", None, "one!", "six's", "seven", "one!"]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_connection_prepares_a_bounded_number_of_statements(registry, db_url, monkeypatch):
    from job_worker.db import postgres

    monkeypatch.setattr(postgres, "MAX_PREPARED", 2)
    with registry.cursor() as cr:
        postgres._PREPARED.pop(cr._cnx, None)
        cr.execute("SELECT count(*) FROM pg_prepared_statements")
        (before,) = cr.fetchone()
        results = [
            cr.execute_together([(f"SELECT %s + {n}", (n,))], prepared=True) for n in range(4)
        ]
        assert results == [[[(0,)]], [[(2,)]], [[(4,)]], [[(6,)]]]  # the last two inlined
        assert len(postgres._PREPARED[cr._cnx]) == 2
        cr.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cr.fetchone() == (before + 2,)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("prepared", [False, True])
def test_statements_sent_together_take_lists_of_ids_and_nulls(registry, db_url, prepared):
    with registry.cursor() as cr:
        cr.executemany("INSERT INTO note (id, body) VALUES (%s, %s)", [(1, "a"), (2, "b")])
        count = "SELECT count(*) FROM note WHERE id = ANY(%s)"
        big = 2**40  # past the 32-bit ids: left to psycopg, as a bigint array
        rows = cr.execute_together(
            [
                (count, ([1, 2, 3],)),
                (count, ([-(2**31), 2],)),
                ("SELECT %s::bigint[]", ([big, 1],)),
                ("SELECT coalesce(%s::text, 'none')", (None,)),
            ],
            prepared=prepared,
        )
        assert rows == [[(2,)], [(1,)], [([big, 1],)], [("none",)]]
