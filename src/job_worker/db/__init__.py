"""Database backends behind one interface: :class:`Backend` and :class:`Cursor`."""

from __future__ import annotations

from .backend import Backend, Column, Index, TableSchema
from .cursor import Cursor, TransactionOwnedError

__all__ = [
    "Backend",
    "Column",
    "Cursor",
    "Index",
    "TableSchema",
    "TransactionOwnedError",
    "connect",
]


def connect(url: str, *, create: bool = True) -> Backend:
    """Open the backend for a database URL.

    ``sqlite:///relative.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``
    is refused (each connection would see its own empty database), and
    ``postgresql://user@host:port/db`` or anything else libpq accepts.

    Connections are made when first needed. Without ``create`` a SQLite file that
    does not exist is refused (:class:`~job_worker.exceptions.DatabaseOpenError`)
    instead of being created; job_worker never creates PostgreSQL databases.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"database URL must be a non-empty string, got {url!r}")
    if url.startswith("sqlite:"):
        from .sqlite import SqliteBackend

        if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise ValueError(
                f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        path = url[len("sqlite:///") :]
        if path == ":memory:":
            raise ValueError(
                "sqlite:///:memory: is not supported: every connection would see its own "
                "empty database; use a file"
            )
        return SqliteBackend(url, path, create=create)
    if url.startswith(("postgresql:", "postgres:")):
        from .postgres import PostgresBackend

        return PostgresBackend(url)
    raise ValueError(
        f"unsupported database URL {url!r}: expected sqlite:///path.db or postgresql://..."
    )
