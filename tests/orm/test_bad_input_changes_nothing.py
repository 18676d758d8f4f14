"""Bad input raises a clear error and changes nothing (PRODUCT.md 2).

Each case runs inside a transaction that already holds rows of its own; after
the error the row counts are those from before and the transaction goes on.
"""

from __future__ import annotations

import pytest

MODELS = ("res.partner", "crm.lead", "crm.tag")


@pytest.fixture
def existing(env):
    partner = env["res.partner"].create({"name": "Existing", "tag_ids": [(0, 0, {"name": "t"})]})
    env["crm.lead"].create({"name": "Existing lead", "partner_id": partner.id})
    env["res.partner"].create({"name": "Other"})
    return partner


def counts(env, count_rows):
    return {model: count_rows(env, model) for model in MODELS}


BAD_CALLS = [
    pytest.param(
        lambda env, p: env["no.such.model"],
        KeyError,
        "unknown model 'no.such.model'",
        id="unknown model",
    ),
    pytest.param(
        lambda env, p: env["res.partner"].create({"name": "N", "colour": "red"}),
        ValueError,
        "res.partner has no field 'colour'",
        id="unknown field in create",
    ),
    pytest.param(
        lambda env, p: env["res.partner"].create([{"name": "ok"}, {"name": "N", "colour": 1}]),
        ValueError,
        "res.partner has no field 'colour'",
        id="unknown field in the second dict",
    ),
    pytest.param(
        lambda env, p: p.write({"name": "renamed", "colour": "red"}),
        ValueError,
        "res.partner has no field 'colour'",
        id="unknown field in write",
    ),
    pytest.param(
        lambda env, p: p.read(["colour"]),
        ValueError,
        "no field 'colour'",
        id="unknown field in read",
    ),
    pytest.param(
        lambda env, p: p.colour,
        AttributeError,
        "colour",
        id="unknown attribute",
    ),
    pytest.param(
        lambda env, p: env["res.partner"].create([{"name": "ok"}, {"name": 42}]),
        TypeError,
        r"res\.partner\.name.*42",
        id="wrong type in create",
    ),
    pytest.param(
        lambda env, p: p.write({"name": "renamed", "company_id": "Acme"}),
        TypeError,
        r"res\.partner\.company_id.*'Acme'",
        id="wrong type in write",
    ),
    pytest.param(
        lambda env, p: env["crm.lead"].create({"name": "L", "stage": "lost"}),
        ValueError,
        r"crm\.lead\.stage.*'lost'",
        id="value not in the selection",
    ),
    pytest.param(
        lambda env, p: env["res.partner"].create("Acme"),
        TypeError,
        "takes a dict",
        id="create without a dict",
    ),
    pytest.param(
        lambda env, p: env["res.partner"].create([{"name": "ok"}, "Acme"]),
        TypeError,
        "values must be a dict",
        id="create with a non-dict in the list",
    ),
    pytest.param(
        lambda env, p: env["res.partner"].search([("name", "~", "x")]),
        ValueError,
        "bad domain operator '~'",
        id="bad domain operator",
    ),
    pytest.param(
        lambda env, p: env["res.partner"].search([("name", "=", "x"), ("colour", "=", "x")]),
        ValueError,
        "unknown field 'colour'",
        id="unknown field in a domain",
    ),
    pytest.param(
        lambda env, p: env["res.partner"].search([]).ensure_one(),
        ValueError,
        "expected a single record",
        id="ensure_one on several records",
    ),
    pytest.param(
        lambda env, p: p.write({"tag_ids": [(4, p.tag_ids.id), (7, 0, 0)]}),
        ValueError,
        "res.partner.tag_ids",
        id="bad x2many command",
    ),
    pytest.param(
        lambda env, p: env["res.partner"].create({"name": "N", "lead_ids": [(0, 0, {})]}),
        ValueError,
        r"crm\.lead\.name is required",
        id="required field missing in a command",
    ),
    pytest.param(
        lambda env, p: p.write({"name": False}),
        ValueError,
        r"res\.partner\.name is required",
        id="required field emptied",
    ),
    # what the database would refuse, refused before it is sent: on PostgreSQL a
    # refusal by the server would abort the whole transaction
    pytest.param(
        lambda env, p: env["res.partner"].create([{"name": "ok"}, {"name": "a\x00b"}]),
        ValueError,
        r"res\.partner\.name: text with a NUL character at index 1 cannot be stored",
        id="NUL character in a Char",
    ),
    pytest.param(
        lambda env, p: env["crm.lead"].create({"name": "L", "description": "x\ud83d"}),
        ValueError,
        r"crm\.lead\.description: text with a lone surrogate '\\ud83d' at index 1",
        id="lone surrogate in a Text",
    ),
    pytest.param(
        lambda env, p: env["crm.lead"].create({"name": "L", "data": {"note": ["a\x00"]}}),
        ValueError,
        r"crm\.lead\.data: JSON with a NUL character cannot be stored",
        id="NUL character in a Json value",
    ),
    pytest.param(
        lambda env, p: env["crm.lead"].create({"name": "L", "data": {"\udc00": 1}}),
        ValueError,
        r"crm\.lead\.data: JSON with a lone surrogate '\\udc00' cannot be stored",
        id="lone surrogate in a Json key",
    ),
    pytest.param(
        lambda env, p: p.write({"name": "renamed", "reminders_sent": 2**31}),
        ValueError,
        r"res\.partner\.reminders_sent: expected an int from -2147483648 to 2147483647",
        id="int past the INTEGER column",
    ),
    pytest.param(
        lambda env, p: env["crm.lead"].create({"name": "L", "priority": -(2**63) - 1}),
        ValueError,
        r"crm\.lead\.priority: expected an int from",
        id="int past 64 bits",
    ),
    pytest.param(
        lambda env, p: env["crm.lead"].create({"name": "L", "partner_id": 2**40}),
        ValueError,
        r"crm\.lead\.partner_id: expected a res\.partner id from 1 to 2147483647",
        id="record id past the INTEGER column",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS)
def test_bad_input_raises_a_clear_error_and_changes_nothing(
    env, count_rows, existing, call, error, message
):
    before = counts(env, count_rows)
    env.cr.execute("SELECT name FROM res_partner WHERE id = %s", [existing.id])
    name_before = env.cr.fetchone()
    with pytest.raises(error, match=message):
        call(env, existing)
    assert counts(env, count_rows) == before
    env.cr.execute("SELECT name FROM res_partner WHERE id = %s", [existing.id])
    assert env.cr.fetchone() == name_before
    # the transaction is still usable
    assert env["res.partner"].create({"name": "After"}).exists()


def test_json_may_hold_a_backslash_followed_by_u0000(env):
    lead = env["crm.lead"].create({"name": "L", "data": {"path": "C:\\u0000"}})
    assert lead.data == {"path": "C:\\u0000"}


def test_a_huge_int_is_named_without_printing_it(env):
    with pytest.raises(
        ValueError, match=r"reminders_sent: expected an int .*, got <int of \d+ bits>"
    ):
        env["res.partner"].create({"name": "N", "reminders_sent": 10**5000})
