"""``@api.periodic``: periodic jobs declared in code become queue.cron rows when the
registry is built for init and worker; code owns the schedule, operators own pause."""

import pytest
from cronapp.models import Partner

from job_worker import SUPERUSER_ID, api
from job_worker.orm.api import periodic


def crons(registry):
    with registry.cursor(readonly=True) as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        rows = env["queue.cron"].search([])
        return {
            row.code_key: {
                k: row[k]
                for k in ("name", "cron", "interval", "tz", "channel", "active", "no_overlap")
            }
            for row in rows
        }


def edit(registry, key, vals):
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["queue.cron"].search([("code_key", "=", key)]).write(vals)


def test_declared_periodic_jobs_become_cron_rows(make_registry):
    registry = make_registry(["cronapp"])
    rows = crons(registry)
    assert rows["res.partner.nightly_digest"] == {
        "name": "res.partner.nightly_digest",
        "cron": "0 3 * * *",
        "interval": 0,
        "tz": "Europe/Brussels",
        "channel": "reports",
        "active": True,
        "no_overlap": False,
    }
    assert rows["res.partner.refresh_rates"]["interval"] == 300
    assert rows["res.partner.refresh_rates"]["name"] == "Refresh rates"
    assert rows["res.partner.refresh_rates"]["no_overlap"] is True


def test_a_redeploy_applies_the_code_schedule_but_keeps_a_cron_paused_by_hand(
    make_registry, monkeypatch
):
    registry = make_registry(["cronapp"])
    edit(registry, "res.partner.nightly_digest", {"active": False, "channel": "manual"})
    # the next deploy changes the schedule in code
    monkeypatch.setitem(Partner.nightly_digest._periodic, "cron", "0 4 * * *")
    again = make_registry(["cronapp"])
    row = crons(again)["res.partner.nightly_digest"]
    assert row["cron"] == "0 4 * * *"
    assert row["channel"] == "reports"  # code owns the options of what it declares
    assert row["active"] is False  # still paused: only an operator resumes it


def test_a_declaration_removed_from_code_removes_its_row(make_registry, monkeypatch):
    registry = make_registry(["cronapp"])
    monkeypatch.delattr(Partner.refresh_rates, "_periodic")
    again = make_registry(["cronapp"])
    assert "res.partner.refresh_rates" not in crons(again)
    assert "res.partner.nightly_digest" in crons(again)
    assert registry  # the first build made it


def test_a_bad_declaration_stops_the_build_naming_the_method(make_registry, monkeypatch):
    make_registry(["cronapp"])
    monkeypatch.setitem(Partner.nightly_digest._periodic, "tz", "Europe/Atlantis")
    with pytest.raises(
        ValueError, match=r"@api.periodic on res.partner.nightly_digest: unknown time zone"
    ):
        make_registry(["cronapp"])


def test_unknown_periodic_options_are_refused_at_once():
    with pytest.raises(TypeError, match="unknown @periodic option"):
        periodic("0 3 * * *", chanel="reports")


def test_an_operator_can_pause_but_not_reschedule_a_cron_declared_in_code(make_registry):
    registry = make_registry(["cronapp"])
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        row = env["queue.cron"].search([("code_key", "=", "res.partner.nightly_digest")])
        with pytest.raises(ValueError, match=r"declared in code by @api\.periodic on res\.partner"):
            row.edit({"cron": "0 5 * * *"})
        row.edit({"active": False})
        assert row.active is False and row.cron == "0 3 * * *"
