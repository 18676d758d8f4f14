"""One registry per test module and database kind, one rolled-back cursor per test.

Building a registry creates every table; doing it once per module keeps the
suite fast. Tests here never commit: each gets an ``env`` on a cursor that is
rolled back afterwards, so they cannot see each other's rows. Ids come from
sequences that a rollback does not rewind (on PostgreSQL): never assume them.
Tests that need a database of their own use ``make_registry``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote

import psycopg
import pytest

from job_worker import Registry, api


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_registry(request, tmp_path_factory) -> Iterator[Registry]:
    """The crm application on a database of each kind, for the tests of one module."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("orm") / "shared.db"
        registry = Registry(f"sqlite:///{path}", ["crm"])
        yield registry
        registry.close()
        return
    database = request.getfixturevalue("pg_database")
    schema = f"m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database, autocommit=True) as cnx:
        cnx.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in database else "?"
    registry = Registry(f"{database}{sep}options={quote(f'-csearch_path={schema}')}", ["crm"])
    yield registry
    registry.close()
    with psycopg.connect(database, autocommit=True) as cnx:
        cnx.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def registry(shared_registry: Registry) -> Registry:
    """The shared registry: the suite's ``env`` fixture runs on it, rolled back after each test."""
    return shared_registry


@pytest.fixture
def count_rows() -> Callable[[api.Environment, str], int]:
    """Rows of a model's table, counted with SQL (not through the ORM under test)."""

    def count(env: api.Environment, model: str) -> int:
        env.cr.execute(f'SELECT COUNT(*) FROM "{env[model]._table}"')
        return env.cr.fetchone()[0]

    return count
