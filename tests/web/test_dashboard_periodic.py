"""The dashboard's Periodic page: next occurrences, last job and its state, lag;
managers pause, resume, run now, add, edit and delete, users only look."""

from __future__ import annotations

import re
from datetime import UTC
from zoneinfo import ZoneInfo

import pytest
from opsapp.scenario import csrf_of

from job_worker import SUPERUSER_ID, api

pytestmark = pytest.mark.timeout(60)


def crons(registry):
    with registry.cursor(readonly=True) as cr:
        rows = api.Environment(cr, SUPERUSER_ID, {})["queue.cron"].search([])
        return [(r.name, r.active, r.enqueued_count, r.next_at) for r in rows]


def cron_ids(registry):
    with registry.cursor(readonly=True) as cr:
        return api.Environment(cr, SUPERUSER_ID, {})["queue.cron"].search([]).ids


def add(client, page, **values):
    data = {"name": "export", "model_name": "res.partner", "method_name": "export"}
    return client.post("/periodic", data={**data, **values, "csrf_token": csrf_of(page)})


def test_manager_adds_pauses_resumes_runs_and_deletes_a_periodic_job(manager, ops_registry):
    page = manager.get("/periodic").text
    assert "No periodic job" in page and "Add a periodic job" in page
    add(manager, page, cron="0 3 * * *", tz="Europe/Brussels")
    page = manager.get("/periodic").text
    assert "(export) added" in page
    assert "0 3 * * *" in page and "Europe/Brussels" in page
    cron_id = cron_ids(ops_registry)[0]
    [(name, active, enqueued, next_at)] = crons(ops_registry)
    assert (name, active, enqueued) == ("export", True, 0)
    assert next_at.strftime("%Y-%m-%d %H:%M:%S") in page  # the next occurrence is shown
    action = f"/periodic/{cron_id}/action"
    manager.post(action, data={"action": "run_now", "csrf_token": csrf_of(page)})
    page = manager.get("/periodic").text
    assert "job" in page and "enqueued now" in page and "badge pending" in page
    jobs = manager.get(f"/jobs?cron={cron_id}").text
    assert f"periodic {cron_id}</a> (run now)" in jobs
    job_id = int(re.search(r'href="/jobs/(\d+)"', jobs).group(1))
    assert "run now, outside the schedule" in manager.get(f"/jobs/{job_id}").text
    manager.post(action, data={"action": "pause", "csrf_token": csrf_of(page)})
    assert crons(ops_registry)[0][1] is False
    assert crons(ops_registry)[0][3] == next_at  # run now did not move it
    manager.post(action, data={"action": "resume", "csrf_token": csrf_of(page)})
    assert crons(ops_registry)[0][1] is True
    manager.post(action, data={"action": "delete", "csrf_token": csrf_of(page)})
    assert crons(ops_registry) == []


def test_bad_input_on_the_page_is_refused_with_the_reason(manager, ops_registry):
    page = manager.get("/periodic").text
    add(manager, page, cron="0 3 * *")
    assert "needs 5 fields" in manager.get("/periodic").text
    add(manager, page, interval="60", tz="Nowhere/Town")
    assert "unknown time zone" in manager.get("/periodic").text
    assert crons(ops_registry) == []


def test_user_sees_the_page_but_cannot_change_it(manager, user, ops_registry):
    add(manager, manager.get("/periodic").text, interval="60")
    page = user.get("/periodic").text
    assert "every 60 s" in page and "cron-form" not in page and "Add a periodic job" not in page
    refused = user.post(
        f"/periodic/{cron_ids(ops_registry)[0]}/action",
        data={"action": "pause", "csrf_token": csrf_of(page)},
    )
    assert refused.status_code == 403
    refused = add(user, page, interval="30")
    assert refused.status_code == 403
    assert [c[:2] for c in crons(ops_registry)] == [("export", True)]


def cron_row(registry, name):
    fields = (
        *("name", "cron", "interval", "tz", "catch_up", "max_catch_up", "no_overlap"),
        *("channel", "priority", "max_retries", "timeout", "description", "next_at"),
    )
    with registry.cursor(readonly=True) as cr:
        row = api.Environment(cr, SUPERUSER_ID, {})["queue.cron"].search([("name", "=", name)])
        return {"id": row.id, **{k: row[k] for k in fields}}


def edit(client, page, row, **changes):
    """POST the row's edit form as the page fills it, with ``changes``."""
    keys = ("name", "cron", "interval", "tz", "catch_up", "max_catch_up", "channel", "priority")
    data = {k: "" if row[k] in (False, None) else row[k] for k in keys}
    data |= {"max_retries": row["max_retries"], "timeout": row["timeout"]}
    data |= {"description": row["description"] or "", "csrf_token": csrf_of(page)}
    data["interval"] = row["interval"] or ""
    if row["no_overlap"]:
        data["no_overlap"] = "1"
    return client.post(f"/periodic/{row['id']}/edit", data={**data, **changes})


