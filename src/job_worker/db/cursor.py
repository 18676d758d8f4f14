"""The cursor: one transaction on one connection, the same API on every database.

Queries use ``%s`` placeholders everywhere (psycopg's style); the SQLite cursor
translates them. A cursor is a context manager: the transaction commits when
the block ends normally and rolls back when it raises.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ..exceptions import TransactionOwnedError

if TYPE_CHECKING:
    from .backend import Backend

_logger = logging.getLogger(__name__)
_savepoint_ids = itertools.count(1)
_T = TypeVar("_T")


def new_savepoint_name() -> str:
    """A savepoint name unique in this process."""
    return f"sp_{next(_savepoint_ids)}"


class Callbacks:
    """Functions run once at a transaction boundary, in the order added."""

    def __init__(self) -> None:
        self._funcs: list[tuple[Hashable, Callable[[], Any]]] = []

    def add(self, func: Callable[[], Any], key: Hashable = None) -> None:
        """Add ``func``; with a ``key``, only if none added with that key is pending
        (what many writes of a transaction ask for, once: a wake-up, say)."""
        if key is not None:
            for known, _func in self._funcs:  # (a loop: no generator made for the usual few)
                if known == key:
                    return
        self._funcs.append((key, func))

    def clear(self) -> None:
        self._funcs.clear()

    def __len__(self) -> int:
        return len(self._funcs)

    def truncate(self, length: int) -> None:
        """Forget the functions added after the first ``length`` (a savepoint rolled back)."""
        del self._funcs[length:]

    def run(self, *, swallow: bool) -> None:
        while self._funcs:
            _key, func = self._funcs.pop(0)
            if not swallow:
                func()
                continue
            try:
                func()
            except Exception:
                _logger.exception("callback %r failed", func, extra={"event": "db.callback_failed"})


class DeferredRows:
    """Rows of one table that the cursor writes later (see :meth:`Cursor.defer_insert`):
    their ids are in them already. ``describe`` names one row in an error's note."""

    __slots__ = ("columns", "describe", "rows", "table")

    def __init__(
        self,
        table: str,
        columns: tuple[str, ...],
        rows: list[Sequence[Any]],
        describe: Callable[[Sequence[Any]], str],
    ):
        self.table = table
        self.columns = columns
        self.rows = rows
        self.describe = describe

    def failure_note(self) -> str:
        """What an error raised while writing these rows adds to its message."""
        shown = ", ".join(self.describe(row) for row in self.rows[:3])
        more = f" and {len(self.rows) - 3} more" if len(self.rows) > 3 else ""
        return (
            f"while writing {len(self.rows)} row(s) of {self.table} created earlier in this "
            f"transaction and buffered until now ({shown}{more}); the transaction is "
            "aborted: roll it back"
        )


class Lookup:
    """A value of a row written later that the database selects as it writes the row
    (:meth:`Cursor.lookup`); once read for a ``COPY``, its ``value``."""

    __slots__ = ("params", "query", "resolved", "value")

    def __init__(self, query: str, params: tuple[Any, ...]):
        self.query = query
        self.params = params
        self.resolved = False
        self.value: Any = None

    def __repr__(self) -> str:
        return f"<Lookup ({self.query}) {self.params!r}>"


