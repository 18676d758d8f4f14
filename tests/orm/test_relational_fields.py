"""Many2one, One2many and Many2many: reading, writing with commands, deleting."""

from __future__ import annotations

import pytest

from job_worker.orm.fields import Command


@pytest.fixture
def acme(env):
    return env["res.partner"].create({"name": "Acme"})


def tags(env, *names):
    return env["crm.tag"].create([{"name": name} for name in names])


def linked_tag_ids(env, partner):
    """The Many2many rows, read with SQL."""
    env.cr.execute(
        "SELECT crm_tag_id FROM crm_tag_res_partner_rel WHERE res_partner_id = %s", [partner.id]
    )
    return sorted(row[0] for row in env.cr.fetchall())


# -- Many2one -------------------------------------------------------------------------


def test_a_many2one_reads_as_a_record_of_its_comodel(env, acme):
    lead = env["crm.lead"].create({"name": "L", "partner_id": acme.id})
    env.invalidate_all()
    assert lead.partner_id == acme
    assert lead.partner_id._name == "res.partner"
    assert lead.partner_id.name == "Acme"


def test_a_many2one_accepts_a_record_an_id_or_false(env, acme):
    lead = env["crm.lead"].create({"name": "L", "partner_id": acme})
    assert lead.partner_id == acme
    lead.partner_id = False
    assert not lead.partner_id
    lead.partner_id = acme.id
    assert lead.partner_id == acme


def test_a_many2one_refuses_several_records_or_another_model(env, acme):
    other = env["res.partner"].create({"name": "Other"})
    with pytest.raises(TypeError, match=r"crm\.lead\.partner_id"):
        env["crm.lead"].create({"name": "L", "partner_id": acme | other})
    with pytest.raises(TypeError, match=r"crm\.lead\.partner_id"):
        env["crm.lead"].create({"name": "L", "partner_id": env["crm.tag"].create({"name": "t"})})


def test_reading_a_many2one_over_a_recordset_fetches_the_targets_together(env):
    partners = env["res.partner"].create([{"name": f"P{i}"} for i in range(30)])
    env["crm.lead"].create([{"name": f"L{i}", "partner_id": p.id} for i, p in enumerate(partners)])
    env.invalidate_all()
    leads = env["crm.lead"].search([("partner_id", "in", partners.ids)])
    before = env.cr.sql_count
    names = [lead.partner_id.name for lead in leads]
    assert sorted(names) == sorted(partners.mapped("name"))
    assert env.cr.sql_count - before == 2  # the leads, then every partner at once


# -- One2many -------------------------------------------------------------------------


def test_a_one2many_lists_the_records_pointing_here_in_the_comodel_order(env, acme):
    low = env["crm.lead"].create({"name": "low", "priority": 1, "partner_id": acme.id})
    high = env["crm.lead"].create({"name": "high", "priority": 9, "partner_id": acme.id})
    env.invalidate_all()
    assert acme.lead_ids.ids == [high.id, low.id]  # crm.lead is ordered by priority desc


def test_a_one2many_follows_creates_and_writes_of_the_many2one(env, acme):
    other = env["res.partner"].create({"name": "Other"})
    assert not acme.lead_ids
    lead = env["crm.lead"].create({"name": "L", "partner_id": acme.id})
    assert acme.lead_ids == lead  # no stale cache after the create
    lead.partner_id = other
    assert not acme.lead_ids
    assert other.lead_ids == lead


def test_one2many_commands_create_update_delete_unlink_link_clear_and_set(env, acme):
    lead_model = env["crm.lead"]
    kept, moved = lead_model.create([{"name": "kept"}, {"name": "moved"}])
    acme.write({"lead_ids": [Command.create({"name": "new"}), (4, kept.id), (4, moved.id)]})
    new = lead_model.search([("name", "=", "new")])
    assert new.partner_id == acme
    assert set(acme.lead_ids.ids) == {new.id, kept.id, moved.id}

    acme.write({"lead_ids": [(1, new.id, {"priority": 5}), (3, moved.id)]})
    assert new.priority == 5
    assert not moved.partner_id and moved.exists()

    acme.write({"lead_ids": [(2, new.id)]})
    assert not new.exists()
    assert acme.lead_ids == kept

    acme.write({"lead_ids": [(6, 0, [moved.id])]})
    assert acme.lead_ids == moved
    assert not kept.partner_id

    acme.write({"lead_ids": [(5,)]})
    assert not acme.lead_ids
    assert moved.exists()


def test_a_one2many_can_be_given_at_create(env):
    partner = env["res.partner"].create(
        {"name": "With leads", "lead_ids": [(0, 0, {"name": "a"}), (0, 0, {"name": "b"})]}
    )
    env.invalidate_all()
    assert sorted(partner.lead_ids.mapped("name")) == ["a", "b"]


# -- Many2many ------------------------------------------------------------------------


def test_a_many2many_is_written_with_a_plain_list_of_ids(env, acme):
    a, b, c = tags(env, "a", "b", "c")
    acme.tag_ids = [a.id, b.id]
    assert linked_tag_ids(env, acme) == sorted([a.id, b.id])
    acme.write({"tag_ids": [c.id]})
    assert linked_tag_ids(env, acme) == [c.id]
    env.invalidate_all()
    assert acme.tag_ids == c


