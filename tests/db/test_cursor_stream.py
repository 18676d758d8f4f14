"""PostgreSQL: rows written later, created in a row, go to the server as they come (a
``COPY`` the cursor leaves open), and everything else the cursor does ends it first."""

from __future__ import annotations

import time

import psycopg
import pytest

from job_worker.db.postgres import STREAM_MIN_ROWS

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

N = STREAM_MIN_ROWS + 40


@pytest.fixture
def registry(make_registry, db_url):
    registry = make_registry()
    with registry.cursor() as cr:
        cr.execute("CREATE TABLE note (id INTEGER PRIMARY KEY, body VARCHAR)")
        cr.execute("CREATE TABLE other (id INTEGER PRIMARY KEY)")
    return registry


def notes(first: int, count: int, body: str = "n") -> list[tuple[int, str]]:
    return [(i, f"{body}{i}") for i in range(first, first + count)]


def defer(cr, rows) -> None:
    for row in rows:  # one row a call, as records are created
        cr.defer_insert("note", ("id", "body"), [row], lambda row: f"note {row[0]}")


def committed(registry) -> list[int]:
    with registry.cursor(readonly=True) as cr:
        cr.execute("SELECT id FROM note ORDER BY id")
        return [row[0] for row in cr.fetchall()]


def server_query(registry, cr) -> tuple[str, str]:
    """What the backend of ``cr``'s connection runs now, as another session sees it."""
    pid = cr._cnx.info.backend_pid
    with registry.cursor(readonly=True) as other:
        other.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", [pid])
        return other.fetchone()


def test_rows_go_to_the_server_while_the_transaction_creates_more(registry):
    with registry.cursor() as cr:
        defer(cr, notes(1, STREAM_MIN_ROWS - 1))
        assert cr.deferred_rows == STREAM_MIN_ROWS - 1  # held: too few yet
        defer(cr, notes(STREAM_MIN_ROWS, 41))
        assert cr.deferred_rows == 0
        state, query = server_query(registry, cr)
        assert state == "active" and query.startswith('COPY "note"')
    assert committed(registry) == list(range(1, N + 1))


def test_a_statement_ends_the_copy_and_reads_every_row(registry):
    with registry.cursor() as cr:
        defer(cr, notes(1, N))
        cr.execute("SELECT count(*), max(body) FROM note")
        assert cr.fetchone() == (N, "n99")
        defer(cr, notes(N + 1, N))  # a new COPY
        cr.executemany("INSERT INTO other (id) VALUES (%s)", [(1,), (2,)])
        cr.execute("SELECT count(*) FROM note")
        assert cr.fetchone() == (2 * N,)
    assert committed(registry) == list(range(1, 2 * N + 1))


def test_the_last_statements_rows_stay_readable(registry):
    with registry.cursor() as cr:
        cr.execute("SELECT generate_series(1, 3)")
        defer(cr, notes(1, N))
        assert cr.fetchall() == [(1,), (2,), (3,)]
    assert len(committed(registry)) == N


def test_a_row_of_another_table_ends_the_copy_in_order(registry):
    with registry.cursor() as cr:
        defer(cr, notes(1, N))
        cr.defer_insert("other", ("id",), [(7,)], str)
        defer(cr, notes(N + 1, 2))
        cr.execute("SELECT count(*) FROM note")
        assert cr.fetchone() == (N + 2,)
        cr.execute("SELECT id FROM other")
        assert cr.fetchall() == [(7,)]


def test_a_rollback_drops_the_rows_sent_and_the_connection_goes_on(registry):
    cr = registry.cursor()
    try:
        defer(cr, notes(1, N))
        cr.rollback()
        defer(cr, notes(1, 2))
        cr.commit()
    finally:
        cr.close()
    assert committed(registry) == [1, 2]


def test_closing_the_cursor_drops_the_rows_sent(registry):
    cr = registry.cursor()
    defer(cr, notes(1, N))
    cr.close()
    assert committed(registry) == []
    with registry.cursor() as cr:  # the pool's connection is usable again
        defer(cr, notes(1, N))
    assert len(committed(registry)) == N


