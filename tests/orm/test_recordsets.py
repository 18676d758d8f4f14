"""Recordset operations: browse, create, write, unlink, search, read and the set algebra."""

from __future__ import annotations

import pytest

from job_worker.exceptions import MissingError


@pytest.fixture
def partners(env):
    return env["res.partner"].create(
        [
            {"name": "Delta", "email": "d@x.org"},
            {"name": "Alpha", "email": "a@x.org"},
            {"name": "Charlie"},
            {"name": "Bravo", "email": "b@x.org"},
        ]
    )


def test_browse_takes_an_id_a_list_of_ids_or_nothing(env, partners):
    one = partners[0]
    assert env["res.partner"].browse(one.id) == one
    assert env["res.partner"].browse(partners.ids).ids == partners.ids
    assert env["res.partner"].browse(()).ids == []
    assert env["res.partner"].browse(False).ids == []
    with pytest.raises(TypeError, match="takes ids"):
        env["res.partner"].browse(["1"])


def test_browse_refuses_booleans_among_ids_and_takes_int_subclasses(env, partners):
    class Id(int):
        pass

    ids = [*partners.ids, Id(partners.ids[0])]
    assert env["res.partner"].browse(ids).ids == ids
    with pytest.raises(TypeError, match="got True"):
        env["res.partner"].browse([*partners.ids, True])


def test_browse_reads_nothing_until_a_field_is_read(env, partners):
    before = env.cr.sql_count
    records = env["res.partner"].browse(partners.ids)
    assert len(records) == 4 and env.cr.sql_count == before


def test_create_with_one_dict_gives_one_record_and_with_a_list_gives_them_in_order(env):
    one = env["res.partner"].create({"name": "One"})
    assert len(one) == 1 and one.name == "One"
    many = env["res.partner"].create([{"name": f"N{i}"} for i in range(1200)])
    assert len(many) == 1200
    assert many.ids == sorted(many.ids)
    env.invalidate_all()
    assert [p.name for p in many] == [f"N{i}" for i in range(1200)]
    assert env["res.partner"].create([]).ids == []


def test_each_created_record_gets_the_id_of_its_own_row(env):
    # SQLite takes the id of a lone row from its rowid, of several from RETURNING:
    # 501 records are one INSERT of 500 rows and one of a single row
    alone = [env["res.partner"].create({"name": f"A{i}"}) for i in range(3)]
    many = env["res.partner"].create([{"name": f"M{i}"} for i in range(501)])
    records = [*alone, *many]
    env.cr.execute(
        "SELECT id, name FROM res_partner WHERE name LIKE 'A%%' OR name LIKE 'M%%' ORDER BY id"
    )
    assert env.cr.fetchall() == [(r.id, r.name) for r in records]


def test_create_does_not_touch_the_list_it_is_given(env):
    vals = [{"name": "A"}]
    env["res.partner"].create(vals)
    assert vals == [{"name": "A"}]


def test_write_sets_the_same_values_on_every_record(env, partners):
    partners.write({"email": "all@x.org"})
    env.cr.execute(
        "SELECT DISTINCT email FROM res_partner WHERE id IN (%s, %s, %s, %s)", partners.ids
    )
    assert env.cr.fetchall() == [("all@x.org",)]


def test_write_on_an_empty_recordset_does_nothing(env):
    assert env["res.partner"].browse(()).write({"name": "x"}) is True


def test_writing_a_deleted_record_raises_missing_error(env, partners):
    gone = partners[0]
    env.cr.execute("DELETE FROM res_partner WHERE id = %s", [gone.id])
    with pytest.raises(MissingError, match=rf"res\.partner\({gone.id},\)"):
        partners.write({"email": "late@x.org"})


def test_reading_a_deleted_record_raises_missing_error(env, partners):
    gone = env["res.partner"].browse(partners[0].id)
    env.cr.execute("DELETE FROM res_partner WHERE id = %s", [gone.id])
    env.invalidate_all()
    with pytest.raises(MissingError, match="does not exist"):
        _ = gone.name


def test_unlink_deletes_the_records(env, partners, count_rows):
    before = count_rows(env, "res.partner")
    partners[:2].unlink()
    assert count_rows(env, "res.partner") == before - 2
    assert partners.exists() == partners[2:]


