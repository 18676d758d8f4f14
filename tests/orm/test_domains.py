"""Domains: every operator, the prefix operators, dotted paths and empty values."""

from __future__ import annotations

from datetime import date, datetime

import pytest


@pytest.fixture
def leads(env):
    """Five leads with a few holes (None) in their values."""
    acme = env["res.partner"].create({"name": "Acme", "email": "sales@acme.test"})
    globex = env["res.partner"].create({"name": "Globex"})
    rows = [
        ("Alpha", 1, 10.0, True, date(2024, 1, 1), "new", acme),
        ("beta", 2, 20.5, False, date(2024, 6, 1), "qualified", acme),
        ("Gamma 50%", 3, None, None, None, "won", globex),
        ("delta_x", None, 40.0, True, date(2025, 1, 1), None, None),
        ("Epsilon", 5, 50.0, False, None, "new", None),
    ]
    created = env["crm.lead"].create(
        [
            {
                "name": name,
                "priority": priority,
                "expected_revenue": revenue,
                "won": won,
                "deadline": deadline,
                "stage": stage,
                "partner_id": partner.id if partner else False,
            }
            for name, priority, revenue, won, deadline, stage, partner in rows
        ]
    )
    # Booleans never written are NULL in the database: make one so
    env.cr.execute("UPDATE crm_lead SET won = NULL WHERE id = %s", [created[2].id])
    env.invalidate_all()
    return created


def names(env, leads, domain):
    """The names of the leads matching ``domain``, sorted."""
    found = env["crm.lead"].search([("id", "in", leads.ids), *domain])
    return sorted(found.mapped("name"))


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ([("priority", "=", 2)], ["beta"]),
        ([("priority", "!=", 2)], ["Alpha", "Epsilon", "Gamma 50%", "delta_x"]),
        ([("priority", "<", 3)], ["Alpha", "beta"]),
        ([("priority", ">", 3)], ["Epsilon"]),
        ([("priority", "<=", 3)], ["Alpha", "Gamma 50%", "beta"]),
        ([("priority", ">=", 3)], ["Epsilon", "Gamma 50%"]),
        ([("priority", "in", [1, 5])], ["Alpha", "Epsilon"]),
        ([("priority", "not in", [1, 5])], ["Gamma 50%", "beta", "delta_x"]),
        ([("priority", "in", [])], []),
        ([("priority", "not in", [])], ["Alpha", "Epsilon", "Gamma 50%", "beta", "delta_x"]),
        ([("expected_revenue", ">", 20)], ["Epsilon", "beta", "delta_x"]),
        ([("expected_revenue", "=", 20.5)], ["beta"]),
        ([("name", "=", "Alpha")], ["Alpha"]),
        ([("name", "like", "lph")], ["Alpha"]),
        ([("name", "like", "ALPH")], []),
        ([("name", "ilike", "ALPH")], ["Alpha"]),
        ([("name", "ilike", "e")], ["Epsilon", "beta", "delta_x"]),
        ([("name", "=like", "%a")], ["Alpha", "beta"]),
        ([("name", "=like", "A%")], ["Alpha"]),
        ([("name", "=like", "a%")], []),
        ([("name", "=ilike", "a%")], ["Alpha"]),
        ([("name", "not like", "a")], ["Epsilon"]),
        ([("name", "not like", "l")], ["Gamma 50%", "beta"]),
        ([("name", "not ilike", "a")], ["Epsilon"]),
        ([("name", "like", "50%")], ["Gamma 50%"]),
        ([("stage", "=", "new")], ["Alpha", "Epsilon"]),
        ([("stage", "in", ["won", "qualified"])], ["Gamma 50%", "beta"]),
        ([("stage", "like", "ualif")], ["beta"]),
        ([("deadline", "<", "2024-06-01")], ["Alpha"]),
        ([("deadline", ">=", date(2024, 6, 1))], ["beta", "delta_x"]),
        ([("create_date", "<", datetime(2000, 1, 1))], []),
        (
            [("create_date", ">", "2000-01-01 00:00:00")],
            ["Alpha", "Epsilon", "Gamma 50%", "beta", "delta_x"],
        ),
    ],
)
def test_every_comparison_operator(env, leads, domain, expected):
    assert names(env, leads, domain) == expected


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ([("priority", "=", False)], ["delta_x"]),
        ([("priority", "=", None)], ["delta_x"]),
        ([("priority", "!=", False)], ["Alpha", "Epsilon", "Gamma 50%", "beta"]),
        ([("deadline", "=", False)], ["Epsilon", "Gamma 50%"]),
        ([("stage", "in", ["new", False])], ["Alpha", "Epsilon", "delta_x"]),
        ([("stage", "not in", ["new", False])], ["Gamma 50%", "beta"]),
        ([("stage", "not in", ["new"])], ["Gamma 50%", "beta", "delta_x"]),
        ([("stage", "!=", "new")], ["Gamma 50%", "beta", "delta_x"]),
        ([("partner_id", "=", False)], ["Epsilon", "delta_x"]),
        ([("partner_id", "!=", False)], ["Alpha", "Gamma 50%", "beta"]),
        # a Boolean that is empty (NULL) is False
        ([("won", "=", True)], ["Alpha", "delta_x"]),
        ([("won", "=", False)], ["Epsilon", "Gamma 50%", "beta"]),
        ([("won", "!=", True)], ["Epsilon", "Gamma 50%", "beta"]),
        ([("won", "!=", False)], ["Alpha", "delta_x"]),
        ([("won", "in", [False])], ["Epsilon", "Gamma 50%", "beta"]),
        ([("won", "not in", [False])], ["Alpha", "delta_x"]),
    ],
)
def test_false_and_none_mean_empty(env, leads, domain, expected):
    assert names(env, leads, domain) == expected


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ([("priority", ">", 1), ("priority", "<", 5)], ["Gamma 50%", "beta"]),
        (["&", ("priority", ">", 1), ("priority", "<", 5)], ["Gamma 50%", "beta"]),
        (["|", ("priority", "=", 1), ("priority", "=", 5)], ["Alpha", "Epsilon"]),
        # '!' negates as the opposite operator would: empty values match
        (["!", ("priority", "=", 1)], ["Epsilon", "Gamma 50%", "beta", "delta_x"]),
        (["!", "|", ("priority", "=", 1), ("priority", "=", 5)], ["Gamma 50%", "beta", "delta_x"]),
        (
            ["!", "&", ("priority", ">", 1), ("won", "=", True)],
            ["Alpha", "Epsilon", "Gamma 50%", "beta"],
        ),
        (["!", "!", ("priority", "=", 1)], ["Alpha"]),
        (["!", ("name", "=like", "A%")], ["Epsilon", "Gamma 50%", "beta", "delta_x"]),
        (
            ["|", "&", ("stage", "=", "new"), ("won", "=", True), ("name", "=", "beta")],
            ["Alpha", "beta"],
        ),
        (
            [("stage", "=", "new"), "|", ("won", "=", True), ("priority", "=", 5)],
            ["Alpha", "Epsilon"],
        ),
        (
            ["|", ("name", "=", "Alpha"), "|", ("name", "=", "beta"), ("name", "=", "delta_x")],
            ["Alpha", "beta", "delta_x"],
        ),
        ([("priority", ">", 0), "!", ("name", "=", "Alpha")], ["Epsilon", "Gamma 50%", "beta"]),
        ([], ["Alpha", "Epsilon", "Gamma 50%", "beta", "delta_x"]),
    ],
)
def test_prefix_operators_and_implicit_and(env, leads, domain, expected):
    assert names(env, leads, domain) == expected