class Cursor:
    """A database transaction. Subclasses adapt one DB-API connection."""

    def __init__(self, backend: Backend, connection: Any, release: Callable[[Any, bool], None]):
        self.backend = backend
        self.dialect = backend.dialect
        self._cnx = connection
        self._release = release
        self._cur = connection.cursor()
        self._closed = False
        #: set by the registry that opened the cursor
        self.registry: Any = None
        #: the record cache shared by every environment on this cursor:
        #: model name -> field name -> record id -> value (in cache form)
        self.cache: dict[str, dict[str, dict[int, Any]]] = {}
        #: what the engine read once for this transaction (a channel's enqueue rules),
        #: keyed by what read it; forgotten with the record cache
        self.transaction_cache: dict[str, Any] = {}
        #: statements executed so far (tests count queries with it)
        self.sql_count = 0
        self.precommit = Callbacks()
        self.postcommit = Callbacks()
        self.postrollback = Callbacks()
        #: why commit() and rollback() are refused now (see :meth:`owned`), or None
        self._owned: str | None = None
        #: a lazy savepoint to open before the next statement, and the last one opened
        self._savepoint_due: str | None = None
        self._savepoint_open: str | None = None
        #: rows created in this transaction and not written yet (:meth:`defer_insert`)
        self._deferred: list[DeferredRows] = []
        #: the values rows written later look up when written (:meth:`lookup`)
        self._lookups: dict[tuple[str, tuple[Any, ...]], Lookup] = {}

    # -- statements ---------------------------------------------------------

    def execute(
        self, query: str, params: Sequence[Any] | None = None, *, write: bool | None = None
    ) -> Cursor:
        """Run one statement. ``write``: whether it writes, where the caller knows (the
        job store's statements say); only SQLite's job cursor uses it, to open its write
        transaction (:class:`job_worker.db.jobstore_sqlite.JobCursor`)."""
        if self._closed:
            raise RuntimeError("cursor is closed")
        if self._savepoint_due is not None:
            self._open_due_savepoint()
        if self._deferred:
            self.flush()
        self._before_execute()
        self.sql_count += 1
        self._execute(query, params)
        return self

    def executemany(self, query: str, seq_of_params: Sequence[Sequence[Any]]) -> Cursor:
        if self._closed:
            raise RuntimeError("cursor is closed")
        if self._savepoint_due is not None:
            self._open_due_savepoint()
        if self._deferred:
            self.flush()
        self._before_execute()
        self.sql_count += 1
        self._executemany(query, seq_of_params)
        return self

    # -- rows written later -------------------------------------------------------

    #: whether :meth:`take_ids`, :meth:`defer_insert` and :meth:`lookup` serve on this
    #: database
    defers_inserts = False

    def take_ids(self, table: str, count: int) -> list[int]:
        """``count`` new ids of ``table`` (its ``id`` column's sequence), in increasing
        order, for rows that :meth:`defer_insert` will write: from the block of ids this
        process holds (:class:`job_worker.db.ids.IdBlocks`), which takes new ones from
        the sequence when it runs short (a round trip, outside the transaction)."""
        return self.backend.id_blocks.take(table, count, self._fetch_ids, self._skip_ids)

    def _fetch_ids(self, table: str, count: int) -> list[int]:
        raise NotImplementedError(f"{self.dialect} takes ids as it inserts rows")

    def _skip_ids(self, table: str, past: int) -> None:
        """Move the sequence of ``table`` past ``past`` and the table's rows, unless it is
        past them already."""
        raise NotImplementedError(f"{self.dialect} takes ids as it inserts rows")

    def lookup(self, query: str, params: Sequence[Any] = ()) -> Lookup:
        """A value of a row handed to :meth:`defer_insert` that the database works out
        when it writes the row: the one value ``query`` selects (NULL when it selects no
        row). The row costs no read before it: a single enqueue puts its user's company
        in its job this way. The same ``query`` and ``params`` give the same lookup in a
        transaction. Only :meth:`defer_insert` takes it; the record cache must not hold
        it (the value is read back from the row)."""
        key = (query, tuple(params))
        found = self._lookups.get(key)
        if found is None:
            found = self._lookups[key] = Lookup(query, tuple(params))
        return found

    def resolve_lookups(self) -> None:
        """Read the value of every lookup of this transaction not read yet, in one round
        trip (before rows that hold them go where they cannot be worked out: ``COPY``)."""
        pending = [lookup for lookup in self._lookups.values() if not lookup.resolved]
        if not pending:
            return
        union = " UNION ALL ".join(
            f"SELECT {index}, ({lookup.query})" for index, lookup in enumerate(pending)
        )
        params = [param for lookup in pending for param in lookup.params]
        (rows,) = self.execute_together([(union, params)])  # at once, even during a commit
        for index, value in rows:
            pending[index].value = value
        for lookup in pending:
            lookup.resolved = True

    def defer_insert(
        self,
        table: str,
        columns: tuple[str, ...],
        rows: list[Sequence[Any]],
        describe: Callable[[Sequence[Any]], str],
    ) -> None:
        """Write ``rows`` (values of ``columns``, ids included: :meth:`take_ids`) into
        ``table`` later, together with the other rows created in the meantime: just
        before the next statement this cursor runs, whatever it is, or at commit.
        Nothing can tell the difference, but for an error the database finds in such a
        row (a foreign key to a row deleted meanwhile): it is raised by that next
        statement, or by the commit, with a note naming the rows (``describe``) and
        the transaction is aborted. A rollback, or the rollback of a savepoint opened
        after them, drops them unwritten."""
        last = self._deferred[-1] if self._deferred else None
        if last is not None and last.table == table and last.columns == columns:
            last.rows.extend(rows)
        else:
            self._deferred.append(DeferredRows(table, columns, list(rows), describe))

    @property
    def deferred_rows(self) -> int:
        """How many rows wait to be written (:meth:`defer_insert`)."""
        return sum(len(batch.rows) for batch in self._deferred)

    def flush(self) -> None:
        """Write the rows :meth:`defer_insert` holds now."""
        batches, self._deferred = self._deferred, []
        for batch in batches:
            try:
                self._write_deferred(batch)
            except Exception as exc:
                exc.add_note(batch.failure_note())
                raise

    def _write_deferred(self, batch: DeferredRows) -> None:
        columns = ", ".join(f'"{name}"' for name in batch.columns)
        one = ", ".join(["%s"] * len(batch.columns))
        self._before_execute()
        self.sql_count += 1
        self._executemany(f'INSERT INTO "{batch.table}" ({columns}) VALUES ({one})', batch.rows)

    def execute_together(
        self, statements: Sequence[tuple[str, Sequence[Any]]], *, prepared: bool = False
    ) -> list[list[tuple[Any, ...]]]:
        """Run ``statements`` in order and return the rows of each (none for a statement
        that returns no rows). A database behind a network sends them in one round trip
        (:meth:`job_worker.db.postgres.PostgresCursor.execute_together`), where
        ``prepared`` statements (those of the hot paths) are planned once."""
        results: list[list[tuple[Any, ...]]] = []
        for query, params in statements:
            self.execute(query, params)
            results.append(self.fetchall() if self.description is not None else [])
        return results

    def _before_execute(self) -> None:
        """Open a transaction lazily when the database needs it (SQLite)."""

    def _execute(self, query: str, params: Sequence[Any] | None) -> None:
        raise NotImplementedError

    def _executemany(self, query: str, seq_of_params: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._cur.fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._cur.fetchall()

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]:
        return self._cur.fetchmany(size)

    def dictfetchone(self) -> dict[str, Any] | None:
        row = self._cur.fetchone()
        return None if row is None else dict(zip(self._column_names(), row, strict=True))

    def dictfetchall(self) -> list[dict[str, Any]]:
        names = self._column_names()
        return [dict(zip(names, row, strict=True)) for row in self._cur.fetchall()]

    def _column_names(self) -> list[str]:
        return [d[0] for d in self._cur.description or ()]

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def description(self) -> Any:
        return self._cur.description

    @property
    def lastrowid(self) -> int:
        """The id of the row the last INSERT of one row wrote (valid when rowcount is 1),
        on databases whose backend has ``rowid_inserts``."""
        raise NotImplementedError(f"{self.dialect} gives inserted ids through RETURNING")

    # -- transaction ----------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        raise NotImplementedError

    def commit(self) -> None:
        self._commit(self._cnx.commit)

    def execute_and_commit(
        self, statements: Sequence[tuple[str, Sequence[Any]]], *, prepared: bool = False
    ) -> list[list[tuple[Any, ...]]]:
        """:meth:`execute_together`, then :meth:`commit`: in one round trip where the
        database can (PostgreSQL, on the worker's own connections). If a statement
        fails, nothing commits."""
        results = self.execute_together(statements, prepared=prepared)
        self.commit()
        return results

    def _commit(self, send: Callable[[], _T]) -> _T:
        """A commit whose last step, ``send``, ends the transaction on the server; returns
        what ``send`` does."""
        self._check_not_owned("commit")
        self.precommit.run(swallow=False)
        if self._deferred:
            self.flush()
        self._savepoint_due = self._savepoint_open = None
        result = send()
        self._lookups.clear()
        self.cache.clear()
        self.transaction_cache.clear()
        self.postrollback.clear()
        self.postcommit.run(swallow=True)
        return result

    def rollback(self) -> None:
        self._check_not_owned("roll back")
        self.precommit.clear()
        self.postcommit.clear()
        self._savepoint_due = self._savepoint_open = None
        self._deferred = []
        self._lookups.clear()
        self._cnx.rollback()
        self.cache.clear()
        self.transaction_cache.clear()
        self.postrollback.run(swallow=True)

    @contextmanager
    def owned(self, reason: str) -> Iterator[None]:
        """A block whose code may not end the transaction: commit() and rollback()
        raise :class:`TransactionOwnedError` with ``reason``. A job runs in such a block:
        its writes commit with its ``done`` state, or not at all."""
        previous, self._owned = self._owned, reason
        try:
            yield
        finally:
            self._owned = previous

    def _check_not_owned(self, action: str) -> None:
        if self._owned is not None:
            raise TransactionOwnedError(f"cannot {action} here: {self._owned}")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run a block that can fail without aborting the whole transaction."""
        name = new_savepoint_name()
        self.execute(f'SAVEPOINT "{name}"')
        marks = self.callback_marks()
        try:
            yield
        except BaseException:
            self.rollback_to_savepoint(name, marks)
            self.execute(f'RELEASE SAVEPOINT "{name}"')
            raise
        else:
            self.execute(f'RELEASE SAVEPOINT "{name}"')

    @contextmanager
    def lazy_savepoint(self) -> Iterator[str]:
        """A savepoint around a block, opened only just before the block's first
        statement: a block that never talks to the database costs no round trip. The
        block undoes itself with :meth:`rollback_to_savepoint` and the name it is given.
        The savepoint is released when the next lazy savepoint opens, or with the
        transaction (it stays open after the block, as nobody needs it any more, to
        save a round trip)."""
        name = new_savepoint_name()
        self.flush()  # rows created before the block are not the block's to undo
        self._savepoint_due = name
        try:
            yield name
        finally:
            self._savepoint_due = None

    def _open_due_savepoint(self) -> None:
        self.execute_together(self._take_due_savepoint())

    def _take_due_savepoint(self) -> list[tuple[str, Sequence[Any]]]:
        """The statements that open the due lazy savepoint (releasing the one before);
        from now on it counts as open."""
        name, self._savepoint_due = self._savepoint_due, None
        statements: list[tuple[str, Sequence[Any]]] = []
        if self._savepoint_open is not None:
            statements.append((f'RELEASE SAVEPOINT "{self._savepoint_open}"', ()))
        statements.append((f'SAVEPOINT "{name}"', ()))
        self._savepoint_open = name
        return statements

    def callback_marks(self) -> tuple[int, int, int]:
        """Where the callback lists stand, to forget what a rolled-back savepoint added."""
        return len(self.precommit), len(self.postcommit), len(self.postrollback)

    def rollback_to_savepoint(self, name: str, marks: tuple[int, int, int]) -> None:
        """Undo what happened since savepoint ``name``: its writes, the callbacks added
        since ``marks`` (a post-commit action of undone work must not run) and the
        record cache. A lazy savepoint that never opened has no writes to undo.

        Rows waiting to be written (:meth:`defer_insert`) were all created after the
        savepoint: opening a savepoint writes those created before it. They are
        dropped."""
        self._deferred = []
        if name == self._savepoint_due:
            self._savepoint_due = None
        else:
            self.execute(f'ROLLBACK TO SAVEPOINT "{name}"')
        for callbacks, length in zip(
            (self.precommit, self.postcommit, self.postrollback), marks, strict=True
        ):
            callbacks.truncate(length)
        self.cache.clear()
        self.transaction_cache.clear()

    # -- lifetime -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Give the connection back; an open transaction is rolled back."""
        if self._closed:
            return
        self._closed = True
        self._deferred = []
        self._lookups.clear()
        healthy = True
        try:
            self._cur.close()
            if self.in_transaction:
                self._cnx.rollback()
        except Exception:
            healthy = False
        self.cache.clear()
        self._release(self._cnx, healthy)

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.commit()
            else:
                self.rollback()
        finally:
            self.close()
