"""Schema sync: tables, columns, indexes and foreign keys follow the models, never dropped.

Applications here are made on the fly: a Python module per test (unique name,
registered in ``sys.modules``) holding model classes, so that one test can load
an application at two releases on one database.
"""

from __future__ import annotations

import sys
import types
import uuid

import pytest

from job_worker import fields, models


@pytest.fixture
def new_app(monkeypatch):
    """Make an importable, empty application module; classes declare ``__module__`` = its name."""

    def make(depends=()):
        name = f"app_{uuid.uuid4().hex[:10]}"
        module = types.ModuleType(name)
        module.DEPENDS = list(depends)
        monkeypatch.setitem(sys.modules, name, module)
        return name

    return make


def describe(registry, table):
    with registry.cursor() as cr:
        return registry.backend.describe_table(cr, table)


def test_a_fresh_database_gets_tables_columns_indexes_and_foreign_keys(make_registry):
    registry = make_registry(["crm"])
    partner = describe(registry, "res_partner")
    assert partner.columns["name"][1] is True  # required: NOT NULL
    assert partner.columns["email"][1] is False
    assert "res_partner_name_index" in partner.indexes  # index=True
    assert ("company_id", "res_company", "set null") in partner.foreign_keys
    lead = describe(registry, "crm_lead")
    assert ("partner_id", "res_partner", "cascade") in lead.foreign_keys
    assert "crm_lead_priority_index" in lead.indexes
    users = describe(registry, "res_users")
    assert ("company_id", "res_company", "restrict") in users.foreign_keys
    assert users.indexes["res_users_login_unique"].startswith("unique")
    relation = describe(registry, "crm_tag_res_partner_rel")
    assert set(relation.columns) == {"res_partner_id", "crm_tag_id"}
    assert relation.foreign_keys == {
        ("res_partner_id", "res_partner", "cascade"),
        ("crm_tag_id", "crm_tag", "cascade"),
    }
    assert relation.indexes["crm_tag_res_partner_rel_pair"].startswith("unique")


def test_table_names_come_from_the_model_name_or_table(make_registry, new_app):
    app = new_app()

    class Thing(models.Model):
        __module__ = app
        _name = "sync.some.thing"

    class Other(models.Model):
        __module__ = app
        _name = "sync.other"
        _table = "sync_custom_table"

    registry = make_registry([app])
    with registry.cursor() as cr:
        tables = registry.backend.existing_tables(cr)
    assert {"sync_some_thing", "sync_custom_table"} <= tables


def test_a_field_added_later_gets_a_column_filled_with_its_constant_default(make_registry, new_app):
    app = new_app()

    class Gadget(models.Model):
        __module__ = app
        _name = "sync.gadget"
        name = fields.Char()

    first = make_registry([app])
    with first.environment() as env:
        env["sync.gadget"].create([{"name": "a"}, {"name": "b"}])

    later = new_app(depends=[app])

    class GadgetLater(models.Model):
        __module__ = later
        _inherit = "sync.gadget"
        size = fields.Integer(default=5)
        colour = fields.Char(default=lambda self: "computed per record")
        flag = fields.Boolean(default=True)
        released = fields.Date(default="2024-01-31")
        kind = fields.Selection([("x", "X"), ("y", "Y")], default="y", index=True)

    registry = make_registry([later])
    with registry.environment() as env:
        env.cr.execute("SELECT size, colour, flag, released, kind FROM sync_gadget ORDER BY name")
        rows = env.cr.fetchall()
        assert [(size, colour, bool(flag)) for size, colour, flag, _r, _k in rows] == [
            (5, None, True),
            (5, None, True),
        ]
        gadgets = env["sync.gadget"].search([], order="name")
        assert [str(d) for d in gadgets.mapped("released")] == ["2024-01-31"] * 2
        assert gadgets.mapped("kind") == ["y", "y"]
        assert env["sync.gadget"].create({"name": "c"}).colour == "computed per record"
    assert "sync_gadget_kind_index" in describe(registry, "sync_gadget").indexes