def test_dotted_paths_go_through_many2one_fields(env, leads):
    assert names(env, leads, [("partner_id.name", "=", "Acme")]) == ["Alpha", "beta"]
    assert names(env, leads, [("partner_id.name", "ilike", "glob")]) == ["Gamma 50%"]
    assert names(env, leads, [("partner_id.email", "=", False)]) == ["Gamma 50%"]
    company = env["res.company"].create({"name": "Parent Co"})
    env["res.partner"].search([("name", "=", "Globex")]).company_id = company
    assert names(env, leads, [("partner_id.company_id.name", "=", "Parent Co")]) == ["Gamma 50%"]
    assert names(env, leads, [("partner_id.company_id", "=", company.id)]) == ["Gamma 50%"]


def test_a_record_or_recordset_can_be_the_value(env, leads):
    acme = env["res.partner"].search([("name", "=", "Acme")])
    globex = env["res.partner"].search([("name", "=", "Globex")])
    assert names(env, leads, [("partner_id", "=", acme)]) == ["Alpha", "beta"]
    assert names(env, leads, [("partner_id", "in", acme)]) == ["Alpha", "beta"]
    assert names(env, leads, [("partner_id", "in", acme | globex)]) == [
        "Alpha",
        "Gamma 50%",
        "beta",
    ]
    assert names(env, leads, [("partner_id", "=", acme | globex)]) == ["Alpha", "Gamma 50%", "beta"]
    assert names(env, leads, [("partner_id", "=", env["res.partner"])]) == ["Epsilon", "delta_x"]
    assert names(env, leads, [("partner_id", "not in", acme)]) == [
        "Epsilon",
        "Gamma 50%",
        "delta_x",
    ]
    assert names(env, leads, [("id", "=", leads[0])]) == ["Alpha"]
    assert names(env, leads, [("id", "in", leads[:2])]) == ["Alpha", "beta"]
    assert names(env, leads, [("id", "not in", leads[:2].ids)]) == [
        "Epsilon",
        "Gamma 50%",
        "delta_x",
    ]