def test_exists_keeps_the_records_still_in_the_database_in_order(env, partners):
    env.cr.execute("DELETE FROM res_partner WHERE id = %s", [partners[1].id])
    assert partners.exists().ids == [partners[0].id, *partners[2:].ids]
    assert env["res.partner"].browse(()).exists().ids == []


def test_search_uses_the_model_order_by_default(env, partners):
    found = env["res.partner"].search([("id", "in", partners.ids)])
    assert found.mapped("name") == ["Alpha", "Bravo", "Charlie", "Delta"]


def test_search_order_limit_and_offset(env, partners):
    domain = [("id", "in", partners.ids)]
    search = env["res.partner"].search
    assert search(domain, order="name desc").mapped("name") == [
        "Delta",
        "Charlie",
        "Bravo",
        "Alpha",
    ]
    assert search(domain, order="name", limit=2).mapped("name") == ["Alpha", "Bravo"]
    assert search(domain, order="name", offset=1).mapped("name") == ["Bravo", "Charlie", "Delta"]
    assert search(domain, order="name", limit=2, offset=3).mapped("name") == ["Delta"]
    assert search(domain, order="name", limit=0).ids == []
    assert search(domain, order="id desc").ids == sorted(partners.ids, reverse=True)


def test_empty_values_sort_last_ascending_and_first_descending_on_every_database(env, partners):
    domain = [("id", "in", partners.ids)]
    ascending = env["res.partner"].search(domain, order="email, name").mapped("name")
    assert ascending == ["Alpha", "Bravo", "Delta", "Charlie"]
    descending = env["res.partner"].search(domain, order="email desc, name").mapped("name")
    assert descending == ["Charlie", "Delta", "Bravo", "Alpha"]
    first = env["res.partner"].search(domain, order="email asc nulls first, name")
    assert first.mapped("name")[0] == "Charlie"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": "colour"}, "cannot order res.partner by 'colour'"),
        ({"order": "name sideways"}, "bad order modifier"),
        ({"order": "name; DROP TABLE res_partner"}, "cannot order|bad order"),
        ({"order": "tag_ids"}, "not a stored field"),
        ({"limit": -1}, "limit must be"),
        ({"limit": "10"}, "limit must be"),
        ({"offset": -5}, "offset must be"),
    ],
)
def test_search_refuses_bad_order_limit_and_offset(env, kwargs, message):
    with pytest.raises(ValueError, match=message):
        env["res.partner"].search([], **kwargs)


def test_search_count_counts_matching_records(env, partners):
    assert env["res.partner"].search_count([("id", "in", partners.ids)]) == 4
    assert env["res.partner"].search_count([("email", "=", False), ("id", "in", partners.ids)]) == 1


def test_read_gives_dicts_of_the_requested_fields(env, partners):
    rows = partners[:2].read(["name", "email"])
    assert rows == [
        {"id": partners[0].id, "name": "Delta", "email": "d@x.org"},
        {"id": partners[1].id, "name": "Alpha", "email": "a@x.org"},
    ]
    [everything] = partners[2].read()
    assert {"name", "email", "company_id", "tag_ids", "create_date"} <= set(everything)
    with pytest.raises(ValueError, match=r"res\.partner has no field 'colour'"):
        partners.read(["colour"])


def test_ensure_one_passes_a_single_record_and_refuses_others(env, partners):
    assert partners[0].ensure_one() == partners[0]
    with pytest.raises(ValueError, match="expected a single record"):
        partners.ensure_one()
    with pytest.raises(ValueError, match="expected a single record"):
        env["res.partner"].ensure_one()


def test_ids_and_id(env, partners):
    assert partners.ids == [p.id for p in partners]
    assert partners[0].id == partners.ids[0]
    assert env["res.partner"].id is False
    with pytest.raises(ValueError, match="single record"):
        _ = partners.id


def test_reading_a_field_on_several_records_is_refused(env, partners):
    with pytest.raises(ValueError, match="expected a single record to read 'name'"):
        _ = partners.name


def test_iteration_length_truth_and_reversal(env, partners):
    assert [len(p) for p in partners] == [1, 1, 1, 1]
    assert len(partners) == 4
    assert bool(partners) and not env["res.partner"]
    assert [p.id for p in reversed(partners)] == partners.ids[::-1]


