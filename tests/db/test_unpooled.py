"""A command that runs a few statements and exits opens one PostgreSQL connection and
no pool (``pooled=False``)."""

from __future__ import annotations

import pytest

from job_worker import db
from job_worker.exceptions import DatabaseOpenError

pytestmark = pytest.mark.timeout(60)


def backend_pid(cr) -> int:
    cr.execute("SELECT pg_backend_pid()")
    return cr.fetchone()[0]


def test_cursors_one_after_another_share_one_connection_and_no_pool(pg_url):
    backend = db.connect(pg_url, pooled=False)
    try:
        with backend.cursor(readonly=True) as cr:
            first = backend_pid(cr)
            cr.execute("CREATE TEMP TABLE scratch (n INTEGER)")  # rolled back at close
            cr.rollback()
        with backend.cursor() as cr:
            assert backend_pid(cr) == first
            cr.execute("SELECT to_regclass('pg_temp.scratch')")
            assert cr.fetchone()[0] is None
        assert backend._pool is None
    finally:
        backend.close()
    assert backend._idle == []


def test_a_cursor_opened_inside_another_gets_its_own_connection(pg_url):
    backend = db.connect(pg_url, pooled=False)
    try:
        with backend.cursor() as outer:
            outer_pid = backend_pid(outer)
            with backend.cursor() as inner:
                inner_pid = backend_pid(inner)
                assert inner_pid != outer_pid
        assert len(backend._idle) == 2
        with backend.cursor() as again:
            assert backend_pid(again) in (outer_pid, inner_pid)
        assert len(backend._idle) == 2
    finally:
        backend.close()


def test_an_open_transaction_is_rolled_back_before_the_connection_is_reused(pg_url):
    backend = db.connect(pg_url, pooled=False)
    try:
        cr = backend.cursor()
        cr.execute("CREATE TABLE unpooled_note (n INTEGER)")
        cr.close()  # never committed
        with backend.cursor() as cr:
            cr.execute("SELECT to_regclass('unpooled_note')")
            assert cr.fetchone()[0] is None
    finally:
        backend.close()


def test_an_unreachable_server_is_named_at_the_first_cursor():
    backend = db.connect("postgresql://127.0.0.1:1/nothing?connect_timeout=2", pooled=False)
    with pytest.raises(DatabaseOpenError, match="cannot connect to PostgreSQL"):
        backend.cursor()
    backend.close()


def test_its_transactions_are_transactions(pg_url):
    """The connection is in autocommit mode, as the pool's are: the cursor opens each
    transaction itself (its BEGIN goes with the first statement)."""
    backend = db.connect(pg_url, pooled=False)
    try:
        with backend.cursor() as cr:
            cr.execute("CREATE TABLE unpooled_kept (n INTEGER)")
            cr.execute("INSERT INTO unpooled_kept VALUES (1)")
            assert cr.in_transaction
            cr.rollback()
            cr.execute("SELECT to_regclass('unpooled_kept')")
            assert cr.fetchone()[0] is None
    finally:
        backend.close()
