"""Fixtures of the CLI tests: a database with the opsapp test application, and a
runner that invokes ``job-worker`` on it in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner, Result
from opsapp.scenario import Scenario, populate_database

from job_worker import SUPERUSER_ID, Registry, api
from job_worker.cli import main


@pytest.fixture
def ops_registry(make_registry) -> Registry:
    return make_registry(["opsapp"])


@pytest.fixture
def scenario(ops_registry: Registry) -> Scenario:
    return populate_database(ops_registry)


@pytest.fixture
def ops_env(ops_registry: Registry) -> Iterator[api.Environment]:
    """A superuser environment committed after the test body (so commands see it)."""
    with ops_registry.cursor() as cr:
        yield api.Environment(cr, SUPERUSER_ID, {})


@pytest.fixture
def cli(db_url: str) -> Callable[..., Result]:
    """``cli("jobs", "list", "--json")`` runs the command on the test database."""
    runner = CliRunner(env={"JOB_WORKER_DATABASE_URL": db_url, "JOB_WORKER_LOAD": "opsapp"})

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return invoke