def test_indexing_and_slicing(env, partners):
    assert partners[0].ids == partners.ids[:1]
    assert partners[-1].ids == partners.ids[-1:]
    assert partners[1:3].ids == partners.ids[1:3]
    assert partners[::-1].ids == partners.ids[::-1]
    with pytest.raises(IndexError):
        partners[10]
    with pytest.raises(KeyError, match=r"res\.partner has no field 'colour'"):
        partners[0]["colour"]


def test_membership_of_a_record_or_a_field_name(env, partners):
    assert partners[0] in partners
    assert partners[0] not in partners[1:]
    assert "email" in partners and "colour" not in partners
    with pytest.raises(TypeError, match="cannot use 'in'"):
        _ = env["crm.tag"].create({"name": "t"}) in partners


def test_equality_ignores_order_and_needs_the_same_model(env, partners):
    assert partners[:2] == partners[1::-1]
    assert partners[:2] != partners[:3]
    assert env["res.partner"] != env["crm.tag"]
    assert partners[:1] != partners[0].id
    assert len({partners[0], env["res.partner"].browse(partners[0].id)}) == 1


def test_union_intersection_difference_and_concatenation(env, partners):
    a, b, c, _d = partners
    assert (a | b | a).ids == [a.id, b.id]
    assert ((a | b | c) & (c | b)).ids == [b.id, c.id]
    assert ((a | b | c) - b).ids == [a.id, c.id]
    assert (a + b + a).ids == [a.id, b.id, a.id]
    with pytest.raises(TypeError, match="cannot use '\\|'"):
        a | env["crm.tag"]


def test_mapped_follows_field_paths(env, partners):
    company = env["res.company"].create({"name": "Holding"})
    partners[:2].write({"company_id": company.id})
    assert partners.mapped("name") == ["Delta", "Alpha", "Charlie", "Bravo"]
    assert partners.mapped("company_id") == company  # duplicates removed
    assert partners.mapped("company_id.name") == ["Holding"]
    assert partners.mapped("id") == partners.ids
    assert partners.mapped(lambda p: p.name[0]) == ["D", "A", "C", "B"]
    assert partners.mapped(lambda p: p.company_id) == company
    with pytest.raises(ValueError, match="unknown field 'colour'"):
        partners.mapped("colour")


def test_filtered_by_function_or_field_path(env, partners):
    assert partners.filtered(lambda p: p.name < "C").mapped("name") == ["Alpha", "Bravo"]
    assert partners.filtered("email").mapped("name") == ["Delta", "Alpha", "Bravo"]


def test_sorted_by_key_or_by_the_model_order(env, partners):
    assert partners.sorted(key=lambda p: p.email or "").mapped("name")[0] == "Charlie"
    assert partners.sorted().mapped("name") == ["Alpha", "Bravo", "Charlie", "Delta"]
    assert partners.sorted(reverse=True).mapped("name") == ["Delta", "Charlie", "Bravo", "Alpha"]
    assert partners.sorted("email").mapped("name") == ["Alpha", "Bravo", "Delta", "Charlie"]


def test_with_context_with_user_with_company_and_sudo_keep_the_records(env, partners):
    user = env["res.users"].create({"name": "U", "login": "u"})
    company = env["res.company"].create({"name": "C2"})
    ctx = partners.with_context(lang="fr_FR", tz="Europe/Paris")
    assert ctx == partners and ctx.env.lang == "fr_FR" and ctx.env.tz == "Europe/Paris"
    assert partners.with_context({"a": 1}, b=2).env.context == {"a": 1, "b": 2}
    as_user = partners.with_user(user)
    assert as_user.env.uid == user.id and as_user.env.user == user and not as_user.env.su
    assert partners.with_user(user.id).env.uid == user.id
    assert as_user.sudo().env.su and as_user.sudo().env.uid == user.id
    assert not as_user.sudo().sudo(False).env.su
    with_company = partners.with_company(company)
    assert with_company.env.company == company
    assert with_company.env.context["allowed_company_ids"][0] == company.id
    assert with_company.with_company(1).env.context["allowed_company_ids"] == [1, company.id]
    with pytest.raises(TypeError, match="with_company"):
        partners.with_company("C2")


def test_display_name_uses_the_name_field(env, partners):
    assert partners[0].display_name == "Delta"
    lead = env["crm.lead"].create({"name": "Big deal"})
    assert lead.display_name == "Big deal"


def test_an_abstract_model_stores_nothing(env):
    with pytest.raises(TypeError, match="abstract"):
        env["base"].create({})
