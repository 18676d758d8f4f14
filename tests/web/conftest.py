"""Fixtures of the dashboard tests: the app on the test database, and clients
logged in as a manager (alice) or a user (bob)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from opsapp.scenario import PASSWORD, Scenario, csrf_of, populate_database
from starlette.testclient import TestClient

from job_worker import Registry
from job_worker.web import Settings, create_app


@pytest.fixture
def ops_registry(make_registry) -> Registry:
    return make_registry(["opsapp"])


@pytest.fixture
def scenario(ops_registry: Registry) -> Scenario:
    return populate_database(ops_registry)


@pytest.fixture
def client_for(
    ops_registry: Registry, scenario: Scenario
) -> Iterator[Callable[[str | None], TestClient]]:
    """``client_for("alice")``: a client logged in as that user (None: anonymous)."""
    app = create_app(ops_registry, Settings(secret="test-secret-0123456789"))
    clients: list[TestClient] = []

    def make(login: str | None) -> TestClient:
        client = TestClient(app, base_url="http://localhost", follow_redirects=False)
        clients.append(client)
        if login:
            token = csrf_of(client.get("/login").text)
            response = client.post(
                "/login", data={"login": login, "password": PASSWORD, "csrf_token": token}
            )
            assert response.status_code == 303, response.text
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def manager(client_for) -> TestClient:
    return client_for("alice")


@pytest.fixture
def user(client_for) -> TestClient:
    return client_for("bob")