def test_a_required_field_added_later_with_a_constant_default_is_not_null(make_registry, new_app):
    app = new_app()

    class Box(models.Model):
        __module__ = app
        _name = "sync.box"
        name = fields.Char()

    with make_registry([app]).environment() as env:
        env["sync.box"].create({"name": "old"})
    later = new_app(depends=[app])

    class BoxLater(models.Model):
        __module__ = later
        _inherit = "sync.box"
        size = fields.Integer(required=True, default=3)

    registry = make_registry([later])
    assert describe(registry, "sync_box").columns["size"][1] is True
    with registry.environment() as env:
        assert env["sync.box"].search([]).size == 3


def test_a_required_field_added_later_without_a_constant_default_stays_nullable_with_rows(
    make_registry, new_app
):
    app = new_app()

    class Crate(models.Model):
        __module__ = app
        _name = "sync.crate"
        name = fields.Char()

    with make_registry([app]).environment() as env:
        env["sync.crate"].create({"name": "old"})
    later = new_app(depends=[app])

    class CrateLater(models.Model):
        __module__ = later
        _inherit = "sync.crate"
        code = fields.Char(required=True, default=lambda self: "generated")

    registry = make_registry([later])
    # existing rows have no value to give: the column stays nullable on every database
    assert describe(registry, "sync_crate").columns["code"][1] is False
    with registry.environment() as env:
        old = env["sync.crate"].search([])
        assert old.code is False
        assert env["sync.crate"].create({"name": "new"}).code == "generated"
        with pytest.raises(ValueError, match=r"sync\.crate\.code is required"):
            old.code = False


def test_a_required_column_added_to_an_empty_table_is_not_null_except_on_sqlite(
    make_registry, new_app, db_url
):
    app = new_app()

    class Bag(models.Model):
        __module__ = app
        _name = "sync.bag"
        name = fields.Char()

    make_registry([app])
    later = new_app(depends=[app])

    class BagLater(models.Model):
        __module__ = later
        _inherit = "sync.bag"
        code = fields.Char(required=True)

    registry = make_registry([later])
    # SQLite cannot add a NOT NULL column without a constant default, nor add the
    # constraint later without rebuilding the table: the ORM enforces `required` there.
    expected = not db_url.startswith("sqlite:")
    assert describe(registry, "sync_bag").columns["code"][1] is expected


def test_a_many2one_and_a_many2many_added_later_get_their_foreign_keys(make_registry, new_app):
    app = new_app()

    class Shelf(models.Model):
        __module__ = app
        _name = "sync.shelf"
        name = fields.Char()

    with make_registry([app]).environment() as env:
        env["sync.shelf"].create({"name": "old"})
    later = new_app(depends=[app])

    class ShelfLater(models.Model):
        __module__ = later
        _inherit = "sync.shelf"
        partner_id = fields.Many2one("res.partner", ondelete="cascade", index=True)
        partner_ids = fields.Many2many("res.partner", string="Partners")

    registry = make_registry([later])
    shelf = describe(registry, "sync_shelf")
    assert ("partner_id", "res_partner", "cascade") in shelf.foreign_keys
    assert "sync_shelf_partner_id_index" in shelf.indexes
    relation = describe(registry, "res_partner_sync_shelf_rel")
    assert ("sync_shelf_id", "sync_shelf", "cascade") in relation.foreign_keys
    with registry.environment() as env:
        partner = env["res.partner"].create({"name": "P"})
        shelf_record = env["sync.shelf"].search([])
        shelf_record.write({"partner_id": partner.id, "partner_ids": [partner.id]})
        partner.unlink()
        assert not shelf_record.exists()


def test_a_foreign_key_to_a_model_defined_later_in_the_load_order_works(make_registry, new_app):
    app = new_app()

    class Early(models.Model):
        __module__ = app
        _name = "sync.early"
        late_id = fields.Many2one("sync.late", index=True, ondelete="cascade")

    class Late(models.Model):
        __module__ = app
        _name = "sync.late"
        name = fields.Char()

    registry = make_registry([app])
    early = describe(registry, "sync_early")
    assert ("late_id", "sync_late", "cascade") in early.foreign_keys
    assert "sync_early_late_id_index" in early.indexes