def test_manager_edits_the_schedule_and_options_of_a_periodic_job(manager, ops_registry):
    add(manager, manager.get("/periodic").text, interval="60")
    page = manager.get("/periodic").text
    assert "Edit schedule and options" in page and 'action="/periodic/' in page
    before = cron_row(ops_registry, "export")
    edit(
        manager,
        page,
        before,
        cron="30 4 * * *",
        interval="",
        tz="Asia/Tokyo",
        priority="-3",
        channel="root.reports",
        no_overlap="1",
        catch_up="all",
        max_catch_up="7",
        timeout="12.5",
    )
    page = manager.get("/periodic").text
    assert f"periodic job {before['id']} (export) changed" in page
    after = cron_row(ops_registry, "export")
    assert {k: after[k] for k in ("cron", "interval", "tz", "priority", "channel")} == {
        "cron": "30 4 * * *",
        "interval": 0,
        "tz": "Asia/Tokyo",
        "priority": -3,
        "channel": "root.reports",
    }
    assert (after["no_overlap"], after["catch_up"], after["max_catch_up"]) == (True, "all", 7)
    assert after["timeout"] == 12.5
    # the next occurrence follows the new schedule, read in its zone
    local = after["next_at"].replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.hour, local.minute) == (4, 30) and after["next_at"] != before["next_at"]
    assert "30 4 * * *" in page and after["next_at"].strftime("%Y-%m-%d %H:%M:%S") in page
    # an option alone changes, the schedule stays
    edit(manager, page, after, description="Nightly export", max_retries="2")
    again = cron_row(ops_registry, "export")
    assert (again["description"], again["max_retries"]) == ("Nightly export", 2)
    assert again["next_at"] == after["next_at"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"cron": "0 3 * *"}, "needs 5 fields"),
        ({"tz": "Nowhere/Town"}, "unknown time zone"),
        ({"interval": "0"}, "interval must be a whole number from 1"),
        ({"interval": "-5"}, "interval must be a whole number from 1"),
        ({"cron": "0 3 * * *", "interval": "30"}, "not both"),
        ({"channel": "bad channel!"}, "channel must be"),
        ({"priority": "high"}, "priority must be a whole number"),
        ({"max_retries": "-1"}, "max_retries must be a whole number"),
        ({"timeout": "soon"}, "timeout must be a number"),
        ({"catch_up": "never"}, "catch_up must be one of"),
        ({"max_catch_up": "0"}, "max_catch_up must be a whole number from 1"),
        ({"name": " "}, "needs a name"),
    ],
)
def test_bad_edit_is_refused_with_the_reason_and_changes_nothing(
    manager, ops_registry, changes, reason
):
    add(manager, manager.get("/periodic").text, interval="60")
    page = manager.get("/periodic").text
    before = cron_row(ops_registry, "export")
    edit(manager, page, before, **{"description": "ok", **changes})  # a good change too
    page = manager.get("/periodic").text
    assert reason in page and "not changed" in page
    assert cron_row(ops_registry, "export") == before


def test_user_sees_no_edit_form_and_cannot_edit(manager, user, ops_registry):
    add(manager, manager.get("/periodic").text, interval="60")
    before = cron_row(ops_registry, "export")
    page = user.get("/periodic").text
    assert "every 60 s" in page and "Edit schedule" not in page and "/edit" not in page
    refused = edit(user, page, before, interval="30")
    assert refused.status_code == 403
    assert cron_row(ops_registry, "export") == before


class TestDeclaredInCode:
    @pytest.fixture
    def ops_registry(self, make_registry):
        return make_registry(["opsapp", "cronapp"])

    def test_code_owned_fields_are_read_only_and_refused(self, manager, ops_registry):
        page = manager.get("/periodic").text
        assert "declared in code: change them in <code>res.partner.nightly_digest" in page
        assert re.search(
            r"<fieldset disabled[^>]*>\s*<label>Name <input name=\"name\" "
            r"value=\"res.partner.nightly_digest\"",
            page,
        )
        before = cron_row(ops_registry, "res.partner.nightly_digest")
        for changes in ({"tz": "Asia/Tokyo"}, {"channel": "root"}, {"catch_up": "skip"}):
            edit(manager, page, before, **changes)
            page = manager.get("/periodic").text
            assert "is declared in code by @api.periodic on res.partner.nightly_digest" in page
            assert cron_row(ops_registry, "res.partner.nightly_digest") == before
        # pausing it is still the operator's
        manager.post(
            f"/periodic/{before['id']}/action",
            data={"action": "pause", "csrf_token": csrf_of(page)},
        )
        assert [c[1] for c in crons(ops_registry) if c[0] == before["name"]] == [False]
