"""Models composed per registry: _inherit extensions, list mixins, super() in load order."""

from __future__ import annotations

import pytest

from job_worker import Registry, orm


@pytest.fixture
def extra(make_registry):
    """A registry with crm and crm_extra (which depends on crm)."""
    return make_registry(["crm_extra"])


def test_an_extension_adds_fields_to_the_model_it_inherits(extra):
    with extra.environment() as env:
        partner = env["res.partner"].create({"name": "P", "vip": True, "email": "A@B.C"})
        assert partner.vip is True
        assert partner.reminders_sent == 0  # from crm
        assert partner.vip_reminders == 0  # from the second extension in crm_extra


def test_super_chains_through_every_extension_in_load_order(extra):
    with extra.environment() as env:
        vip, plain = env["res.partner"].create(
            [{"name": "V", "vip": True}, {"name": "P", "vip": False}]
        )
        assert (vip | plain).send_reminder() == 102  # crm_extra adds 100 to crm's count
        assert (vip.reminders_sent, plain.reminders_sent) == (1, 1)  # crm's part ran
        assert (vip.vip_reminders, plain.vip_reminders) == (1, 0)  # crm_extra's part ran
        assert vip.describe() == ["crm_extra.Partner", "crm_extra.PartnerAgain"]


def test_an_overridden_create_runs_before_the_base_one(extra):
    with extra.environment() as env:
        assert env["res.partner"].create({"name": "P", "email": "Mixed@Case.Org"}).email == (
            "mixed@case.org"
        )
        assert env["res.partner"].create([{"name": "Q", "email": "UP@X.ORG"}]).email == ("up@x.org")


def test_a_redefined_field_keeps_the_options_it_does_not_repeat(extra):
    stage = extra["crm.lead"]._fields["stage"]
    assert stage.default == "new"  # from crm
    with extra.environment() as env:
        lead = env["crm.lead"].create({"name": "L"})
        assert lead.stage == "new"
        lead.stage = "lost"  # only crm_extra knows this value
        assert lead.stage == "lost"
    email = extra["res.partner"]._fields["email"]
    assert email.index and email.string == "Email"


def test_a_redefined_index_option_creates_the_index(extra):
    with extra.cursor() as cr:
        indexes = extra.backend.describe_table(cr, "res_partner").indexes
    assert "res_partner_email_index" in indexes


def test_list_mixins_give_fields_and_methods_to_a_new_model(extra):
    campaign_cls = extra["crm.campaign"]
    assert {"name", "note", "score", "lead_ids"} <= set(campaign_cls._fields)
    assert not campaign_cls._abstract and campaign_cls._table == "crm_campaign"
    assert extra["crm.scored.mixin"]._abstract
    with extra.environment() as env:
        campaign = env["crm.campaign"].create({"name": "Spring", "note": "n"})
        assert campaign.score == 10
        campaign.bump()
        assert campaign.score == 11
        # mixins listed first come first in the chain, each calling super()
        assert campaign.describe() == ["tracked", "scored", "campaign"]


def test_mixins_have_no_table(extra):
    with extra.cursor() as cr:
        tables = extra.backend.existing_tables(cr)
    assert "crm_campaign" in tables
    assert not {"crm_scored_mixin", "crm_tracked_mixin"} & tables


def test_a_many2many_declared_on_both_sides_shares_one_table(extra):
    with extra.environment() as env:
        lead = env["crm.lead"].create({"name": "L"})
        campaign = env["crm.campaign"].create({"name": "C"})
        assert not lead.campaign_ids
        campaign.lead_ids = lead
        assert lead.campaign_ids == campaign  # seen from the other side at once
        lead.campaign_ids = False
        assert not campaign.lead_ids


def test_two_registries_in_one_process_see_different_models(make_registry, extra):
    plain = make_registry(["crm"])
    assert "vip" in extra["res.partner"]._fields and "vip" not in plain["res.partner"]._fields
    assert "crm.campaign" in extra and "crm.campaign" not in plain
    assert hasattr(extra["res.partner"], "describe")
    assert not hasattr(plain["res.partner"], "describe")
    assert extra["res.partner"] is not plain["res.partner"]
    assert extra["res.partner"]._fields["name"] is not plain["res.partner"]._fields["name"]
    with plain.environment() as env:
        partner = env["res.partner"].create({"name": "P"})
        assert partner.send_reminder() == 1  # crm's method only
        with pytest.raises(ValueError, match="'lost' is not one of"):
            env["crm.lead"].create({"name": "L", "stage": "lost"})


def test_a_registry_without_an_application_does_not_see_its_models(make_registry):
    bare = make_registry()
    assert "res.partner" in bare and "crm.lead" not in bare
    assert "tag_ids" not in bare["res.partner"]._fields


def test_the_record_runtime_alone_loads_no_queue_and_job_worker_s_registry_adds_it(db_url):
    bare = orm.Registry(db_url, ["crm"])
    try:
        assert [m.__name__ for m in bare.modules] == ["job_worker.base", "crm"]
        assert "crm.lead" in bare and "queue.job" not in bare
        with bare.cursor(readonly=True) as cr:
            assert "queue_job" not in bare.backend.existing_tables(cr)
    finally:
        bare.close()
    product = Registry(db_url, ["crm"])  # the same database, upgraded
    try:
        assert [m.__name__ for m in product.modules] == [
            "job_worker.base",
            "job_worker.queue",
            "job_worker.monitoring",
            "crm",
        ]
        assert isinstance(product, orm.Registry) and "queue.job" in product
    finally:
        product.close()


def test_loading_an_unknown_module_is_refused(db_url):
    with pytest.raises(ValueError, match="cannot load module 'no_such_app'"):
        Registry(db_url, ["no_such_app"])
    with pytest.raises(TypeError, match="list of module names"):
        Registry(db_url, "crm")


def test_a_model_reaches_its_registry_and_its_methods_see_the_environment(extra):
    with extra.environment(context={"lang": "fr_FR"}) as env:
        partner = env["res.partner"].create({"name": "P"})
        assert partner.pool is extra
        assert partner.env.lang == "fr_FR"
