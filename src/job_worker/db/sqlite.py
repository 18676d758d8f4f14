"""SQLite backend: one file, WAL mode, safe for several processes on one host.

SQLite differs from PostgreSQL in ways this module absorbs:

- placeholders are ``?``: ``%s`` is translated (``%%`` is a literal ``%``);
- there is no ``BEGIN`` until we send one: a read-write cursor opens its
  transaction with ``BEGIN IMMEDIATE`` so that it holds the write lock from its
  first statement; a deferred transaction that read first and then writes gets
  ``SQLITE_BUSY`` without waiting when another process committed in between;
- datetimes are stored as ISO-8601 text with microseconds, which sorts like
  time (the cursor writes them so when it binds parameters: sqlite3's
  process-wide adapters are left alone); booleans as 0/1; JSON as text;
- ``LIKE`` is made case-sensitive per connection, as in PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from ..exceptions import DatabaseFullError, DatabaseOpenError
from .backend import Backend, Column, TableSchema
from .cursor import Cursor


def format_datetime(value: datetime) -> str:
    """The stored text of a datetime: ``YYYY-MM-DD HH:MM:SS.ffffff``, always with
    microseconds, so that text order is time order."""
    return value.isoformat(" ", "microseconds")


#: parameter types stored as text, and how
_AS_TEXT: dict[type, Any] = {datetime: format_datetime, date: date.isoformat}
_AS_TEXT_TYPES = frozenset(_AS_TEXT)


def _bindable(params: Sequence[Any]) -> tuple[Any, ...]:
    """``params`` as the cursor binds them: datetimes and dates as their stored text.
    Converted here rather than by ``sqlite3.register_adapter``, which would change
    how every sqlite3 user of the process stores them. Many statements have none:
    one pass in C finds that out."""
    values = tuple(params)
    if _AS_TEXT_TYPES.isdisjoint(map(type, values)):
        return values
    return tuple([_AS_TEXT[type(v)](v) if type(v) in _AS_TEXT_TYPES else v for v in values])


def _datetime_column(value: Any) -> Any:
    if value.__class__ is datetime:
        return value.isoformat(" ", "microseconds")
    return value if value is None else _as_text(value)


def _date_column(value: Any) -> Any:
    if value.__class__ is date:
        return value.isoformat()
    return value if value is None else _as_text(value)


def _as_text(value: Any) -> Any:
    """A datetime or date as its stored text; anything else as it is."""
    convert = _AS_TEXT.get(type(value))
    return value if convert is None else convert(value)


_COLUMN_WRITERS = {"datetime": _datetime_column, "date": _date_column}

_TYPES = {
    "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "varchar": "VARCHAR",
    "text": "TEXT",
    "int": "INTEGER",
    "float": "REAL",
    "bool": "BOOLEAN",
    "date": "DATE",
    "datetime": "TIMESTAMP",
    "json": "JSON",
    "fk": "INTEGER",
}

_PLACEHOLDER = re.compile(r"%%|%s")


@lru_cache(maxsize=2048)
def _translate(query: str) -> str:
    return _PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else "?", query)


class SqliteCursor(Cursor):
    def __init__(self, backend: SqliteBackend, connection: Any, release: Any, readonly: bool):
        super().__init__(backend, connection, release)
        self._begin = "BEGIN" if readonly else "BEGIN IMMEDIATE"
        self._path = backend.path

    def _before_execute(self) -> None:
        if not self._cnx.in_transaction:
            self._cur.execute(self._begin)

    def _execute(self, query: str, params: Sequence[Any] | None) -> None:
        try:
            if params is None:
                self._cur.execute(query)
            else:
                self._cur.execute(_translate(query), _bindable(params))
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise self._full() from exc
            raise

    def _executemany(self, query: str, seq_of_params: Sequence[Sequence[Any]]) -> None:
        try:
            self._cur.executemany(_translate(query), map(_bindable, seq_of_params))
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise self._full() from exc
            raise

    def commit(self) -> None:
        try:
            super().commit()
        except sqlite3.OperationalError as exc:  # in WAL mode, a commit is where the log grows
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise self._full() from exc
            raise

    def _full(self) -> DatabaseFullError:
        """SQLite's "database or disk is full", naming the file."""
        return DatabaseFullError(
            f"database file {self._path} is full: no space left on its filesystem;"
            " the transaction was not committed (free space, then retry)"
        )

    @property
    def in_transaction(self) -> bool:
        return self._cnx.in_transaction

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def lastrowid(self) -> int:
        """The id of the row the last INSERT of one row wrote (valid when rowcount is 1)."""
        return self._cur.lastrowid