def test_a_rolled_back_savepoint_drops_the_rows_created_in_it_only(registry):
    with registry.cursor() as cr:
        defer(cr, notes(1, N))
        with pytest.raises(RuntimeError), cr.savepoint():
            defer(cr, notes(N + 1, N))
            raise RuntimeError("undo")
        defer(cr, notes(2 * N + 1, 1))
    assert committed(registry) == [*range(1, N + 1), 2 * N + 1]


def test_a_lazy_savepoint_ends_the_copy_before_its_block(registry):
    with registry.cursor() as cr:
        defer(cr, notes(1, N))  # sent by an open COPY
        marks = cr.callback_marks()
        with cr.lazy_savepoint() as name:
            defer(cr, notes(N + 1, 1))  # created in the block: the block's to undo
            cr.rollback_to_savepoint(name, marks)
    assert committed(registry) == list(range(1, N + 1))


def test_an_error_in_a_row_sent_is_raised_at_the_next_statement_naming_the_rows(registry):
    cr = registry.cursor()
    try:
        defer(cr, notes(1, N))
        defer(cr, [(5, "again")])  # the primary key's second 5: the server refuses it
        with pytest.raises(psycopg.errors.UniqueViolation) as raised:
            cr.execute("SELECT 1")
        notes_ = "\n".join(raised.value.__notes__)
        assert f"while writing {N + 1} row(s) of note" in notes_ and "roll it back" in notes_
        cr.rollback()
    finally:
        cr.close()
    assert committed(registry) == []


def test_an_error_in_a_row_sent_at_commit_commits_nothing(registry):
    cr = registry.cursor()
    defer(cr, notes(1, N))
    defer(cr, [(5, "again")])
    with pytest.raises(psycopg.errors.UniqueViolation):
        cr.__exit__(None, None, None)  # the end of a `with registry.cursor()` block
    assert committed(registry) == []


def test_a_value_that_cannot_be_sent_is_refused_at_once(registry):
    cr = registry.cursor()
    try:
        defer(cr, notes(1, N))
        with pytest.raises(psycopg.ProgrammingError) as raised:
            defer(cr, [(N + 1, object())])
        assert "roll it back" in "\n".join(raised.value.__notes__)
        cr.rollback()
        defer(cr, notes(1, 1))
        cr.commit()
    finally:
        cr.close()
    assert committed(registry) == [1]


def test_no_copy_is_left_open_under_a_statement_timeout(registry):
    # a COPY left open while the application works would be cancelled by the timeout
    with registry.cursor() as cr:
        cr.execute("SET statement_timeout = '200ms'")
        defer(cr, notes(1, N))
        assert cr.deferred_rows == N  # held until the next statement
        time.sleep(0.4)  # the application's work between two rows, past the timeout
        defer(cr, notes(N + 1, 1))
        cr.execute("RESET statement_timeout")  # read again: from now on they are sent
        defer(cr, notes(N + 2, N))
        assert cr.deferred_rows == 0
    assert committed(registry) == list(range(1, 2 * N + 2))


def test_a_timeout_the_session_starts_with_is_read_once_per_connection(
    registry, make_registry, db_url
):
    assert "options=" in db_url
    url = db_url.replace("options=", "options=-cstatement_timeout%3D5s%20", 1)
    timed = make_registry(url=url)
    with timed.cursor() as cr:
        defer(cr, notes(1, N))
        assert cr.deferred_rows == N
    with timed.cursor() as cr:
        cr.execute("SHOW statement_timeout")
        assert cr.fetchone() == ("5s",)
    assert len(committed(registry)) == N


def test_no_copy_is_left_open_under_an_idle_transaction_timeout(registry):
    # the session, busy with the COPY, would never be idle: the timeout would not end it
    with registry.cursor() as cr:
        cr.execute("SET idle_in_transaction_session_timeout = '1min'")
        defer(cr, notes(1, N))
        assert cr.deferred_rows == N
        cr.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        defer(cr, notes(N + 1, N))
        assert cr.deferred_rows == 0
    assert len(committed(registry)) == 2 * N
