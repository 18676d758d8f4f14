"""``job-worker users``: adding, changing passwords, disabling and deleting
dashboard users, on both databases; and the dashboard's host checks."""

from __future__ import annotations

import pytest
from opsapp.scenario import PASSWORD

from job_worker import SUPERUSER_ID, api

pytestmark = pytest.mark.timeout(90)


def _user(registry, login: str):
    with registry.cursor(readonly=True) as cr:
        user = api.Environment(cr, SUPERUSER_ID, {})["res.users"].search([("login", "=", login)])
        return (user.active, user.password) if user else None


def _open_session(registry, login: str) -> None:
    from datetime import timedelta

    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        user = env["res.users"].search([("login", "=", login)])
        env["res.users.session"]._open(user.id, timedelta(hours=1))


def _session_count(registry) -> int:
    with registry.cursor(readonly=True) as cr:
        return api.Environment(cr, SUPERUSER_ID, {})["res.users.session"].search_count([])


def test_users_add_says_the_login_exists_before_asking_for_a_password(cli, scenario):
    result = cli("users", "add", "alice", input="should-not-be-read\n" * 2)
    assert result.exit_code == 1
    assert "exists already" in result.output and "Password" not in result.output


def test_users_add_refuses_an_empty_login_and_a_short_password(cli, scenario, ops_registry):
    empty = cli("users", "add", "", "--password", "long-enough-1")
    assert empty.exit_code == 2 and "the login cannot be empty" in empty.output
    blank = cli("users", "add", "  ", "--password", "long-enough-1")
    assert blank.exit_code == 2 and "the login cannot be empty" in blank.output
    short = cli("users", "add", "dave", "--password", "seven77")
    assert short.exit_code == 2 and "at least 8 characters" in short.output
    prompted = cli("users", "add", "dave", input="short\nshort\n")
    assert prompted.exit_code == 2 and "at least 8 characters" in prompted.output
    assert _user(ops_registry, "dave") is None


def test_users_passwd_changes_the_password_and_ends_the_sessions(cli, scenario, ops_registry):
    _open_session(ops_registry, "bob")
    _open_session(ops_registry, "alice")
    result = cli("users", "passwd", "bob", input="bob-new-passw0rd\nbob-new-passw0rd\n")
    assert result.exit_code == 0, result.output
    with ops_registry.cursor(readonly=True) as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        bob = env["res.users"].browse(scenario.bob)
        assert bob.check_password("bob-new-passw0rd") and not bob.check_password(PASSWORD)
        assert env["res.users.session"].search([]).mapped("user_id.login") == ["alice"]
    assert cli("users", "passwd", "bob", "--password", "short").exit_code == 2
    missing = cli("users", "passwd", "nobody", input="x\n")
    assert missing.exit_code == 1 and "no user with login 'nobody'" in missing.output
    assert "Password" not in missing.output


def test_users_disable_enable_and_delete(cli, scenario, ops_registry):
    _open_session(ops_registry, "bob")
    assert cli("users", "disable", "bob").exit_code == 0
    assert _user(ops_registry, "bob")[0] is False and _session_count(ops_registry) == 0
    assert cli("users", "enable", "bob").exit_code == 0
    assert _user(ops_registry, "bob")[0] is True
    assert cli("users", "delete", "bob", input="n\n").exit_code == 1
    assert _user(ops_registry, "bob") is not None
    deleted = cli("users", "delete", "bob", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert _user(ops_registry, "bob") is None
    with ops_registry.cursor(readonly=True) as cr:
        job = api.Environment(cr, SUPERUSER_ID, {})["queue.job"].browse(scenario.done)
        assert job.exists() and not job.user_id  # the jobs stay, without a user
    for args in (("disable", "nobody"), ("enable", "nobody"), ("delete", "nobody", "--yes")):
        missing = cli("users", *args)
        assert missing.exit_code == 1 and "no user with login 'nobody'" in missing.output


def test_dashboard_on_every_address_needs_its_allowed_hosts(cli, scenario):
    result = cli("dashboard", "--host", "0.0.0.0", "--secret", "s" * 20, "--port", "0")
    assert result.exit_code == 2
    assert "needs --allowed-host" in result.output


def test_dashboard_on_a_schema_without_the_session_table_asks_for_init(cli, scenario, ops_registry):
    with ops_registry.cursor() as cr:
        cr.execute("DROP TABLE res_users_session")
    result = cli("dashboard", "--port", "0")
    assert result.exit_code == 1
    assert "run `job-worker init` to upgrade it" in result.output
    assert cli("init").exit_code == 0
    with ops_registry.cursor(readonly=True) as cr:
        assert "res_users_session" in ops_registry.backend.existing_tables(cr)
