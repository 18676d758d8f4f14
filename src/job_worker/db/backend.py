"""The seam between job_worker and a database.

Everything that differs between SQLite and PostgreSQL lives behind this
interface as a named operation: opening cursors, the SQL types of columns,
schema introspection and DDL, "id in this set" conditions, and (for the queue)
the named queries of the worker. Callers never branch on the dialect.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .ids import IdBlocks

if TYPE_CHECKING:
    from .cursor import Cursor


@dataclass(frozen=True)
class Column:
    """A column as the ORM wants it. ``kind`` is portable; the backend maps it to a type."""

    name: str
    kind: str  # id, varchar, text, int, float, bool, date, datetime, json, fk
    not_null: bool = False
    references: str | None = None  # table of a foreign key
    ondelete: str = "set null"


@dataclass(frozen=True)
class Index:
    name: str
    table: str
    columns: tuple[str, ...]
    unique: bool = False
    where: str | None = None  # partial index predicate, portable SQL


@dataclass
class TableSchema:
    """What a table looks like in the database (as read back by introspection)."""

    columns: dict[str, tuple[str, bool]] = field(default_factory=dict)  # name -> (type, not null)
    indexes: dict[str, str] = field(default_factory=dict)  # name -> normalized definition
    foreign_keys: set[tuple[str, str, str]] = field(
        default_factory=set
    )  # (column, table, ondelete)


class Backend(ABC):
    """One database. Opened with :func:`job_worker.db.connect`."""

    dialect: str
    url: str
    #: the class of the worker's named operations on this database, as ``.module:Class``
    #: of this package: named, not imported, so the store's module may import this one
    #: (:func:`job_worker.db.jobstore.job_store`)
    job_store_class: str
    #: CREATE TABLE may name a table that does not exist yet in REFERENCES
    forward_references: bool = False
    #: NULL sorts after every value in ascending order unless told otherwise
    nulls_sort_high: bool = True
    #: appended to a SELECT to lock the rows it reads until the transaction ends
    lock_rows: str = ""
    #: a row inserted alone gives its id through ``Cursor.lastrowid``, cheaper there than
    #: ``RETURNING`` (SQLite spends a fixed ~60 µs on every statement with RETURNING)
    rowid_inserts: bool = False

    @property
    def name(self) -> str:
        """The database as messages name it, without credentials."""
        return self.url

    @functools.cached_property
    def id_blocks(self) -> IdBlocks:
        """The ids this process took ahead for its new rows (:meth:`Cursor.take_ids`)."""
        return IdBlocks()

    # -- connections ----------------------------------------------------------

    @abstractmethod
    def cursor(self, *, readonly: bool = False) -> Cursor:
        """A new transaction on a connection of this backend's pool."""

    @abstractmethod
    def close(self) -> None:
        """Close every pooled connection of this process."""

    # -- SQL fragments ----------------------------------------------------------

    @abstractmethod
    def column_type(self, kind: str) -> str:
        """The SQL type of a portable column kind."""

    @abstractmethod
    def in_ids(self, column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
        """``column`` is one of ``ids``, as one parameter whatever the count."""

    @abstractmethod
    def in_values(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values`` (strings, numbers)."""

    def column_writer(self, kind: str) -> Callable[[Any], Any] | None:
        """How the ORM turns a value of a column of ``kind`` into what the driver binds
        when it inserts rows, or None: as it is (most kinds, on most databases)."""
        return None

    def select_column(self, column: str, kind: str | None) -> str:
        """The expression that reads ``column`` of ``kind`` in the form the ORM decodes."""
        return column

    def ilike(self, column: str) -> str:
        """Case-insensitive LIKE of ``column`` against one parameter."""
        return f"{column} ILIKE %s"

    @abstractmethod
    def limit_offset(self, limit: int | None, offset: int) -> str:
        """What ends a SELECT that returns at most ``limit`` rows (None: all) after
        skipping ``offset``: `` LIMIT 10 OFFSET 20``, or ``""`` for neither."""

    # -- schema -----------------------------------------------------------------

    @abstractmethod
    def lock_schema(self, cr: Cursor) -> None:
        """Serialise schema changes between processes until the transaction ends."""

    @abstractmethod
    def existing_tables(self, cr: Cursor) -> set[str]: ...

    @abstractmethod
    def describe_table(self, cr: Cursor, table: str) -> TableSchema: ...

    def describe_schema(self, cr: Cursor) -> dict[str, TableSchema]:
        """Every table of the database, normalized so that two databases compare equal."""
        return {table: self.describe_table(cr, table) for table in sorted(self.existing_tables(cr))}

    def create_table(self, cr: Cursor, table: str, columns: Iterable[Column]) -> None:
        parts = [self._column_sql(col) for col in columns]
        cr.execute(f'CREATE TABLE "{table}" ({", ".join(parts)})')

    @abstractmethod
    def add_column(self, cr: Cursor, table: str, column: Column, fill: Any = None) -> None:
        """Add ``column`` to an existing table, setting ``fill`` in the rows it has."""

    def create_index(self, cr: Cursor, index: Index) -> None:
        unique = "UNIQUE " if index.unique else ""
        cols = ", ".join(f'"{c}"' for c in index.columns)
        where = f" WHERE {index.where}" if index.where else ""
        cr.execute(f'CREATE {unique}INDEX "{index.name}" ON "{index.table}" ({cols}){where}')

    # -- upkeep -----------------------------------------------------------------

    @abstractmethod
    def reclaim_space(self, tables: Sequence[str]) -> None:
        """Give the space of deleted rows of ``tables`` back and refresh the planner's
        statistics, on a connection of its own: VACUUM cannot run in a transaction."""

    def _column_sql(self, col: Column) -> str:
        sql = f'"{col.name}" {self.column_type(col.kind)}'
        if col.not_null and col.kind != "id":
            sql += " NOT NULL"
        if col.references:
            sql += f' REFERENCES "{col.references}"(id) ON DELETE {col.ondelete.upper()}'
        return sql
