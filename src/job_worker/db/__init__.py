"""Database backends behind one interface: :class:`Backend` and :class:`Cursor`."""

from __future__ import annotations

import re

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
    "driver_modules",
    "redact_url",
]

#: the URL schemes of PostgreSQL (libpq accepts both)
_POSTGRES_SCHEMES = ("postgresql:", "postgres:")

#: a password given as a query parameter (``?password=...``)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*")


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``: what error messages, logs and
    ``--help`` may show of a database URL. The credentials are everything up to
    the last ``@`` before the query, so a password holding ``@`` or ``/`` that was
    not percent-encoded is hidden whole."""
    scheme, sep, rest = url.partition("://")
    if sep:
        before_query, query_sep, query = rest.partition("?")
        credentials, at, host = before_query.rpartition("@")
        if at and ":" in credentials:
            user = credentials.split(":", 1)[0]
            rest = f"{user}:***@{host}{query_sep}{query}"
    return _QUERY_PASSWORD.sub(r"\1***", scheme + sep + rest)


def connect(url: str, *, create: bool = True, pooled: bool = True) -> Backend:
    """Open the backend for a database URL.

    ``sqlite:///relative.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``
    is refused (each connection would see its own empty database), and
    ``postgresql://user@host:port/db`` or anything else libpq accepts.

    Connections are made when first needed. Without ``create`` a SQLite file that
    does not exist is refused (:class:`~job_worker.exceptions.DatabaseOpenError`)
    instead of being created; job_worker never creates PostgreSQL databases.
    ``pooled=False``: no pool of PostgreSQL connections (a command that runs a few
    statements and exits: one connection, no pool threads).
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"database URL must be a non-empty string, got {url!r}")
    shown = redact_url(url)
    if url.startswith("sqlite:"):
        from .sqlite import SqliteBackend

        if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise ValueError(
                f"bad SQLite URL {shown!r}: use sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        path = url[len("sqlite:///") :]
        if path == ":memory:":
            raise ValueError(
                "sqlite:///:memory: is not supported: every connection would see its own "
                "empty database; use a file"
            )
        return SqliteBackend(url, path, create=create)
    if url.startswith(_POSTGRES_SCHEMES):
        from .postgres import PostgresBackend

        return PostgresBackend(url, pooled=pooled)
    raise ValueError(
        f"unsupported database URL {shown!r}: expected sqlite:///path.db or postgresql://..."
    )


def driver_modules(url: str) -> tuple[str, ...]:
    """The modules that serve the database at ``url``, its backend's and its job
    store's, which :func:`connect` and the job store import when first used (none for
    a URL :func:`connect` refuses). A process that forks workers imports them once,
    before it forks: psycopg alone takes about 0.1 s to import."""
    if url.startswith("sqlite:"):
        return ("job_worker.db.sqlite", "job_worker.db.jobstore_sqlite")
    if url.startswith(_POSTGRES_SCHEMES):
        return ("job_worker.db.postgres", "job_worker.db.jobstore_postgres")
    return ()
