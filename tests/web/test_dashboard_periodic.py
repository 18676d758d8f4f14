"""The dashboard's Periodic page: next occurrences, last job and its state, lag;
managers pause, resume, run now, add and delete, users only look."""

from __future__ import annotations

import re

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