class SqliteBackend(Backend):
    dialect = "sqlite"
    job_store_class = ".jobstore_sqlite:SqliteJobStore"
    forward_references = True  # foreign keys are only checked when rows are written
    nulls_sort_high = False  # SQLite sorts NULL first: the ORM says NULLS LAST explicitly
    lock_rows = ""  # a read-write transaction already holds the database's write lock
    rowid_inserts = True

    def __init__(self, url: str, path: str, *, busy_timeout: float = 30.0, create: bool = True):
        self.url = url
        self.path = path
        self.busy_timeout = busy_timeout
        #: a missing file is created on first use; without, it is an error
        self.create = create
        #: the file cannot be written (permissions, read-only mount): seen at each new
        #: connection, so that a writing transaction fails with a clear error at its start
        self.read_only = False
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    @property
    def name(self) -> str:
        return self.path

    def connect(self) -> sqlite3.Connection:
        """A new connection with this backend's settings (WAL, busy timeout, foreign keys);
        the pool and the worker's dedicated sessions both open theirs here. A file that
        cannot be opened raises :class:`DatabaseOpenError` naming the reason."""
        if not self.create and not os.path.exists(self.path):
            raise DatabaseOpenError(
                f"database file {self.path} does not exist (`job-worker init` creates it)"
            )
        try:
            cnx = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,  # we send BEGIN ourselves
                check_same_thread=False,
            )
        except sqlite3.OperationalError as exc:
            raise self._open_error(exc) from exc
        try:
            self.read_only = not os.access(self.path, os.W_OK)
            self._use_wal(cnx)  # the first read of the file: a file of another kind fails here
            cnx.execute("PRAGMA synchronous=NORMAL")
            cnx.execute("PRAGMA foreign_keys=ON")
            cnx.execute("PRAGMA case_sensitive_like=ON")
        except sqlite3.DatabaseError as exc:
            cnx.close()
            if "locked" in str(exc):  # contention, not a file that cannot be opened
                raise
            raise self._open_error(exc) from exc
        return cnx

    def _open_error(self, exc: sqlite3.DatabaseError) -> DatabaseOpenError:
        """What is wrong with the file, in one line (SQLite only says "unable to open")."""
        path = self.path
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            return DatabaseOpenError(f"database path {path} is a folder, not a database file")
        if not os.path.isdir(folder):
            return DatabaseOpenError(
                f"cannot open database file {path}: folder {folder} does not exist"
            )
        if "not a database" in str(exc):
            return DatabaseOpenError(f"{path} is not an SQLite database file")
        if "readonly" in str(exc) or "read-only" in str(exc):
            return DatabaseOpenError(f"cannot write database file {path}: it is read-only")
        if os.path.exists(path) and not os.access(path, os.R_OK):
            return DatabaseOpenError(f"cannot open database file {path}: permission denied")
        return DatabaseOpenError(f"cannot open database file {path}: {exc}")

    def _use_wal(self, cnx: sqlite3.Connection) -> None:
        """Put the file in WAL mode (it stays so). Switching waits for no busy handler:
        when another connection is switching a new file at the same moment, SQLite says
        "database is locked" at once, so look again until it is done or the busy timeout
        is spent."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                mode = cnx.execute("PRAGMA journal_mode").fetchone()
                if self.read_only or (mode and str(mode[0]).lower() == "wal"):
                    return  # a file we cannot write is read as it is
                cnx.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)  # backing off while the other connection switches the file
            delay = min(delay * 2, 0.1)

    def _acquire(self) -> sqlite3.Connection:
        with self._lock:
            if self._pid != os.getpid():  # forked: never share a parent's connection
                self._idle = []
                self._pid = os.getpid()
            if self._idle:
                return self._idle.pop()
        return self.connect()

    def _release(self, cnx: sqlite3.Connection, healthy: bool) -> None:
        if healthy and self._pid == os.getpid() and not cnx.in_transaction:
            with self._lock:
                if len(self._idle) < 8:
                    self._idle.append(cnx)
                    return
        cnx.close()

    def cursor(self, *, readonly: bool = False) -> Cursor:
        cnx = self._acquire()
        if self.read_only and not readonly:
            self._release(cnx, True)
            raise DatabaseOpenError(f"cannot write database file {self.path}: it is read-only")
        return SqliteCursor(self, cnx, self._release, readonly)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for cnx in idle:
            cnx.close()

    # -- SQL fragments --------------------------------------------------------

    def column_type(self, kind: str) -> str:
        return _TYPES[kind]

    def column_writer(self, kind: str) -> Callable[[Any], Any] | None:
        # the text _bindable would make at each statement, made while the ORM builds
        # its rows: the rows the ORM inserts need no second look when bound. Most
        # values of such columns are None or of the column's type: one check each
        return _COLUMN_WRITERS.get(kind)

    def in_ids(self, column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
        if len(ids) == 1:  # one record (a user's company, say): no JSON to encode and scan
            return f"{column} = %s", [ids[0]]
        # json_each turns one text parameter into a table: no limit on the count.
        return f"{column} IN (SELECT value FROM json_each(%s))", [json.dumps(list(ids))]

    def in_values(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN (SELECT value FROM json_each(%s))", [
            json.dumps([_json_scalar(v) for v in values])
        ]

    def ilike(self, column: str) -> str:
        # LIKE is case-sensitive on our connections (see connect)
        return f"lower({column}) LIKE lower(%s)"

    def limit_offset(self, limit: int | None, offset: int) -> str:
        # SQLite accepts OFFSET only after a LIMIT, where -1 means none
        if not offset:
            return f" LIMIT {limit:d}" if limit is not None else ""
        return f" LIMIT {-1 if limit is None else limit:d} OFFSET {offset:d}"

    # -- upkeep -----------------------------------------------------------------

    def reclaim_space(self, tables: Sequence[str]) -> None:
        # VACUUM rewrites the whole file: there is no VACUUM of one table
        cnx = self.connect()
        try:
            cnx.execute("VACUUM")
            cnx.execute("PRAGMA optimize")
        finally:
            cnx.close()

    # -- schema -----------------------------------------------------------------

    def lock_schema(self, cr: Cursor) -> None:
        # BEGIN IMMEDIATE already holds the database's single write lock.
        cr.execute("SELECT 1")

    def existing_tables(self, cr: Cursor) -> set[str]:
        cr.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%%'", ()
        )
        return {row[0] for row in cr.fetchall()}

    def describe_table(self, cr: Cursor, table: str) -> TableSchema:
        schema = TableSchema()
        cr.execute(f'PRAGMA table_info("{table}")')
        for _cid, name, type_, notnull, _default, pk in cr.fetchall():
            schema.columns[name] = (type_.upper(), bool(notnull) or bool(pk))
        cr.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s"
            " AND sql IS NOT NULL",
            (table,),
        )
        for name, sql in cr.fetchall():
            schema.indexes[name] = _normalize_index(sql)
        cr.execute(f'PRAGMA foreign_key_list("{table}")')
        for row in cr.fetchall():
            schema.foreign_keys.add((row[3], row[2], row[6].lower()))
        return schema

    def add_column(self, cr: Cursor, table: str, column: Column, fill: Any = None) -> None:
        # SQLite cannot add a NOT NULL column without a constant default, nor add the
        # constraint later without rebuilding the table: with no constant to fill the
        # column stays nullable here and the ORM enforces `required`. A foreign key
        # column cannot have a non-NULL default at all: it is filled by an UPDATE and
        # stays nullable too.
        if column.not_null and fill is not None and not column.references:
            cr.execute(
                f'ALTER TABLE "{table}" ADD COLUMN {self._column_sql(column)}'
                f" DEFAULT {_literal(fill)}"
            )
            return
        nullable = self._column_sql(replace(column, not_null=False))
        cr.execute(f'ALTER TABLE "{table}" ADD COLUMN {nullable}')
        if fill is not None:
            cr.execute(f'UPDATE "{table}" SET "{column.name}" = %s', (fill,))


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(_json_scalar(value)).replace("'", "''") + "'"


def _json_scalar(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _normalize_index(sql: str) -> str:
    sql = re.sub(r"\s+", " ", sql.strip())
    sql = re.sub(r'^CREATE (UNIQUE )?INDEX "?[\w.]+"? ON ', r"\1ON ", sql, flags=re.I)
    return sql.replace('"', "").lower()
