"""How many statements the runtime sends: reading a field over a recordset is one query."""

from __future__ import annotations

import pytest


@pytest.fixture
def partner_ids(env):
    company = env["res.company"].create({"name": "Shared Co"})
    partners = env["res.partner"].create(
        [{"name": f"P{i:03}", "company_id": company.id} for i in range(200)]
    )
    env.invalidate_all()
    return partners.ids


def statements(env, func):
    before = env.cr.sql_count
    result = func()
    return env.cr.sql_count - before, result


def test_reading_a_field_over_a_recordset_is_one_query(env, partner_ids):
    records = env["res.partner"].browse(partner_ids)
    count, names = statements(env, lambda: [record.name for record in records])
    assert count == 1
    assert names == [f"P{i:03}" for i in range(200)]


def test_other_fields_of_the_same_records_come_with_the_first_read(env, partner_ids):
    records = env["res.partner"].browse(partner_ids)
    statements(env, lambda: records.mapped("name"))
    count, _ = statements(env, lambda: [(r.email, r.create_date) for r in records])
    assert count == 0


def test_mapped_and_read_over_a_recordset_are_one_query(env, partner_ids):
    records = env["res.partner"].browse(partner_ids)
    assert statements(env, lambda: records.mapped("email"))[0] == 1
    env.invalidate_all()
    count, rows = statements(env, lambda: records.read(["name"]))
    assert count == 1 and len(rows) == 200


def test_reading_a_many2one_and_its_display_name_is_two_queries(env, partner_ids):
    records = env["res.partner"].browse(partner_ids)
    count, rows = statements(env, lambda: records.read(["company_id"]))
    assert count == 2  # the partners, then their companies
    assert {row["company_id"][1] for row in rows} == {"Shared Co"}


def test_records_found_by_search_are_read_together(env, partner_ids):
    count, names = statements(
        env, lambda: [p.name for p in env["res.partner"].search([("id", "in", partner_ids)])]
    )
    assert count == 2  # the search, then one read
    assert sorted(names) == [f"P{i:03}" for i in range(200)]


def test_create_of_many_records_uses_few_statements(env):
    count, records = statements(
        env, lambda: env["res.partner"].create([{"name": f"N{i}"} for i in range(1200)])
    )
    assert len(records) == 1200
    assert count == 3  # 500 rows per INSERT


def test_writing_many_records_is_one_update(env, partner_ids):
    records = env["res.partner"].browse(partner_ids)
    assert statements(env, lambda: records.write({"email": "x@y.z"}))[0] == 1


def test_records_created_in_a_fresh_transaction_are_read_from_the_cache(env):
    # the first records of a model in a transaction make its columns' cached values
    # (from the first row), the next rows add theirs: all read without a query
    env.invalidate_all()
    partners = env["res.partner"].create(
        [{"name": "First", "email": "f@example.com"}, {"name": "Second"}, {"name": "Third"}]
    )
    count, values = statements(env, lambda: [(p.name, p.email, p.id) for p in partners])
    assert count == 0
    assert values == [
        ("First", "f@example.com", partners.ids[0]),
        ("Second", False, partners.ids[1]),
        ("Third", False, partners.ids[2]),
    ]
