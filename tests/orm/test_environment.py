"""The environment: models by name, the user, the company, the context, one shared cache."""

from __future__ import annotations

import pytest

from job_worker import SUPERUSER_ID, api


def test_env_gives_empty_recordsets_of_models_by_name(env):
    partners = env["res.partner"]
    assert partners._name == "res.partner" and not partners
    assert "res.partner" in env and "no.such.model" not in env
    assert "crm.lead" in list(env)


def test_an_unknown_model_is_a_key_error_naming_it(env):
    with pytest.raises(KeyError, match=r"unknown model 'no\.such\.model'"):
        env["no.such.model"]


def test_env_exposes_its_cursor_uid_and_a_read_only_context(env):
    assert env.cr is not None and env.uid == SUPERUSER_ID and env.su
    other = env(context={"lang": "de_DE"})
    assert other.context == {"lang": "de_DE"}
    with pytest.raises(TypeError):
        other.context["lang"] = "fr_FR"


def test_env_user_is_the_res_users_record_of_uid(env):
    assert env.user._name == "res.users"
    assert env.user.id == SUPERUSER_ID
    assert env.user.login == "__system__"


def test_env_company_is_the_users_company_without_allowed_companies(env):
    assert env.company.id == 1
    other = env["res.company"].create({"name": "Second"})
    user = env["res.users"].create({"name": "U", "login": "u", "company_id": other.id})
    assert env(user=user).company == other


def test_env_company_is_the_first_allowed_company_when_the_context_has_them(env):
    a, b = env["res.company"].create([{"name": "A"}, {"name": "B"}])
    scoped = env(context={"allowed_company_ids": [b.id, a.id]})
    assert scoped.company == b
    assert scoped.companies == b | a


def test_env_lang_and_tz_come_from_the_context(env):
    assert env.lang is None and env.tz is None
    local = env(context={"lang": "fr_FR", "tz": "Europe/Paris"})
    assert (local.lang, local.tz) == ("fr_FR", "Europe/Paris")


def test_calling_env_replaces_the_user_or_the_context(env):
    user = env["res.users"].create({"name": "U", "login": "u"})
    as_user = env(user=user)
    assert as_user.uid == user.id and not as_user.su and as_user.context == env.context
    assert env(user=user.id).uid == user.id
    assert env(user=user, su=True).su
    with_ctx = as_user(context={"k": 1})
    assert with_ctx.uid == user.id and with_ctx.context == {"k": 1}
    assert env(user=SUPERUSER_ID).su


def test_equal_environments_compare_equal(env):
    assert env(context={}) == env
    assert env(context={"a": 1}) != env
    assert hash(env(context={"a": 1})) == hash(env)


def test_a_write_through_one_environment_is_seen_through_another_on_the_same_cursor(env):
    partner = env["res.partner"].create({"name": "Before"})
    other_env = api.Environment(env.cr, SUPERUSER_ID, {"lang": "fr_FR"})
    seen = other_env["res.partner"].browse(partner.id)
    assert seen.name == "Before"
    partner.with_context(tz="UTC").name = "After"
    before = env.cr.sql_count
    assert seen.name == "After"
    assert env.cr.sql_count == before  # from the shared cache, not from the database


def test_the_uid_must_be_an_int(env):
    with pytest.raises(TypeError, match="uid must be"):
        api.Environment(env.cr, "admin", {})
    with pytest.raises(TypeError, match="uid must be"):
        api.Environment(env.cr, True, {})


def test_registry_environment_commits_when_the_block_ends(make_registry):
    registry = make_registry(["crm"])
    with registry.environment() as env:
        env["res.partner"].create({"name": "Committed"})
    with registry.environment(context={"lang": "fr_FR"}) as env:
        assert env.lang == "fr_FR"
        assert env["res.partner"].search_count([("name", "=", "Committed")]) == 1
