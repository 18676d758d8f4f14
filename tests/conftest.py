"""Fixtures shared by the whole suite.

Every database test runs on SQLite and on PostgreSQL (``db_url`` is
parametrized). SQLite gets a fresh file per test; PostgreSQL a fresh schema
per test in one database created for the test session. Set
``JOB_WORKER_REQUIRE_POSTGRES=1`` (CI does) to turn a missing PostgreSQL
server into a failure instead of a skip; ``JOB_WORKER_TEST_PG_URL`` points at
the server (default: the local one).
"""

from __future__ import annotations

import os
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote

import psycopg
import pytest

from job_worker import SUPERUSER_ID, Registry, api

PG_ADMIN_URL = os.environ.get("JOB_WORKER_TEST_PG_URL", "postgresql://127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("JOB_WORKER_REQUIRE_POSTGRES", "") not in ("", "0")


def _with_database(url: str, dbname: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + dbname
    return f"{base}?{query}" if query else base


def _with_schema(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


class SchemaDropper:
    """Drops the schemas of finished tests on a thread of its own, so that no test waits
    for the drop of the one before it (tens of milliseconds each, over a thousand tests).
    A schema that cannot be dropped (the server restarting) goes with the database at the
    end of the session."""

    def __init__(self, url: str):
        self.url = url
        self.todo: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="schema dropper", daemon=True)
        self.thread.start()

    def drop(self, schema: str) -> None:
        self.todo.put(schema)

    def close(self) -> None:
        self.todo.put(None)
        self.thread.join()

    def _run(self) -> None:
        cnx: psycopg.Connection | None = None
        try:
            while (schema := self.todo.get()) is not None:
                try:
                    if cnx is None or cnx.closed or cnx.broken:
                        cnx = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                        # a schema something still holds waits for the end of the session
                        cnx.execute("SET lock_timeout = '10s'")
                    cnx.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                except psycopg.Error:
                    pass  # dropped with the database
        finally:
            if cnx is not None:
                cnx.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database for this test session, dropped at the end."""
    name = f"job_worker_test_{os.getpid()}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if REQUIRE_PG:
            pytest.fail(
                f"PostgreSQL is required (JOB_WORKER_REQUIRE_POSTGRES) but unreachable: {exc}"
            )
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(PG_ADMIN_URL, name)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def schema_dropper(pg_database: str) -> Iterator[SchemaDropper]:
    dropper = SchemaDropper(pg_database)
    yield dropper
    dropper.close()


@pytest.fixture
def pg_url(pg_database: str, schema_dropper: SchemaDropper) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test (in
    the background: the next test does not wait for it)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_database, autocommit=True) as cnx:
        cnx.execute(f'CREATE SCHEMA "{schema}"')
    yield _with_schema(pg_database, schema)
    schema_dropper.drop(schema)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def make_registry(db_url: str) -> Iterator[Callable[..., Registry]]:
    """Build registries on the test's database; they are closed afterwards."""
    built: list[Registry] = []

    def make(modules: list[str] | tuple[str, ...] = (), url: str | None = None) -> Registry:
        registry = Registry(url or db_url, list(modules))
        built.append(registry)
        return registry

    yield make
    for registry in built:
        registry.close()


@pytest.fixture
def registry(make_registry) -> Registry:
    """A registry with the test applications loaded."""
    return make_registry(["crm"])


def rolled_back_env(registry: Registry) -> Iterator[api.Environment]:
    """A superuser environment on a new cursor, rolled back when the generator ends."""
    cr = registry.cursor()
    try:
        yield api.Environment(cr, SUPERUSER_ID, {})
    finally:
        cr.rollback()
        cr.close()


@pytest.fixture
def env(registry: Registry) -> Iterator[api.Environment]:
    """A superuser environment on a cursor that is rolled back after the test."""
    yield from rolled_back_env(registry)


@pytest.fixture
def qregistry(make_registry) -> Registry:
    """A registry with the job test application (crm + jobapp)."""
    return make_registry(["jobapp"])


@pytest.fixture
def qenv(qregistry: Registry) -> Iterator[api.Environment]:
    """A superuser environment on the job test app, rolled back after the test."""
    yield from rolled_back_env(qregistry)