def test_a_field_removed_from_the_models_keeps_its_column(make_registry, new_app):
    app = new_app()

    class Tool(models.Model):
        __module__ = app
        _name = "sync.tool"
        name = fields.Char()
        legacy = fields.Char()

    with make_registry([app]).environment() as env:
        env["sync.tool"].create({"name": "t", "legacy": "kept"})
    other = new_app()

    class ToolWithout(models.Model):
        __module__ = other
        _name = "sync.tool"
        name = fields.Char()

    registry = make_registry([other])
    assert "legacy" in describe(registry, "sync_tool").columns
    with registry.environment() as env:
        assert env["sync.tool"].search([]).name == "t"
        env.cr.execute("SELECT legacy FROM sync_tool")
        assert env.cr.fetchone() == ("kept",)


def test_extra_indexes_of_every_extension_are_created(make_registry, new_app):
    app = new_app()

    class Pen(models.Model):
        __module__ = app
        _name = "sync.pen"
        _indexes = [models.Index("sync_pen_name_unique", ("name",), unique=True)]
        name = fields.Char()
        colour = fields.Char()

    extension = new_app(depends=[app])

    class PenMore(models.Model):
        __module__ = extension
        _inherit = "sync.pen"
        _indexes = [
            models.Index("sync_pen_colour_partial", ("colour",), where="colour IS NOT NULL")
        ]

    registry = make_registry([extension])
    indexes = describe(registry, "sync_pen").indexes
    assert indexes["sync_pen_name_unique"].startswith("unique")
    assert "where" in indexes["sync_pen_colour_partial"]


def test_an_extension_of_an_unknown_model_is_refused(make_registry, new_app):
    app = new_app()

    class Orphan(models.Model):
        __module__ = app
        _inherit = "sync.nowhere"

    with pytest.raises(TypeError, match=r"extends unknown model 'sync\.nowhere'"):
        make_registry([app])


def test_a_relational_field_to_an_unknown_model_is_refused(make_registry, new_app):
    app = new_app()

    class Dangling(models.Model):
        __module__ = app
        _name = "sync.dangling"
        other_id = fields.Many2one("sync.missing")

    with pytest.raises(KeyError, match=r"unknown comodel 'sync\.missing'"):
        make_registry([app])


def test_a_required_many2one_added_later_with_a_constant_default_points_rows_to_it(
    make_registry, new_app
):
    app = new_app()

    class Desk(models.Model):
        __module__ = app
        _name = "sync.desk"
        name = fields.Char()

    with make_registry([app]).environment() as env:
        env["sync.desk"].create({"name": "old"})
    later = new_app(depends=[app])

    class DeskLater(models.Model):
        __module__ = later
        _inherit = "sync.desk"
        company_id = fields.Many2one("res.company", required=True, default=1, ondelete="cascade")

    registry = make_registry([later])
    desk = describe(registry, "sync_desk")
    assert ("company_id", "res_company", "cascade") in desk.foreign_keys
    with registry.environment() as env:
        assert env["sync.desk"].search([]).company_id.id == 1


def test_an_index_declared_for_some_databases_is_made_on_those_only(registry):
    """queue.job's indexes for 10^7 rows are PostgreSQL's; SQLite keeps (channel), which
    a job's change of state never rewrites."""
    indexes = describe(registry, "queue_job").indexes
    postgres_only = {
        "queue_job_user_state",
        "queue_job_user_state_date",
        "queue_job_channel_state",
    }
    if registry.backend.dialect == "postgresql":
        assert postgres_only <= set(indexes) and "queue_job_channel_index" not in indexes
    else:
        assert not postgres_only & set(indexes) and "queue_job_channel_index" in indexes
    assert {"queue_job_state_id", "queue_job_user_id", "queue_job_exhausted"} <= set(indexes)
    assert "queue_job_state_index" not in indexes and "queue_job_cron_id_index" not in indexes


def test_the_index_names_of_a_table_are_unique(registry):
    """An extension that declares an index under a name another module uses replaces
    that index silently (a claim's INDEXED BY then finds none): names stay unique."""
    for model in registry.models.values():
        names = [
            index.name for klass in model.__mro__[1:] for index in vars(klass).get("_indexes", ())
        ]
        assert len(names) == len(set(names)), (model._name, sorted(names))
