"""Dashboard security on both databases: server-side sessions, log-in throttling
and answers, what a plain user may read, bad input answered 400, headers on
every page, Secure cookies over HTTPS and allowed hosts."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from opsapp.scenario import PASSWORD, csrf_of
from starlette.testclient import TestClient

from job_worker import SUPERUSER_ID, api
from job_worker.orm.fields import Datetime
from job_worker.web import Settings, create_app
from job_worker.web.app import host_allowed
from job_worker.web.auth import MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_LOGIN

pytestmark = pytest.mark.timeout(90)

SECRET = "test-secret-0123456789"


def _env(cr) -> api.Environment:
    return api.Environment(cr, SUPERUSER_ID, {})


def _log_in(client: TestClient, login: str, password: str = PASSWORD):
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"login": login, "password": password, "csrf_token": token})


def _sessions(registry, login: str) -> list[dict]:
    with registry.cursor(readonly=True) as cr:
        env = _env(cr)
        user = env["res.users"].search([("login", "=", login)])
        rows = env["res.users.session"].search([("user_id", "=", user.id)])
        return [{"id": r.id, "expires_at": r.expires_at} for r in rows]


# -- sessions -------------------------------------------------------------------------


def test_logout_ends_the_session_and_a_saved_cookie_no_longer_works(client_for, scenario):
    client = client_for("alice")
    saved = dict(client.cookies)
    assert client.get("/").status_code == 200
    client.post("/logout", data={"csrf_token": csrf_of(client.get("/").text)})
    assert client.get("/").status_code == 303
    replay = client_for(None)
    replay.cookies.update(saved)
    response = replay.get("/jobs")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert replay.get("/api/overview").status_code == 401


def test_a_session_ends_after_its_lifetime_however_active_it_is(client_for, scenario, ops_registry):
    client = client_for("alice")
    [before] = _sessions(ops_registry, "alice")
    for _ in range(3):
        assert client.get("/api/overview").status_code == 200
    [after] = _sessions(ops_registry, "alice")
    assert after["expires_at"] == before["expires_at"]  # activity does not extend it
    assert before["expires_at"] - timedelta(hours=12) <= Datetime.now()
    with ops_registry.cursor() as cr:
        _env(cr)["res.users.session"].browse(before["id"]).write(
            {"expires_at": Datetime.now() - timedelta(seconds=1)}
        )
    assert client.get("/api/overview").status_code == 401
    assert client.get("/login").status_code == 200  # the log-in page, not a redirect loop


def test_a_password_change_or_a_disabled_user_ends_their_sessions(
    client_for, scenario, ops_registry
):
    alice, bob = client_for("alice"), client_for("bob")
    with ops_registry.cursor() as cr:
        _env(cr)["res.users"].browse(scenario.manager).set_password("a-new-passw0rd")
    assert alice.get("/api/overview").status_code == 401
    assert _log_in(client_for(None), "alice", "a-new-passw0rd").status_code == 303
    with ops_registry.cursor() as cr:
        _env(cr)["res.users"].browse(scenario.bob).write({"active": False})
    assert bob.get("/api/overview").status_code == 401
    assert _sessions(ops_registry, "bob") == []


def test_a_session_cookie_holds_a_token_that_the_database_stores_hashed(
    client_for, scenario, ops_registry
):
    client = client_for("alice")
    with ops_registry.cursor(readonly=True) as cr:
        cr.execute("SELECT token_hash FROM res_users_session")
        stored = {row[0] for row in cr.fetchall()}
    assert len(stored) == 1
    [digest] = stored
    assert len(digest) == 64 and digest not in client.cookies["job_worker_session"]


def test_logging_in_again_replaces_the_session_the_browser_had(client_for, scenario, ops_registry):
    client = client_for("alice")
    token = csrf_of(client.get("/").text)
    again = client.post(
        "/login", data={"login": "alice", "password": PASSWORD, "csrf_token": token}
    )
    assert again.status_code == 303
    assert len(_sessions(ops_registry, "alice")) == 1
    client_for("alice")  # another browser has a session of its own
    assert len(_sessions(ops_registry, "alice")) == 2


# -- log-in ---------------------------------------------------------------------------


def test_failed_logins_of_one_login_are_throttled_even_with_the_right_password(
    client_for, scenario
):
    client = client_for(None)
    for _ in range(MAX_FAILURES_PER_LOGIN):
        assert _log_in(client, "alice", "wrong-password").status_code == 401
    refused = _log_in(client, "alice", PASSWORD)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert "too many failed log-ins" in refused.text
    # another login from the same address still gets its own tries
    assert _log_in(client, "bob", PASSWORD).status_code == 303


def test_failed_logins_from_one_address_are_throttled_across_logins(client_for, scenario):
    client = client_for(None)
    for number in range(MAX_FAILURES_PER_ADDRESS):
        assert _log_in(client, f"guess-{number}", "wrong-password").status_code == 401
    assert _log_in(client, "bob", PASSWORD).status_code == 429


def test_a_successful_login_clears_the_failures_of_that_login(client_for, scenario):
    client = client_for(None)
    for _ in range(MAX_FAILURES_PER_LOGIN - 1):
        _log_in(client, "alice", "wrong-password")
    assert _log_in(client, "alice", PASSWORD).status_code == 303
    other = client_for(None)
    for _ in range(MAX_FAILURES_PER_LOGIN - 1):
        assert _log_in(other, "alice", "wrong-password").status_code == 401


def test_every_refused_login_checks_one_password_hash(
    client_for, scenario, ops_registry, monkeypatch
):
    """An unknown login, a disabled user, a user without a role and a wrong
    password cost the same work, so the answer time tells nothing."""
    with ops_registry.cursor() as cr:
        env = _env(cr)
        env["res.users"].create({"name": "Eve", "login": "eve", "password": "pw-of-eve-1"})
        env["res.users"].browse(scenario.carol).write({"active": False})
    client = client_for(None)
    token = csrf_of(client.get("/login").text)
    # the throw-away hash is made once per process, at the first unknown login
    client.post("/login", data={"login": "first", "password": "whatever-1", "csrf_token": token})
    calls = []
    real = hashlib.pbkdf2_hmac

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", counting)
    answers = set()
    for login, password in [
        ("nobody", "whatever-1"),
        ("alice", "wrong-password"),
        ("carol", PASSWORD),
        ("eve", "pw-of-eve-1"),
    ]:
        calls.clear()
        response = client.post(
            "/login", data={"login": login, "password": password, "csrf_token": token}
        )
        assert response.status_code == 401, login
        assert len(calls) == 1, login
        answers.add(response.text.split('role="alert">')[1].split("<")[0])
    assert answers == {"wrong login or password"}


# -- what a plain user may see -----------------------------------------------------------


def test_alert_rules_and_their_webhooks_are_for_managers_only(manager, user, scenario):
    token = csrf_of(manager.get("/alerts").text)
    manager.post(
        "/alerts",
        data={
            "name": "Failures",
            "kind": "failed_count",
            "threshold": "0",
            "window_minutes": "60",
            "webhook_url": "https://hooks.example.com/T0/secret-token",
            "csrf_token": token,
        },
    )
    assert "secret-token" in manager.get("/alerts").text
    refused = user.get("/alerts")
    assert refused.status_code == 403 and "secret-token" not in refused.text
    assert 'href="/alerts"' not in user.get("/").text
    assert 'href="/alerts"' in manager.get("/").text


def test_why_box_and_dependencies_hide_another_users_job_of_a_shared_graph(
    manager, user, scenario, ops_registry
):
    with ops_registry.cursor() as cr:
        _env(cr)["queue.job"].browse(scenario.chain_first).write(
            {"name": "Carol's payroll run", "user_id": scenario.carol}
        )
    page = user.get(f"/jobs/{scenario.chain_second}")
    assert page.status_code == 200
    assert "Carol's payroll run" not in page.text
    assert f'href="/jobs/{scenario.chain_first}"' not in page.text
    assert "a job of another user (pending) to be done" in page.text
    graph = user.get(f"/api/jobs/{scenario.chain_second}/graph").json()
    assert [node["id"] for node in graph["nodes"]] == [scenario.chain_second]
    seen_by_manager = manager.get(f"/jobs/{scenario.chain_second}").text
    assert "Carol&#39;s payroll run" in seen_by_manager


# -- bad input ------------------------------------------------------------------------

TOO_BIG = str(2**64)


@pytest.mark.parametrize(
    "path",
    [
        "/jobs?before=%C2%B2",
        f"/jobs?before={TOO_BIG}",
        f"/jobs?after={TOO_BIG}",
        f"/jobs?limit={TOO_BIG}",
        f"/jobs?user_id={TOO_BIG}",
        f"/jobs/{TOO_BIG}",
        f"/api/jobs/{TOO_BIG}",
        f"/api/jobs/{TOO_BIG}/graph",
        f"/jobs/{2**31}",  # ids are 32-bit on PostgreSQL
        f"/api/jobs/{2**63 - 1}",
    ],
)
def test_numbers_that_are_not_ids_answer_400_with_a_message(manager, scenario, path):
    response = manager.get(path)
    assert response.status_code == 400
    assert "must be a whole number from 0 to 2147483647" in response.text
    assert response.headers["x-frame-options"] == "DENY"


def test_a_bad_number_answers_400_even_logged_out(client_for, scenario):
    response = client_for(None).get("/jobs?before=%C2%B2")
    assert response.status_code == 400 and "before must be a whole number" in response.text


def test_bad_numbers_in_forms_and_ids_answer_with_a_message(manager, scenario, ops_registry):
    token = csrf_of(manager.get("/jobs").text)
    for ids in (TOO_BIG, str(2**31), "\u00b2", "-1"):
        bulk = manager.post(
            "/jobs/bulk", data={"action": "requeue", "ids": ids, "csrf_token": token}
        )
        assert bulk.status_code == 400 and "ids must be a whole number" in bulk.text
    action = manager.post(
        f"/jobs/{TOO_BIG}/action", data={"action": "requeue", "csrf_token": token}
    )
    assert action.status_code == 400
    assert manager.post(f"/alerts/{TOO_BIG}", data={"csrf_token": token}).status_code == 400
    for field, value in [("threshold", "nan"), ("threshold", "inf"), ("window_minutes", TOO_BIG)]:
        response = manager.post(
            "/alerts",
            data={"name": "Bad", "kind": "failed_count", field: value, "csrf_token": token},
        )
        assert response.status_code == 303
        assert f"{field} must be" in manager.get("/alerts").text
    limit = manager.post(
        "/channels", data={"name": "exports", "limit": TOO_BIG, "csrf_token": token}
    )
    assert limit.status_code == 303
    assert "limit must be a whole number" in manager.get("/channels").text
    rate = manager.post(
        "/channels",
        data={"name": "exports", "limit": "1", "rate_limit": "nan", "csrf_token": token},
    )
    assert rate.status_code == 303 and "rate limit must be" in manager.get("/channels").text
    with ops_registry.cursor(readonly=True) as cr:
        env = _env(cr)
        assert not env["queue.alert.rule"].search([("name", "=", "Bad")])
        assert not env["queue.limit"].search([("name", "=", "exports")])


@pytest.mark.parametrize(
    "path", ["/jobs?channel=%00", "/jobs?q=a%00b", "/charts?channel=%00", "/api/series?channel=%00"]
)
def test_a_nul_character_in_a_parameter_answers_400(manager, scenario, path):
    response = manager.get(path)
    assert response.status_code == 400 and "NUL character" in response.text
    assert response.headers["x-frame-options"] == "DENY"


def test_a_nul_character_in_a_form_answers_400_and_changes_nothing(
    client_for, manager, scenario, ops_registry
):
    token = csrf_of(manager.get("/alerts").text)
    for path, data in [
        ("/alerts", {"name": "a\x00b", "kind": "failed_count"}),
        ("/alerts", {"name": "n", "kind": "failed_count", "channel": "\x00"}),
        ("/channels", {"name": "x\x00", "limit": "1"}),
        ("/channels/x%00/delete", {}),
        (f"/jobs/{scenario.failed}/action", {"action": "fail", "message": "\x00"}),
    ]:
        response = manager.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 400 and "NUL character" in response.text, path
    anonymous = client_for(None)
    token = csrf_of(anonymous.get("/login").text)
    response = anonymous.post(
        "/login", data={"login": "alice\x00", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 400
    with ops_registry.cursor(readonly=True) as cr:
        env = _env(cr)
        assert not env["queue.alert.rule"].search([])
        assert env["queue.job"].browse(scenario.failed).exc_message != "\x00"


def test_a_non_ascii_csrf_token_is_refused_with_a_message(manager, scenario):
    response = manager.post("/logout", data={"csrf_token": "jeton-\u00e9t\u00e9"})
    assert response.status_code == 403 and "CSRF token" in response.text
    header = manager.post("/logout", headers={"X-CSRF-Token": "\u00e9t\u00e9".encode()})
    assert header.status_code == 403


def test_an_internal_error_page_carries_the_security_headers(ops_registry, scenario, monkeypatch):
    from job_worker.monitoring import kpis

    def broken(*args, **kwargs):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(kpis, "compute", broken)
    app = create_app(ops_registry, Settings(secret=SECRET))
    with TestClient(
        app, base_url="http://localhost", follow_redirects=False, raise_server_exceptions=False
    ) as client:
        assert _log_in(client, "alice").status_code == 303
        response = client.get("/")
    assert response.status_code == 500
    assert "broken on purpose" not in response.text
    assert response.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in response.headers["content-security-policy"]


# -- transport ------------------------------------------------------------------------


def _login_cookie(client: TestClient) -> str:
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"login": "alice", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 303, response.text
    return response.headers["set-cookie"].lower()


def _first_cookie(client: TestClient, **headers: str) -> str:
    """The session cookie set by the log-in page (it holds the CSRF token)."""
    return client.get("/login", headers=headers).headers["set-cookie"].lower()


def test_the_session_cookie_is_secure_over_https_only(ops_registry, scenario):
    app = create_app(ops_registry, Settings(secret=SECRET))
    with TestClient(app, base_url="https://localhost", follow_redirects=False) as client:
        cookie = _login_cookie(client)
        assert "; secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert "strict-transport-security" in client.get("/").headers
    with TestClient(app, base_url="http://localhost", follow_redirects=False) as client:
        assert "; secure" not in _login_cookie(client)
    forced = create_app(ops_registry, Settings(secret=SECRET, https=True))
    with TestClient(forced, base_url="http://localhost", follow_redirects=False) as client:
        assert "; secure" in _first_cookie(client)


def test_a_trusted_proxy_forwards_https_and_the_client_address(ops_registry, scenario):
    behind = create_app(ops_registry, Settings(secret=SECRET, trusted_proxies=("testclient",)))
    untrusted = create_app(ops_registry, Settings(secret=SECRET))
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
    with TestClient(behind, base_url="http://localhost", follow_redirects=False) as client:
        assert "; secure" in _first_cookie(client, **forwarded)
    with TestClient(untrusted, base_url="http://localhost", follow_redirects=False) as client:
        assert "; secure" not in _first_cookie(client, **forwarded)
    for app in (behind, untrusted):
        with TestClient(app, base_url="http://localhost", follow_redirects=False) as client:
            token = csrf_of(client.get("/login").text)
            client.post(
                "/login",
                data={"login": "alice", "password": "wrong-password", "csrf_token": token},
                headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"},
            )
    with ops_registry.cursor(readonly=True) as cr:
        addresses = _env(cr)["res.users.login.failure"].search([]).mapped("address")
    # the proxy's own view (the last address) when trusted; the peer otherwise
    assert sorted(addresses) == ["203.0.113.9", "testclient"]


def test_an_unknown_host_header_is_refused(ops_registry, scenario):
    app = create_app(ops_registry, Settings(secret=SECRET))
    with TestClient(app, base_url="http://localhost:8080", follow_redirects=False) as client:
        assert client.get("/login").status_code == 200
        rebound = client.get("/login", headers={"Host": "attacker.example:8080"})
        assert rebound.status_code == 400 and "allowed hosts" in rebound.text
        assert rebound.headers["x-frame-options"] == "DENY"
        assert client.get("/healthz", headers={"Host": "attacker.example"}).status_code == 400
    named = create_app(ops_registry, Settings(secret=SECRET, allowed_hosts=("jobs.example.com",)))
    with TestClient(named, base_url="http://jobs.example.com", follow_redirects=False) as client:
        assert client.get("/login").status_code == 200
        assert client.get("/login", headers={"Host": "localhost"}).status_code == 400


def test_host_names_match_with_ports_ipv6_and_wildcards():
    loopback = ("127.0.0.1", "localhost", "::1")
    assert host_allowed("[::1]:8080", loopback) and host_allowed("127.0.0.1:80", loopback)
    assert host_allowed("LOCALHOST", loopback)
    assert not host_allowed("127.0.0.1.evil.example", loopback)
    assert not host_allowed("", loopback)
    assert host_allowed("a.jobs.example.com", ("*.example.com",))
    assert not host_allowed("example.com.evil", ("*.example.com",))
    assert host_allowed("anything", ("*",))


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("q=%C2%B2", 200),
        (f"q={TOO_BIG}", 200),
        ("finished=99999999999999d", 400),
        ("finished=36501d", 400),
        ("finished=%D9%A3h", 400),
    ],
)
def test_a_search_or_time_span_out_of_range_answers_without_an_error(
    manager, scenario, query, status
):
    response = manager.get(f"/jobs?{query}")
    assert response.status_code == status, response.text
    if status == 400:
        assert "time span" in response.text