def test_x2many_fields_match_by_the_ids_they_contain(env, leads):
    acme = env["res.partner"].search([("name", "=", "Acme")])
    globex = env["res.partner"].search([("name", "=", "Globex")])
    vip, cold = env["crm.tag"].create([{"name": "vip"}, {"name": "cold"}])
    acme.tag_ids = vip | cold
    globex.tag_ids = cold
    partners = acme | globex
    search = env["res.partner"].search

    def matching(domain):
        return sorted(search([("id", "in", partners.ids), *domain]).mapped("name"))

    assert matching([("tag_ids", "in", vip.ids)]) == ["Acme"]
    assert matching([("tag_ids", "in", vip)]) == ["Acme"]
    assert matching([("tag_ids", "=", cold.id)]) == ["Acme", "Globex"]
    assert matching([("tag_ids", "not in", vip.ids)]) == ["Globex"]
    assert matching([("tag_ids", "!=", vip.id)]) == ["Globex"]
    assert matching([("tag_ids.name", "=", "vip")]) == ["Acme"]
    assert matching([("lead_ids", "in", leads[2].ids)]) == ["Globex"]
    assert matching([("lead_ids.name", "=", "beta")]) == ["Acme"]
    globex.tag_ids = False
    assert matching([("tag_ids", "=", False)]) == ["Globex"]
    assert matching([("tag_ids", "!=", False)]) == ["Acme"]


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        ([("priority", "~", 1)], "bad domain operator '~'"),
        ([("priority", "between", [1, 2])], "bad domain operator 'between'"),
        ([("priority", "=")], "bad domain term"),
        ([("priority",)], "bad domain term"),
        (["priority = 1"], "bad domain term"),
        (["&", ("priority", "=", 1)], "incomplete domain"),
        (["|"], "incomplete domain"),
        (["!"], "incomplete domain"),
        ([("colour", "=", "red")], "unknown field 'colour' on model 'crm.lead'"),
        ([("partner_id.colour", "=", "red")], "unknown field 'colour' on model 'res.partner'"),
        ([("name.length", "=", 3)], "is not relational"),
        ([(42, "=", 3)], "the field must be a name"),
        ([("priority", "in", 5)], "needs a list of values"),
        ([("priority", "like", "1")], "applies to text fields"),
        ([("name", "like", 5)], "needs a string"),
        ([("priority", "<", False)], "cannot compare"),
        ([("id", "in", ["a"])], "compared with ids"),
        ([("id", "like", "1")], "does not apply to ids"),
        ([("tag_ids", "like", "x")], "not supported on x2many"),
        ("priority = 1", "a domain is a list"),
    ],
)
def test_a_bad_domain_is_refused_with_a_clear_error(env, domain, message):
    model = env["res.partner"] if domain == [("tag_ids", "like", "x")] else env["crm.lead"]
    with pytest.raises(ValueError, match=message):
        model.search(domain)
    with pytest.raises(ValueError, match=message):
        model.search_count(domain)


def test_values_of_the_wrong_type_in_a_domain_are_refused_naming_the_field(env):
    with pytest.raises(TypeError, match=r"crm\.lead\.priority.*'high'"):
        env["crm.lead"].search([("priority", "=", "high")])
    with pytest.raises(ValueError, match="compared with ids"):
        env["crm.lead"].search([("partner_id", "=", "Acme")])


def test_domain_values_are_parameters_not_sql(env, leads):
    hostile = "x' OR '1'='1"
    assert names(env, leads, [("name", "=", hostile)]) == []
    assert env["crm.lead"].search_count([]) >= 5  # the table is still there


@pytest.mark.parametrize(
    ("term", "opposite"),
    [
        (("priority", "=", 1), ("priority", "!=", 1)),
        (("priority", "<", 3), ("priority", ">=", 3)),
        (("stage", "in", ["new"]), ("stage", "not in", ["new"])),
        (("name", "ilike", "a"), ("name", "not ilike", "a")),
        (("won", "=", True), ("won", "!=", True)),
        (("partner_id", "=", False), ("partner_id", "!=", False)),
    ],
)
def test_not_of_a_term_is_the_term_with_the_opposite_operator(env, leads, term, opposite):
    assert names(env, leads, ["!", term]) == names(env, leads, [opposite])
