"""PostgreSQL: rows written later go to the server ahead, by batches of
``SEND_AHEAD_ROWS`` in a ``COPY`` whose answer the cursor reads later, and everything
else the cursor does reads that answer first."""

from __future__ import annotations

import time

import psycopg
import pytest

from job_worker.db.postgres import SEND_AHEAD_ROWS as AHEAD

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture
def registry(make_registry, db_url):
    registry = make_registry()
    with registry.cursor() as cr:
        cr.execute("CREATE TABLE note (id INTEGER PRIMARY KEY, body VARCHAR)")
        cr.execute("CREATE TABLE other (id INTEGER PRIMARY KEY)")
    return registry


def notes(first: int, count: int) -> list[tuple[int, str]]:
    return [(i, f"n{i}") for i in range(first, first + count)]


def defer(cr, rows) -> None:
    for row in rows:  # one row a call, as records are created
        cr.defer_insert("note", ("id", "body"), [row], lambda row: f"note {row[0]}")


def answered(cr) -> None:
    """Wait until the server has answered the rows sent ahead."""
    deadline = time.monotonic() + 10
    while not cr._ahead.writer.answered():
        assert time.monotonic() < deadline, "no answer to the rows sent ahead"
        time.sleep(0.001)


def committed(registry) -> list[int]:
    with registry.cursor(readonly=True) as cr:
        cr.execute("SELECT id FROM note ORDER BY id")
        return [row[0] for row in cr.fetchall()]


def activity(registry, cr) -> tuple[str, str]:
    """The state and last query of ``cr``'s session, as another session sees them."""
    pid = cr._cnx.info.backend_pid
    with registry.cursor(readonly=True) as other:
        other.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", [pid])
        return other.fetchone()


def test_rows_go_ahead_by_batches_while_the_transaction_creates_more(registry):
    with registry.cursor() as cr:
        defer(cr, notes(1, AHEAD - 1))
        assert cr.deferred_rows == AHEAD - 1  # held: too few yet
        defer(cr, notes(AHEAD, 1))
        assert cr.deferred_rows == 0  # sent; the session idles meanwhile, the COPY done
        answered(cr)
        state, query = activity(registry, cr)
        assert state == "idle in transaction" and query.startswith('COPY "note"')
        defer(cr, notes(AHEAD + 1, AHEAD - 1))
        assert cr.deferred_rows == AHEAD - 1
        defer(cr, notes(2 * AHEAD, 1))  # the answer came: the next batch goes
        assert cr.deferred_rows == 0
        defer(cr, notes(2 * AHEAD + 1, 3))
    assert committed(registry) == list(range(1, 2 * AHEAD + 4))


def test_the_next_rows_ids_are_taken_before_rows_go_ahead(registry, monkeypatch):
    # taking ids needs the connection: taken while it is free, not after the answer
    from job_worker.db import ids as db_ids

    monkeypatch.setattr(registry.backend, "id_blocks", db_ids.IdBlocks())
    with registry.cursor() as cr:
        cr.execute("CREATE TABLE counted (id SERIAL PRIMARY KEY)")
        cr.commit()
        fetched = []
        fetch = type(cr)._fetch_ids
        monkeypatch.setattr(
            type(cr), "_fetch_ids", lambda cr, t, n: fetched.append(cr._ahead) or fetch(cr, t, n)
        )
        for _ in range(3 * AHEAD):
            cr.defer_insert("counted", ("id",), [cr.take_ids("counted", 1)], str)
        assert fetched and not any(fetched)  # never with an answer to wait for
        cr.execute("SELECT count(*) FROM counted")
        assert cr.fetchone() == (3 * AHEAD,)


def test_rows_wait_while_the_server_has_not_answered(registry, monkeypatch):
    with registry.cursor() as cr:
        defer(cr, notes(1, AHEAD))
        monkeypatch.setattr(type(cr._ahead.writer), "answered", lambda writer: False)
        defer(cr, notes(AHEAD + 1, AHEAD + 5))
        assert cr.deferred_rows == AHEAD + 5  # no answer yet: they wait
        cr.execute("SELECT count(*) FROM note")  # reads the answer, writes them
        assert cr.fetchone() == (2 * AHEAD + 5,)


def test_a_statement_reads_the_answer_and_sees_every_row(registry):
    with registry.cursor() as cr:
        defer(cr, notes(1, AHEAD + 40))
        cr.execute("SELECT count(*), max(id) FROM note")
        assert cr.fetchone() == (AHEAD + 40, AHEAD + 40)
        defer(cr, notes(AHEAD + 41, AHEAD))
        cr.executemany("INSERT INTO other (id) VALUES (%s)", [(1,), (2,)])
        cr.execute("SELECT count(*) FROM note")
        assert cr.fetchone() == (2 * AHEAD + 40,)
    assert len(committed(registry)) == 2 * AHEAD + 40


def test_the_last_statements_rows_stay_readable(registry):
    with registry.cursor() as cr:
        cr.execute("SELECT generate_series(1, 3)")
        defer(cr, notes(1, AHEAD))
        assert cr.fetchall() == [(1,), (2,), (3,)]
    assert len(committed(registry)) == AHEAD