def test_a_many2many_is_written_with_a_recordset(env, acme):
    some = tags(env, "x", "y")
    acme.tag_ids = some
    assert acme.tag_ids == some
    acme.tag_ids = False
    assert not acme.tag_ids and linked_tag_ids(env, acme) == []


def test_many2many_commands_create_update_delete_unlink_link_clear_and_set(env, acme):
    a, b, c = tags(env, "a", "b", "c")
    acme.write({"tag_ids": [(0, 0, {"name": "created"}), (4, a.id), (4, b.id), (4, a.id)]})
    created = env["crm.tag"].search([("name", "=", "created")])
    assert linked_tag_ids(env, acme) == sorted([created.id, a.id, b.id])

    acme.write({"tag_ids": [(1, a.id, {"name": "renamed"}), (3, b.id)]})
    assert a.name == "renamed"
    assert b.exists() and b not in acme.tag_ids

    acme.write({"tag_ids": [(2, created.id)]})
    assert not created.exists()
    assert acme.tag_ids == a

    acme.write({"tag_ids": [Command.set([b.id, c.id])]})
    assert linked_tag_ids(env, acme) == sorted([b.id, c.id])

    acme.write({"tag_ids": [Command.clear()]})
    assert linked_tag_ids(env, acme) == []
    assert (a | b | c).exists() == a | b | c


def test_the_command_helpers_build_odoo_tuples():
    assert Command.create({"a": 1}) == (0, 0, {"a": 1})
    assert Command.update(3, {"a": 1}) == (1, 3, {"a": 1})
    assert Command.delete(3) == (2, 3, 0)
    assert Command.unlink(3) == (3, 3, 0)
    assert Command.link(3) == (4, 3, 0)
    assert Command.clear() == (5, 0, 0)
    assert Command.set([1, 2]) == (6, 0, [1, 2])


@pytest.mark.parametrize(
    "value",
    [
        [(9, 0, 0)],
        [(True, 0, 0)],
        [(0, 0, "not a dict")],
        [(1, "x", {})],
        [(4,)],
        [(6, 0, ["a"])],
        [(4, 1, 0, 0)],
        ["a"],
        "a string",
        42,
    ],
)
def test_a_bad_x2many_command_is_refused_before_anything_is_written(env, count_rows, acme, value):
    tag = tags(env, "t")
    acme.tag_ids = tag
    before = (count_rows(env, "crm.tag"), count_rows(env, "crm.lead"))
    with pytest.raises((TypeError, ValueError), match=r"res\.partner\.tag_ids"):
        acme.write(
            {"tag_ids": [(0, 0, {"name": "first"}), *value]}
            if isinstance(value, list)
            else {"tag_ids": value}
        )
    with pytest.raises((TypeError, ValueError), match=r"res\.partner\.lead_ids"):
        env["res.partner"].create({"name": "N", "lead_ids": value})
    assert (count_rows(env, "crm.tag"), count_rows(env, "crm.lead")) == before
    assert acme.tag_ids == tag


def test_a_failing_command_undoes_the_commands_before_it(env, count_rows, acme):
    before = count_rows(env, "crm.tag"), count_rows(env, "res.partner")
    with pytest.raises(ValueError, match=r"crm\.tag has no field 'colour'"):
        env["res.partner"].create(
            {"name": "N", "tag_ids": [(0, 0, {"name": "ok"}), (0, 0, {"colour": "red"})]}
        )
    assert (count_rows(env, "crm.tag"), count_rows(env, "res.partner")) == before
    assert acme.exists()  # the rest of the transaction is intact


# -- ondelete -------------------------------------------------------------------------


def test_deleting_a_record_deletes_what_points_to_it_with_ondelete_cascade(env, acme):
    lead = env["crm.lead"].create({"name": "L", "partner_id": acme.id})
    assert acme.lead_ids == lead
    acme.unlink()
    assert not lead.exists()


def test_deleting_a_record_empties_many2ones_with_ondelete_set_null(env):
    company = env["res.company"].create({"name": "Gone Co"})
    partner = env["res.partner"].create({"name": "P", "company_id": company.id})
    assert partner.company_id == company
    company.unlink()
    assert partner.exists()
    assert not partner.company_id


def test_deleting_a_record_that_a_restrict_many2one_points_to_is_refused(env, count_rows):
    company = env["res.company"].create({"name": "Used Co"})
    env["res.users"].create({"name": "U", "login": "u", "company_id": company.id})
    before = count_rows(env, "res.company")
    with pytest.raises(ValueError, match=r"res\.users\.company_id points to it"):
        company.unlink()
    assert count_rows(env, "res.company") == before
    assert company.name == "Used Co"


def test_deleting_a_record_removes_its_many2many_links_only(env, acme):
    tag = tags(env, "t")
    acme.tag_ids = tag
    tag.unlink()
    assert linked_tag_ids(env, acme) == []
    assert acme.exists() and not acme.tag_ids


def test_x2many_fields_read_as_id_lists_and_many2one_as_pairs(env, acme):
    tag = tags(env, "t")
    acme.tag_ids = tag
    lead = env["crm.lead"].create({"name": "L", "partner_id": acme.id})
    [values] = lead.read(["partner_id", "name"])
    assert values == {"id": lead.id, "partner_id": (acme.id, "Acme"), "name": "L"}
    [values] = acme.read(["tag_ids", "lead_ids"])
    assert values == {"id": acme.id, "tag_ids": [tag.id], "lead_ids": [lead.id]}
