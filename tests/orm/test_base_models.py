"""The built-in models: a fresh database has company 1 and the superuser."""

from __future__ import annotations

import pytest

from job_worker import SUPERUSER_ID, api
from job_worker.base import models as base_models
from job_worker.base.models import check_password, hash_password


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    """Fewer PBKDF2 rounds: the count is stored with each hash, so checking still works."""
    monkeypatch.setattr(base_models, "_HASH_ITERATIONS", 1000)


def test_a_fresh_database_has_company_1_and_the_superuser(env):
    company = env["res.company"].browse(1)
    superuser = env["res.users"].browse(SUPERUSER_ID)
    assert SUPERUSER_ID == 1
    assert company.exists() and company.name
    assert superuser.exists() and superuser.company_id == company
    assert env["res.users"].search_count([("id", "=", SUPERUSER_ID)]) == 1


def test_base_models_have_their_fields(env):
    assert {"name"} <= set(env["res.company"]._fields)
    assert {"name", "login", "company_id", "lang", "tz", "active", "password", "group_ids"} <= set(
        env["res.users"]._fields
    )
    assert {"name", "email", "company_id"} <= set(env["res.partner"]._fields)
    assert env["res.partner"]._table == "res_partner"


def test_a_users_password_is_stored_hashed_and_checked(env):
    user = env["res.users"].create({"name": "U", "login": "u", "password": "s3cret"})
    env.cr.execute("SELECT password FROM res_users WHERE id = %s", [user.id])
    stored = env.cr.fetchone()[0]
    assert stored.startswith("pbkdf2_sha256$1000$") and "s3cret" not in stored
    assert user.check_password("s3cret")
    assert not user.check_password("S3cret")
    user.write({"password": "changed"})
    assert user.check_password("changed") and not user.check_password("s3cret")
    user.set_password("again-and-again")
    assert user.check_password("again-and-again")
    with pytest.raises(ValueError, match="at least 8 characters"):
        user.set_password("short")
    assert user.check_password("again-and-again")


def test_the_same_password_hashes_differently_each_time():
    first, second = hash_password("pw"), hash_password("pw")
    assert first != second
    assert check_password("pw", first) and check_password("pw", second)


@pytest.mark.parametrize("stored", [None, "", "plain", "md5$1$ab$cd", "pbkdf2_sha256$x$zz$yy"])
def test_a_malformed_stored_password_never_matches(stored):
    assert not check_password("plain", stored)


def test_an_empty_password_is_refused(env):
    with pytest.raises(ValueError, match="non-empty"):
        env["res.users"].create({"name": "U", "login": "u", "password": ""})


def test_logins_are_unique(make_registry):
    registry = make_registry()
    with pytest.raises(Exception, match=r"(?i)unique"), registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["res.users"].create([{"name": "A", "login": "same"}, {"name": "B", "login": "same"}])
    with registry.environment() as env:
        assert env["res.users"].search_count([("login", "=", "same")]) == 0


def test_has_group_checks_the_users_groups_by_key(env):
    manager = env["res.groups"].create({"name": "Manager", "key": "test.manager"})
    user = env["res.users"].create({"name": "U", "login": "u", "group_ids": [manager.id]})
    assert user.has_group("test.manager")
    assert not user.has_group("test.other")