def test_rows_of_another_table_go_in_order(registry):
    with registry.cursor() as cr:
        defer(cr, notes(1, AHEAD))
        cr.defer_insert("other", ("id",), [(7,)], str)
        defer(cr, notes(AHEAD + 1, AHEAD))
        cr.execute("SELECT (SELECT count(*) FROM note), (SELECT count(*) FROM other)")
        assert cr.fetchone() == (2 * AHEAD, 1)


def test_a_rollback_drops_the_rows_sent_and_the_connection_goes_on(registry):
    cr = registry.cursor()
    try:
        defer(cr, notes(1, AHEAD + 3))
        cr.rollback()
        defer(cr, notes(1, 2))
        cr.commit()
    finally:
        cr.close()
    assert committed(registry) == [1, 2]


def test_closing_the_cursor_drops_the_rows_sent(registry):
    cr = registry.cursor()
    defer(cr, notes(1, AHEAD))
    cr.close()
    assert committed(registry) == []
    with registry.cursor() as cr:  # the pool's connection is usable again
        defer(cr, notes(1, AHEAD))
    assert len(committed(registry)) == AHEAD


def test_a_rolled_back_savepoint_drops_the_rows_created_in_it_only(registry):
    with registry.cursor() as cr:
        defer(cr, notes(1, AHEAD))
        with pytest.raises(RuntimeError), cr.savepoint():
            defer(cr, notes(AHEAD + 1, AHEAD))
            raise RuntimeError("undo")
        defer(cr, notes(2 * AHEAD + 1, 1))
    assert committed(registry) == [*range(1, AHEAD + 1), 2 * AHEAD + 1]


def test_a_lazy_savepoint_reads_the_answer_before_its_block(registry):
    with registry.cursor() as cr:
        defer(cr, notes(1, AHEAD))  # sent ahead
        marks = cr.callback_marks()
        with cr.lazy_savepoint() as name:
            defer(cr, notes(AHEAD + 1, AHEAD))  # created in the block: the block's to undo
            cr.rollback_to_savepoint(name, marks)
    assert committed(registry) == list(range(1, AHEAD + 1))


def test_an_error_in_a_row_sent_is_raised_at_the_next_statement_naming_the_rows(registry):
    cr = registry.cursor()
    try:
        defer(cr, [*notes(1, AHEAD - 1), (5, "again")])  # the primary key's second 5
        with pytest.raises(psycopg.errors.UniqueViolation) as raised:
            cr.execute("SELECT 1")
        notes_ = "\n".join(raised.value.__notes__)
        assert f"while writing {AHEAD} row(s) of note" in notes_ and "roll it back" in notes_
        cr.rollback()
    finally:
        cr.close()
    assert committed(registry) == []


def test_an_error_in_a_row_sent_is_raised_by_a_later_create_once_answered(registry):
    cr = registry.cursor()
    try:
        defer(cr, [*notes(1, AHEAD - 1), (5, "again")])
        answered(cr)
        defer(cr, notes(AHEAD, AHEAD - 1))  # wait: nothing to send yet
        with pytest.raises(psycopg.errors.UniqueViolation) as raised:
            defer(cr, notes(2 * AHEAD - 1, 1))  # ready to go: the answer is read
        assert "Key (id)=(5)" in str(raised.value)
        assert f"while writing {AHEAD} row(s) of note" in "\n".join(raised.value.__notes__)
        cr.rollback()
    finally:
        cr.close()
    assert committed(registry) == []


def test_an_error_in_a_row_sent_at_commit_commits_nothing(registry):
    cr = registry.cursor()
    defer(cr, [*notes(1, AHEAD - 1), (5, "again")])
    with pytest.raises(psycopg.errors.UniqueViolation):
        cr.__exit__(None, None, None)  # the end of a `with registry.cursor()` block
    assert committed(registry) == []


def test_a_value_that_cannot_be_sent_is_refused_by_the_create_that_sends_it(registry):
    cr = registry.cursor()
    try:
        defer(cr, notes(1, AHEAD - 2))
        defer(cr, [(AHEAD - 1, object())])
        with pytest.raises(psycopg.ProgrammingError) as raised:
            defer(cr, notes(AHEAD, 1))
        assert "roll it back" in "\n".join(raised.value.__notes__)
        cr.rollback()
        defer(cr, notes(1, 1))
        cr.commit()
    finally:
        cr.close()
    assert committed(registry) == [1]


def test_a_statement_timeout_shorter_than_the_pauses_between_rows_cancels_nothing(registry):
    # the COPY ends as it is sent: the application's time between rows does not count
    with registry.cursor() as cr:
        cr.execute("SET LOCAL statement_timeout = '200ms'")
        defer(cr, notes(1, AHEAD))
        assert cr.deferred_rows == 0
        time.sleep(0.4)  # the application's work, past the timeout
        defer(cr, notes(AHEAD + 1, AHEAD))
        time.sleep(0.4)
    assert len(committed(registry)) == 2 * AHEAD
