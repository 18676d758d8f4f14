"""PostgreSQL backend: psycopg 3 with a psycopg_pool connection pool per process.

Many processes on many hosts share one database; PostgreSQL does the
coordination (row locks, ``SKIP LOCKED``, ``LISTEN/NOTIFY``, advisory locks).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import select
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.adapt import PyFormat, Transformer
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.copy import LibpqWriter

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

from ..exceptions import DatabaseOpenError
from ..orm.fields import INT_MAX, INT_MIN
from .backend import Backend, Column, TableSchema
from .cursor import Cursor, DeferredRows, Lookup

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")

_TYPES = {
    "id": "SERIAL PRIMARY KEY",
    "varchar": "VARCHAR",
    "text": "TEXT",
    "int": "INTEGER",
    "float": "DOUBLE PRECISION",
    "bool": "BOOLEAN",
    "date": "DATE",
    "datetime": "TIMESTAMP",
    "json": "JSONB",
    "fk": "INTEGER",
}

#: seconds the first connection of a process may take when the URL sets no
#: ``connect_timeout`` (libpq waits for as long as TCP does)
CONNECT_TIMEOUT = 5

#: a peer that went silent (its host cut off, a link dropping every packet: no reset
#: ever comes) ends the session within 25 s on both sides: TCP keepalive probes after
#: 10 s without traffic, every 5 s, 3 unanswered, and data left unacknowledged for 25 s
#: (``tcp_user_timeout``). On the server this releases the session's locks (a job's run
#: lock: see ``jobstore_postgres``), so another host may reclaim the job; on the client
#: a worker's statement fails instead of waiting for TCP's own timeout (15 min or more).
KEEPALIVE_SETTINGS = {
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 25_000,  # milliseconds
}

_ONDELETE = {"a": "no action", "r": "restrict", "c": "cascade", "n": "set null", "d": "set default"}


def connection_options(url: str) -> dict[str, Any]:
    """The libpq parameters of every connection of the product (pool, worker sessions,
    listener): :data:`KEEPALIVE_SETTINGS` for the client's end of the connection, and
    the same for the server's end (``options=-c tcp_keepalives_idle=...``, settings a
    session may set for itself). The URL's own values win: a parameter it sets is not
    added, and its ``options`` come after ours (the last ``-c`` of a setting counts)."""
    given = conninfo_to_dict(url)
    options: dict[str, Any] = {"keepalives": 1}
    options.update({key: value for key, value in KEEPALIVE_SETTINGS.items() if key not in given})
    server = " ".join(
        f"-c tcp_{key}={value}" if key.startswith("keepalives_") else f"-c {key}={value}"
        for key, value in KEEPALIVE_SETTINGS.items()
    )
    options["options"] = f"{server} {given['options']}" if given.get("options") else server
    return {key: value for key, value in options.items() if key not in given or key == "options"}


#: the connection options of the product: psycopg prepares no statement on its own.
#: The hot statements are prepared by name (``PostgresCursor.execute_together``, the
#: rows an enqueue writes): psycopg answers a rollback on a connection where it prepared
#: statements by deallocating every one, ours too; and a plan it keeps after five runs
#: is generic, the wrong one for skewed data (a user with no job in a state, an hour of
#: 100,000 finished jobs).
NO_AUTO_PREPARE: dict[str, Any] = {"prepare_threshold": None}


#: rows written later (``Cursor.defer_insert``) go with ``COPY`` from this many on (two
#: round trips, and four times as fast as a multi-row ``INSERT`` for 1,000 rows: the
#: server parses no statement of 39,000 parameters), with one ``INSERT`` below it
COPY_MIN_ROWS = 16

#: rows of one table written later from which the cursor sends them ahead, in a ``COPY``
#: whose answer it reads later: the server writes them, runs their triggers and checks
#: their foreign keys while the application creates the next ones
#: (``PostgresCursor.defer_insert``)
SEND_AHEAD_ROWS = 128

#: the ids of a table's rows: its ``id`` column's sequence, asked for at once
# -- name: take_ids
TAKE_IDS = "SELECT nextval(%s::regclass) FROM generate_series(1, %s)"


def _take_ids_params(table: str, count: int) -> tuple[str, int]:
    """The parameters of :data:`TAKE_IDS`: the sequence SERIAL made for ``table``'s
    ``id`` (found in the search path, as the table is), and how many ids."""
    return f'"{table}_id_seq"', count


#: how many forks this process came out of as the child: a pool made before the last one
#: is the parent's (its sockets are not this process's), told without a system call
_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)


class PostgresCursor(Cursor):
    """On a connection in autocommit mode (the worker's own sessions) the cursor opens
    its transaction itself, and :meth:`execute_together` sends the ``BEGIN`` with the
    first statements: one round trip less than psycopg's separate ``BEGIN``."""

    defers_inserts = True

    def __init__(
        self, backend: Any, connection: Any, release: Any, *, begin_with_first: bool = False
    ):
        super().__init__(backend, connection, release)
        self._explicit_begin = bool(connection.autocommit)
        #: the BEGIN goes with the transaction's first :meth:`execute` too, in one
        #: message (that statement's parameters quoted as literals): one round trip less
        #: for every transaction of the pool's cursors
        self._begin_with_first = begin_with_first and self._explicit_begin
        #: during a commit, the statements to send with the ``COMMIT`` (:meth:`commit`),
        #: and the rows written by those statements
        self._collected: list[_Statement] | None = None
        self._inlined: list[DeferredRows] = []
        #: whether a backslash in a string literal is a plain character (the server's
        #: default): then strings are quoted by doubling their quotes (asked when needed)
        self._plain_strings: bool | None = None
        #: the rows sent ahead whose answer is not read yet (:meth:`defer_insert`)
        self._ahead: _Ahead | None = None

    # -- rows written later -------------------------------------------------------

    def _fetch_ids(self, table: str, count: int) -> list[int]:
        # a sequence is outside transactions: the rows waiting to be written stay waiting
        # (and a lazy savepoint closed, and the transaction unopened), the ids come in
        # one statement
        if self._ahead is not None:
            self._read_ahead()
        self.sql_count += 1
        # (a psycopg cursor of its own: the results of the last statement stay readable)
        rows = self._cnx.execute(TAKE_IDS, _take_ids_params(table, count)).fetchall()
        return [row[0] for row in rows]

    def _skip_ids(self, table: str, past: int) -> None:
        # (never back: another process may have moved it further meanwhile)
        if self._ahead is not None:
            self._read_ahead()
        self.sql_count += 1
        self._cur.execute(
            f'SELECT setval(%s::regclass, GREATEST(%s, max(id))) FROM "{table}"'
            f' HAVING GREATEST(%s, max(id)) > (SELECT last_value FROM "{table}_id_seq")',
            (f'"{table}_id_seq"', past, past),
        )

    def _write_deferred(self, batch: DeferredRows) -> None:
        rows = batch.rows
        if len(rows) < COPY_MIN_ROWS:
            # one INSERT, prepared on the connection (their lookups as subqueries in it):
            # during a commit (:meth:`commit`) in the COMMIT's message, else in one message
            # with the BEGIN or a lazy savepoint due
            statement = self._insert_rows(batch)
            if self._collected is not None:
                self._collected.append(statement)
                self._inlined.append(batch)
            else:
                self._send([statement])
            return
        self._copy_rows(batch, self._cur)

    def _copy_rows(
        self, batch: DeferredRows, cursor: psycopg.Cursor[Any], writer: LibpqWriter | None = None
    ) -> None:
        """Write ``batch``'s rows with ``COPY`` on ``cursor`` (by ``writer``: psycopg's
        own if None)."""
        self.resolve_lookups()  # COPY takes values, not subqueries
        self._before_execute()
        self.sql_count += 1
        columns = ", ".join(f'"{name}"' for name in batch.columns)
        with cursor.copy(f'COPY "{batch.table}" ({columns}) FROM STDIN', writer=writer) as copy:
            for row in batch.rows:
                copy.write_row(row)

    # -- rows sent ahead ----------------------------------------------------------

    def defer_insert(
        self,
        table: str,
        columns: tuple[str, ...],
        rows: list[Sequence[Any]],
        describe: Callable[[Sequence[Any]], str],
    ) -> None:
        """As :meth:`Cursor.defer_insert`; but once :data:`SEND_AHEAD_ROWS` rows of one
        table wait, they go to the server at once, by a ``COPY`` whose end is sent
        without waiting for the answer: the server writes them, runs their triggers and
        checks their foreign keys while the application creates the next ones. The
        answer is read before anything else the cursor does (the next statement, the
        commit), or when the next rows are ready to go, if it has come by then (a read
        of the socket that does not wait). So an error of such a row is raised by the
        next statement, the commit, or a create a little later, with the note that
        names the rows; a rollback, or the rollback of a savepoint opened before them,
        drops them. Between the two, the session is idle in its transaction, as after
        any statement; only the cursor may use the connection then (psycopg would find
        the answer unread)."""
        super().defer_insert(table, columns, rows, describe)
        batch = self._deferred[-1]
        if len(batch.rows) < SEND_AHEAD_ROWS or self._savepoint_due is not None:
            return
        ahead = self._ahead
        if ahead is not None:
            if not ahead.writer.answered():
                return  # the rows wait a little longer
            self._read_ahead()
        if self._collected is None:  # (not during a commit: its rows go with it)
            self._send_ahead()

    def _send_ahead(self) -> None:
        """Send the last batch of waiting rows by a ``COPY`` whose answer is read later
        (the batches before it first, as they are written)."""
        batch = self._deferred.pop()
        try:
            self.flush()
            # the ids of the next rows taken now, while the connection is free: not
            # later, waiting for the answer first
            self.backend.id_blocks.hold(
                batch.table, SEND_AHEAD_ROWS, self._fetch_ids, self._skip_ids
            )
            # (a psycopg cursor of its own: the results of the last statement stay readable)
            cursor = self._cnx.cursor()
            writer = _Writer(cursor)
            self._copy_rows(batch, cursor, writer)
        except Exception as exc:
            exc.add_note(batch.failure_note())
            raise
        self._ahead = _Ahead(batch, writer)

    def _read_ahead(self) -> None:
        """Read the answer to the rows sent ahead: raise the server's error, naming them."""
        ahead, self._ahead = self._ahead, None
        assert ahead is not None
        try:
            ahead.writer.read_answer()
        except Exception as exc:
            exc.add_note(ahead.batch.failure_note())
            raise

    def _drop_ahead(self) -> None:
        """Read the answer to the rows sent ahead, whatever it is: a rollback undoes them."""
        try:
            self._read_ahead()
        except Exception:  # the error of a row, or a connection lost: the rollback tells
            _logger.debug("rows sent ahead dropped", exc_info=True)

    def flush(self) -> None:
        if self._ahead is not None:
            self._read_ahead()
        super().flush()

    def _commit(self, send: Callable[[], _T]) -> _T:
        if self._ahead is not None:
            self._check_not_owned("commit")
            self._read_ahead()
        return super()._commit(send)

    def rollback(self) -> None:
        if self._ahead is not None:
            self._check_not_owned("roll back")
            self._drop_ahead()
        super().rollback()

    def rollback_to_savepoint(self, name: str, marks: tuple[int, int, int]) -> None:
        # rows sent ahead since the savepoint opened (opening one reads the answer to
        # those before): undone with it (a savepoint still due undoes nothing sent)
        if self._ahead is not None and name != self._savepoint_due:
            self._drop_ahead()
        super().rollback_to_savepoint(name, marks)

    def close(self) -> None:
        if self._ahead is not None:
            self._drop_ahead()
        super().close()

    def commit(self) -> None:
        """The statements that come before a commit (the ``NOTIFY`` that wakes the
        workers) go with the ``COMMIT``, in one round trip: they are collected, not run
        one by one, so they may not read what they return. Rows waiting to be written
        go first, as they would before any statement: in the same message when they
        are fewer than :data:`COPY_MIN_ROWS`, else with ``COPY`` just before. An error
        of that message (a row the database refuses) is raised with a note naming the
        rows it carried, and nothing commits: the server skips the rest of a message
        after an error, the ``COMMIT`` with it. A table whose block of ids the rows used
        up gets its next block in the same message (:meth:`IdBlocks.refill_size
        <job_worker.db.ids.IdBlocks.refill_size>`)."""
        if self._collected is not None or not (
            len(self.precommit) or (self._deferred and self._explicit_begin)
        ):
            return super().commit()
        collected: list[_Statement] = []
        inlined: list[DeferredRows] = []

        def send() -> None:
            self._collected = None
            # the next block of ids of a table whose block this transaction used up, in
            # the same message: the next rows have their ids without a round trip
            blocks = self.backend.id_blocks
            refills = [
                (table, refill)
                for table in dict.fromkeys(batch.table for batch in inlined)
                if (refill := blocks.refill_size(table)).size
            ]
            taking = [
                (TAKE_IDS, _take_ids_params(table, refill.size), None) for table, refill in refills
            ]
            try:
                results = self._send(
                    [*collected, *taking, ("COMMIT", (), None)], rows=bool(refills)
                )
            except Exception as exc:
                for batch in inlined:
                    exc.add_note(batch.failure_note())
                raise
            taken = results[len(collected) : len(collected) + len(refills)]
            for (table, refill), rows in zip(refills, taken, strict=True):
                blocks.refill(table, [row[0] for row in rows], refill.after)

        self._collected, self._inlined = collected, inlined
        try:
            self._commit(send)
        finally:
            self._collected, self._inlined = None, []

    def execute(
        self, query: str, params: Sequence[Any] | None = None, *, write: bool | None = None
    ) -> Cursor:
        if self._ahead is not None:
            self._read_ahead()
        if self._collected is None:
            if (
                self._begin_with_first
                and not self._deferred
                and self._savepoint_due is None
                and not self._closed
                and not self.in_transaction
                and (params is None or isinstance(params, list | tuple))
            ):
                self.sql_count += 1
                text = query if params is None else query % tuple(map(self._literal, params))
                self._cur.execute(f"BEGIN; {text}".encode())
                self._cur.nextset()  # the statement's result, not the BEGIN's
                self._note_deallocation()
                return self
            return super().execute(query, params, write=write)
        if self._deferred:
            self.flush()
        self._collected.append((query, params or (), None))
        return self

    def _before_execute(self) -> None:
        if self._ahead is not None:  # (executemany)
            self._read_ahead()
        if self._explicit_begin and not self.in_transaction:
            self._cur.execute(b"BEGIN")

    def _execute(self, query: str, params: Sequence[Any] | None) -> None:
        self._cur.execute(query, params)
        self._note_deallocation()

    def _note_deallocation(self) -> None:
        """Forget the statements :meth:`_send` prepared if the statement just run
        dropped them (``DEALLOCATE``, ``DISCARD ALL``): prepared again when next sent."""
        result = self._cur.pgresult
        if result is not None and result.command_status in _DEALLOCATING:
            _PREPARED.pop(self._cnx, None)

    def _executemany(self, query: str, seq_of_params: Sequence[Sequence[Any]]) -> None:
        self._cur.executemany(query, seq_of_params)

    @property
    def in_transaction(self) -> bool:
        # libpq's status as it is (``cnx.info`` makes an object and an enum of it: asked
        # several times a transaction)
        return self._cnx.pgconn.transaction_status != _IDLE

    def execute_together(
        self, statements: Sequence[tuple[str, Sequence[Any]]], *, prepared: bool = False
    ) -> list[list[tuple[Any, ...]]]:
        """Run ``statements`` in one round trip; return the rows of each.

        They go as one message of the simple query protocol, with their ``%s``
        parameters quoted as literals by psycopg (their text has no other ``%``).
        Each still is a statement of its own: under READ COMMITTED each takes a new
        snapshot, so one that follows a lock sees what the lock's previous holder
        committed. With ``prepared``, each statement is prepared on the connection the
        first time (in the same message) and executed by name from then on: planned
        once, not at every call (its parameters take the types the statement gives
        them). psycopg prepares nothing on the product's connections
        (:data:`NO_AUTO_PREPARE`), so it never deallocates them; a ``DEALLOCATE`` or
        ``DISCARD ALL`` run on the cursor makes them prepared again the next time.
        Should they be gone anyway, the statement fails once and they are all prepared
        again the next time.
        """
        render = self._literal if prepared else None
        return self._send([(query, params, render) for query, params in statements])

    def execute_and_commit(
        self, statements: Sequence[tuple[str, Sequence[Any]]], *, prepared: bool = False
    ) -> list[list[tuple[Any, ...]]]:
        if not self._explicit_begin:  # psycopg keeps the transactions of its own connections
            return super().execute_and_commit(statements, prepared=prepared)
        # after an error the server skips the rest of the message: the COMMIT with it
        render = self._literal if prepared else None
        sent: list[_Statement] = [(query, params, render) for query, params in statements]
        sent.append(("COMMIT", (), None))
        return self._commit(lambda: self._send(sent)[:-1])

    def _send(self, statements: list[_Statement], *, rows: bool = True) -> list[list[Any]]:
        """Send ``statements`` in one message; the rows of each. A statement with a
        ``render`` function is prepared on the connection (by name, the first time in
        the same message) and executed with its parameters rendered as literals by it;
        the others have their parameters inlined (:meth:`_literal`). Without ``rows``
        (a commit's message, whose statements may not read what they return) no result
        is read and nothing is returned: psycopg raised the error of any already."""
        if self._closed:
            raise RuntimeError("cursor is closed")
        if self._ahead is not None:
            self._read_ahead()
        if self._deferred and self._savepoint_due is None:
            self.flush()  # the rows created in the transaction first (with its BEGIN)
        # what the results do not show: a BEGIN, a lazy savepoint opened in the same message,
        # the statements prepared the first time they come
        opening = self._take_due_savepoint() if self._savepoint_due is not None else []
        self.sql_count += len(opening) + len(statements)
        if self._explicit_begin and not self.in_transaction:
            opening.insert(0, ("BEGIN", ()))
        if self._deferred:  # rows created inside the lazy savepoint: once it is open
            if opening:
                self._cur.execute("; ".join(self._inline(q, p) for q, p in opening).encode())
                opening = []
            self.flush()
        parts = [self._inline(query, params) for query, params in opening]
        names = _PREPARED.setdefault(self._cnx, {})
        added: list[str] = []
        shown: list[int] = []
        for query, params, render in statements:
            if render is None:
                parts.append(self._inline(query, params))
                shown.append(len(parts) - 1)
                continue
            name = names.get(query)
            if name is None and len(names) < MAX_PREPARED:
                name = names[query] = f"job_worker_{next(_prepared_ids)}"
                added.append(query)
                parts.append(f"PREPARE {name} AS {_numbered(query)}")
            if name is not None:
                args = ", ".join(map(render, params))
                parts.append(f"EXECUTE {name}({args})" if params else f"EXECUTE {name}")
            else:  # the connection holds as many as it may: inlined
                parts.append(self._inline(query, params, render))
            shown.append(len(parts) - 1)
        if not parts:
            return []
        try:
            # (prepare=False: psycopg never prepares a message of several statements; this
            # skips its bookkeeping)
            self._cur.execute("; ".join(parts).encode(), prepare=False)
        except psycopg.errors.InvalidSqlStatementName:
            # our statements were deallocated (DEALLOCATE ALL, DISCARD ALL): all of them
            # are prepared again, under new names, the next time they come
            names.clear()
            raise
        except Exception:
            for query in added:  # prepared or not: prepared again, under a new name
                del names[query]
            raise
        if not rows:
            return []
        results: list[list[Any]] = []
        cur = self._cur
        while True:
            # (the result's status, not ``description``: that builds the columns' objects)
            result = cur.pgresult
            results.append(cur.fetchall() if result and result.status == _TUPLES_OK else [])
            if not cur.nextset():
                return [results[index] for index in shown]

    def _inline(
        self, query: str, params: Sequence[Any], render: Callable[[Any], str] | None = None
    ) -> str:
        return query % tuple(map(render or self._literal, params)) if params else query

    def _insert_rows(self, batch: DeferredRows) -> _Statement:
        """The INSERT of ``batch``'s rows, to be prepared (:meth:`_send`): planned once
        per connection and shape (table, columns, rows, lookups), not at every enqueue.
        A lookup is a subquery of the statement, its parameters the statement's."""
        shape: list[Any] = [batch.table, batch.columns, len(batch.rows)]
        params: list[Any] = []
        for row in batch.rows:
            for value in row:
                if type(value) is Lookup:
                    shape.append((len(params), value.query))
                    params.extend(value.params)
                else:
                    params.append(value)
        key = tuple(shape)
        query = _INSERTS.get(key)
        if query is None:
            if len(_INSERTS) >= 4 * MAX_PREPARED:
                _INSERTS.clear()
            query = _INSERTS[key] = _insert_template(batch)
        return query, params, self._value_literal

    def _value_literal(self, value: Any) -> str:
        """A value of a row as a literal: the common types written directly, untyped
        (an INSERT's VALUES take the types of their columns), the others by psycopg."""
        kind = type(value)
        if value is None:
            return "NULL"
        if kind is str:
            if self._plain_strings is None:
                # (libpq's bytes: ``cnx.info`` would decode the name and the value)
                setting = self._cnx.pgconn.parameter_status(b"standard_conforming_strings")
                self._plain_strings = setting == b"on"
            if self._plain_strings and "\x00" not in value:
                return "'" + value.replace("'", "''") + "'"
        elif kind is int:
            return str(value)
        elif kind is bool:
            return "true" if value else "false"
        elif kind is float:
            if math.isfinite(value):
                return repr(value)
        elif kind is datetime and value.tzinfo is None:
            return f"'{value.isoformat(' ')}'"
        return self._literal(value)

    def _literal(self, value: Any) -> str:
        kind = type(value)
        if kind is int:
            return str(value)
        if value is None:
            return "NULL"
        if (
            kind is list
            and value
            and all(type(v) is int and INT_MIN <= v <= INT_MAX for v in value)
        ):
            # ids (a batch's, a begin's): psycopg's adaptation of a list costs 10 µs
            return "'{" + ",".join(map(str, value)) + "}'::int4[]"
        if kind is str and len(value) <= 64:  # the same few (a worker's id) come again
            quoted = _QUOTED.get(value)
            if quoted is None:
                if len(_QUOTED) >= 1024:
                    _QUOTED.clear()
                quoted = _QUOTED[value] = sql.Literal(value).as_string(self._cnx)
            return quoted
        return sql.Literal(value).as_string(self._cnx)


class _Writer(LibpqWriter):
    """psycopg's writer of a ``COPY``, but for its end: sent without waiting for the
    server's answer, which :meth:`read_answer` reads later (the cursor, before anything
    else goes on the connection). A ``COPY`` that fails on the client ends as psycopg
    ends it."""

    def finish(self, exc: BaseException | None = None) -> None:
        if exc is not None:
            super().finish(exc)
            return
        pgconn = self._pgconn
        while pgconn.put_copy_end(None) == 0:  # (the output buffer full)
            select.select([], [pgconn.socket], [])
        while pgconn.flush():
            select.select([], [pgconn.socket], [])

    def answered(self) -> bool:
        """Whether the server's answer to the end sent has come (read, not waited for)."""
        pgconn = self._pgconn
        pgconn.consume_input()
        return not pgconn.is_busy()

    def read_answer(self) -> None:
        """Wait for the answer to the end sent; raise the server's error."""
        pgconn = self._pgconn
        pgconn.consume_input()
        while pgconn.is_busy():
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        error = None
        while (result := pgconn.get_result()) is not None:
            if result.status != _COMMAND_OK and error is None:
                error = psycopg.errors.error_from_result(
                    result, encoding=self.connection.info.encoding
                )
        if error is not None:
            raise error


class _Ahead:
    """Rows sent ahead (``PostgresCursor.defer_insert``), the answer to their ``COPY``
    not read yet: the rows for an error's note, and the writer that reads the answer."""

    __slots__ = ("batch", "writer")

    def __init__(self, batch: DeferredRows, writer: _Writer):
        self.batch = batch
        self.writer = writer


class _LookupDumper(psycopg.adapt.Dumper):
    """A lookup in a row written with ``COPY``: its value, read before
    (:meth:`Cursor.resolve_lookups`), dumped as psycopg dumps such a value."""

    #: the lookup dumped last, and its text: the rows of a ``COPY`` hold the same few
    _last: tuple[Lookup, Any] | None = None

    def dump(self, obj: Lookup) -> Any:
        last = self._last
        if last is not None and last[0] is obj:
            return last[1]
        if not obj.resolved:
            raise psycopg.ProgrammingError(f"{obj!r} was not read before the rows went")
        value = obj.value
        dumped = None
        if value is not None:
            dumper = Transformer.from_context(self.connection).get_dumper(value, PyFormat.TEXT)
            dumped = dumper.dump(value)
        self._last = (obj, dumped)
        return dumped


psycopg.adapters.register_dumper(Lookup, _LookupDumper)

_TUPLES_OK = psycopg.pq.ExecStatus.TUPLES_OK
_IDLE = psycopg.pq.TransactionStatus.IDLE
_COMMAND_OK = psycopg.pq.ExecStatus.COMMAND_OK

#: string literals quoted for :meth:`PostgresCursor.execute_together`
_QUOTED: dict[str, str] = {}
#: the statements prepared on each connection: query -> name
_PREPARED: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()
_prepared_ids = itertools.count(1)
_PLACEHOLDER = re.compile(r"%[s%]")
#: the statuses of the commands that drop a connection's prepared statements
_DEALLOCATING = frozenset((b"DEALLOCATE ALL", b"DISCARD ALL", b"DEALLOCATE"))
#: a statement :meth:`PostgresCursor._send` sends: its text, its parameters, and the
#: function that renders them if it is to be prepared (else None: inlined)
_Statement = tuple[str, Sequence[Any], Callable[[Any], str] | None]
#: the INSERTs of deferred rows, by shape (see ``PostgresCursor._insert_rows``)
_INSERTS: dict[tuple[Any, ...], str] = {}
#: the statements a connection prepares at most: beyond, new ones are sent inlined (the
#: rows a transaction writes come in few shapes, but nothing bounds them)
MAX_PREPARED = 256


def _insert_template(batch: DeferredRows) -> str:
    """The INSERT of ``batch``'s rows with ``%s`` for their values and each lookup's
    query as a subquery."""
    values = [
        "(" + ", ".join(f"({v.query})" if type(v) is Lookup else "%s" for v in row) + ")"
        for row in batch.rows
    ]
    columns = ", ".join(f'"{name}"' for name in batch.columns)
    return f'INSERT INTO "{batch.table}" ({columns}) VALUES {", ".join(values)}'


def _numbered(query: str) -> str:
    """``query`` with its ``%s`` placeholders numbered ``$1``, ``$2``… (``%%``: ``%``)."""
    numbers = itertools.count(1)
    return _PLACEHOLDER.sub(
        lambda match: "%" if match.group() == "%%" else f"${next(numbers)}", query
    )


class PostgresBackend(Backend):
    dialect = "postgresql"
    job_store_class = ".jobstore_postgres:PostgresJobStore"
    lock_rows = " FOR UPDATE"

    def __init__(self, url: str, *, max_size: int = 10, pooled: bool = True):
        self.url = url
        self.max_size = max_size
        #: False: no pool (a command that runs a few statements and exits): a cursor
        #: takes the connection the previous one gave back, or opens one; the first
        #: connection is the probe itself (see :meth:`cursor`)
        self.pooled = pooled
        self._pool: ConnectionPool | None = None
        self._idle: list[psycopg.Connection] = []
        self._pid = os.getpid()
        #: the forks this process came through when its pool was made (see _forks)
        self._pool_forks = -1
        self._lock = threading.Lock()

    @property
    def pool(self) -> ConnectionPool:
        # every transaction asks: no lock, no import and no system call once it is made
        pool = self._pool
        if pool is not None and self._pool_forks == _forks:
            return pool
        from psycopg_pool import ConnectionPool

        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                # A forked child must not touch its parent's sockets: it opens its own pool
                # and leaves the inherited one alone.
                self._pid = os.getpid()
                self._pool = None
                self.probe()
                self._pool_forks = _forks
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.max_size,
                    # the cursor sends the BEGIN, with the transaction's first statement
                    kwargs={"autocommit": True, **NO_AUTO_PREPARE, **connection_options(self.url)},
                    open=True,
                    name=f"job_worker-{os.getpid()}",
                )
            return self._pool

    @property
    def name(self) -> str:
        try:
            dbname = conninfo_to_dict(self.url).get("dbname")
        except psycopg.Error:
            dbname = None
        return f'PostgreSQL database "{dbname}"' if dbname else "the PostgreSQL database"

    def probe(self) -> None:
        """Connect once, directly: a database that cannot be reached or refuses us raises
        :class:`DatabaseOpenError` with the server's message at once. (The pool would
        retry in the background and give up only after its timeout, 30 s, with a warning
        at every attempt and no word of the reason.)"""
        self._connect_checked().close()

    def _connect_checked(self, **kwargs: Any) -> psycopg.Connection:
        """A new connection, or :class:`DatabaseOpenError` with the server's reason."""
        try:
            conninfo = self.url
            if "connect_timeout" not in conninfo_to_dict(conninfo):
                conninfo = make_conninfo(conninfo, connect_timeout=CONNECT_TIMEOUT)
            return psycopg.connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            lines = [" ".join(line.split()) for line in str(exc).splitlines()]
            message = "; ".join(line for line in lines if line)  # libpq's lines, on one
            message = message.removeprefix("connection failed: ")
            raise DatabaseOpenError(f"cannot connect to PostgreSQL: {message}") from exc

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection:
        """A dedicated connection outside the pool (LISTEN, session advisory locks)."""
        return psycopg.connect(self.url, autocommit=autocommit)

    def cursor(self, *, readonly: bool = False) -> Cursor:
        if not self.pooled:
            cnx = self._direct_connection()
            return PostgresCursor(self, cnx, self._give_back, begin_with_first=True)
        pool = self.pool
        cnx = pool.getconn()

        def release(cnx: Any, healthy: bool) -> None:
            if not healthy:
                cnx.close()
            pool.putconn(cnx)

        return PostgresCursor(self, cnx, release, begin_with_first=True)

    def _direct_connection(self) -> psycopg.Connection:
        """Without a pool: the idle connection a closed cursor gave back, else a new one
        (a cursor opened while another is open gets its own)."""
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._pid, self._idle = os.getpid(), []
            while self._idle:
                cnx = self._idle.pop()
                if not cnx.closed:
                    return cnx
        # as the pool's: the cursor sends the BEGIN, with the transaction's first statement
        return self._connect_checked(
            autocommit=True, **NO_AUTO_PREPARE, **connection_options(self.url)
        )

    def _give_back(self, cnx: Any, healthy: bool) -> None:
        with self._lock:
            if healthy and not cnx.closed and self._pid == os.getpid():
                self._idle.append(cnx)
                return
        cnx.close()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            idle, self._idle = self._idle, []
            mine = self._pid == os.getpid()
        if pool is not None and mine:
            pool.close()
        for cnx in idle if mine else ():
            cnx.close()

    # -- SQL fragments --------------------------------------------------------

    def column_type(self, kind: str) -> str:
        return _TYPES[kind]

    def in_ids(self, column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(%s::integer[])", [list(ids)]

    def select_column(self, column: str, kind: str | None) -> str:
        # psycopg decodes JSONB itself, so a JSON string would come back as a bare str,
        # indistinguishable from JSON text: the ORM reads JSON as text and decodes it.
        return f"{column}::text" if kind == "json" else column

    def in_values(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(%s)", [list(values)]

    def limit_offset(self, limit: int | None, offset: int) -> str:
        return (f" LIMIT {limit:d}" if limit is not None else "") + (
            f" OFFSET {offset:d}" if offset else ""
        )

    def reclaim_space(self, tables: Sequence[str]) -> None:
        with self.connect(autocommit=True) as cnx:
            for table in tables:
                cnx.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))

    # -- schema -----------------------------------------------------------------

    def lock_schema(self, cr: Cursor) -> None:
        cr.execute(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.job_worker.schema'))", ()
        )

    def existing_tables(self, cr: Cursor) -> set[str]:
        cr.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            (),
        )
        return {row[0] for row in cr.fetchall()}

    def describe_table(self, cr: Cursor, table: str) -> TableSchema:
        schema = TableSchema()
        cr.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
            (table,),
        )
        for name, type_, nullable in cr.fetchall():
            schema.columns[name] = (type_.upper(), nullable == "NO")
        cr.execute(
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = current_schema() AND tablename = %s",
            (table,),
        )
        for name, definition in cr.fetchall():
            schema.indexes[name] = _normalize_index(definition)
        cr.execute(
            """SELECT a.attname, cl.relname, c.confdeltype
                 FROM pg_constraint c
                 JOIN pg_class t ON t.oid = c.conrelid
                 JOIN pg_class cl ON cl.oid = c.confrelid
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                WHERE c.contype = 'f' AND t.relname = %s
                  AND t.relnamespace = current_schema()::regnamespace""",
            (table,),
        )
        for column, target, action in cr.fetchall():
            schema.foreign_keys.add((column, target, _ONDELETE[action]))
        return schema

    def add_column(self, cr: Cursor, table: str, column: Column, fill: Any = None) -> None:
        cr.execute(
            f'ALTER TABLE "{table}" ADD COLUMN {self._column_sql(replace(column, not_null=False))}'
        )
        if fill is not None:
            cr.execute(f'UPDATE "{table}" SET "{column.name}" = %s', (fill,))
        if column.not_null:
            cr.execute(f'SELECT 1 FROM "{table}" WHERE "{column.name}" IS NULL LIMIT 1', ())
            if cr.fetchone() is None:
                cr.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column.name}" SET NOT NULL')


def _normalize_index(sql: str) -> str:
    sql = re.sub(r"\s+", " ", sql.strip())
    sql = re.sub(r"^CREATE (UNIQUE )?INDEX \S+ ON (\S+\.)?", r"\1ON ", sql, flags=re.I)
    return sql.replace(" USING btree", "").replace('"', "").lower()
