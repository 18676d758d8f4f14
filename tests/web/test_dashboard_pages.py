"""Dashboard pages on both databases: log-in, roles, filters, detail, actions, CSRF."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from opsapp.scenario import csrf_of

from job_worker import SUPERUSER_ID, api
from job_worker.exceptions import TimeoutJobError
from job_worker.orm.fields import Datetime
from job_worker.queue import states

pytestmark = pytest.mark.timeout(90)


def test_pages_need_a_login(client_for, scenario):
    anonymous = client_for(None)
    response = anonymous.get("/jobs?state=failed")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/jobs%3Fstate%3Dfailed"
    assert anonymous.get("/api/overview").status_code == 401


def test_wrong_password_unknown_login_and_user_without_role_get_one_message(
    client_for, scenario, ops_registry
):
    client = client_for(None)
    token = csrf_of(client.get("/login").text)
    wrong = client.post("/login", data={"login": "alice", "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401 and "wrong login or password" in wrong.text
    with ops_registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["res.users"].create(
            {"name": "Eve", "login": "eve", "password": "pw-of-eve"}
        )
    refused = client.post(
        "/login", data={"login": "eve", "password": "pw-of-eve", "csrf_token": token}
    )
    assert refused.status_code == 401 and "wrong login or password" in refused.text
    assert "no dashboard role" not in refused.text
    unknown = client.post(
        "/login", data={"login": "nobody", "password": "pw-of-eve", "csrf_token": token}
    )
    assert unknown.status_code == 401 and "wrong login or password" in unknown.text


def test_login_redirects_only_inside_the_dashboard(client_for, scenario):
    client = client_for(None)
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login",
        data={
            "login": "alice",
            "password": "s3cret-passw0rd",
            "csrf_token": token,
            "next": "//evil.example/",
        },
    )
    assert response.headers["location"] == "/"


def test_overview_shows_every_kpi_with_a_link(manager, scenario):
    page = manager.get("/")
    assert page.status_code == 200
    for label in (
        "Queue depth",
        "Active workers",
        "Failed jobs",
        "Failure rate 1 h",
        "Throughput 1 h",
        "p95 duration 1 h",
        "Stuck jobs",
        "Aged pending",
        "Retry exhausted",
        "Top failure type",
    ):
        assert label in page.text
    cards = {card["key"]: card for card in manager.get("/api/overview").json()["cards"]}
    assert cards["failed_jobs"]["display"] == "1" and cards["failed_jobs"]["level"] == "warn"
    assert cards["failed_jobs"]["href"] == "/jobs?state=failed"
    assert cards["active_workers"]["level"] == "crit"
    assert cards["top_failure"]["href"] == "/jobs?state=failed&exc_name=ValueError&finished=24h"


def test_sub_millisecond_durations_read_as_less_than_one_ms(manager, scenario, ops_registry):
    with ops_registry.cursor() as cr:
        cr.execute("UPDATE queue_job SET duration = 0.0004 WHERE state = 'done'")
    cards = {card["key"]: card for card in manager.get("/api/overview").json()["cards"]}
    assert cards["p95_duration_1h"]["display"] == "< 1 ms"
    assert "<td>&lt; 1 ms</td>" in manager.get("/jobs?state=done").text


def test_job_list_filters_and_pages(manager, scenario):
    failed = manager.get("/jobs?state=failed")
    assert f'href="/jobs/{scenario.failed}"' in failed.text
    assert f'href="/jobs/{scenario.done}"' not in failed.text
    first = manager.get("/jobs?limit=3")
    assert 'rel="next"' in first.text and 'rel="prev"' not in first.text
    search = manager.get("/jobs?q=Nightly")
    assert f'href="/jobs/{scenario.pending}"' in search.text and "Push to ERP" not in search.text
    assert manager.get("/jobs?state=sleeping").status_code == 400
    assert manager.get("/jobs?before=abc").status_code == 400


def test_job_detail_shows_call_traceback_timeline_and_explanation(manager, scenario):
    page = manager.get(f"/jobs/{scenario.failed}")
    assert page.status_code == 200
    assert "env[&#39;res.partner&#39;].browse([1]).explode()" in page.text
    done = manager.get(f"/jobs/{scenario.done}")
    assert ").export(&#39;xlsx&#39;)</pre>" in done.text and "**{" not in done.text
    assert "started in the calling process (run_now)" in done.text
    assert "ValueError: export target refused the file" in page.text
    assert "attempt 1 failed" in page.text and "attempt 2 failed" in page.text
    assert "2 failed of 2 runs allowed" in page.text
    assert "will not run again unless requeued" in page.text
    waiting = manager.get(f"/jobs/{scenario.chain_second}")
    assert "waiting_parents" in waiting.text and "data-graph" in waiting.text
    graph = manager.get(f"/api/jobs/{scenario.chain_second}/graph").json()
    assert {n["id"] for n in graph["nodes"]} == {scenario.chain_first, scenario.chain_second}
    assert graph["edges"] == [
        {"from": scenario.chain_first, "to": scenario.chain_second, "kind": "done"}
    ]


def test_job_timeline_shows_where_each_attempt_ran_and_for_how_long(manager, ops_registry):
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        job = env["res.partner"].create({"name": "Slow"}).with_delay(timeout=3).export()
        states.mark_started(env.cr, job.id, "host:7:abc")
        cr.execute(  # the attempt began 3 s ago, then the worker killed it
            "UPDATE queue_job SET started_at = %s WHERE id = %s",
            [Datetime.now() - timedelta(seconds=3), job.id],
        )
        states.record_failure(
            env.cr, job.id, TimeoutJobError("ran past 3 s"), worker_id="host:7:abc"
        )
    page = html.unescape(manager.get(f"/jobs/{job.id}").text)
    assert "attempt 1 started on worker host:7:abc" in page
    assert re.search(r"attempt 1 failed after 3\.0\d s: TimeoutJobError", page)
    assert "caller" not in page and "ran 0 ms" not in page
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        cr.execute("UPDATE queue_job SET scheduled_at = %s WHERE id = %s", [Datetime.now(), job.id])
        states.mark_started(env.cr, job.id, "host:8:def")
        states.mark_done(env.cr, job.id, None, duration=0.25, worker_id="host:8:def")
    page = html.unescape(manager.get(f"/jobs/{job.id}").text)
    assert "attempt 1 started on worker host:7:abc" in page
    assert "started on worker host:8:def" in page and "done after 250 ms" in page


def test_manager_requeues_a_failed_job(manager, scenario):
    page = manager.get(f"/jobs/{scenario.failed}")
    response = manager.post(
        f"/jobs/{scenario.failed}/action",
        data={"action": "requeue", "csrf_token": csrf_of(page.text)},
    )
    assert response.status_code == 303
    assert manager.get(f"/api/jobs/{scenario.failed}").json()["state"] == "pending"
    assert "Requeue: 1 job(s)" in manager.get(f"/jobs/{scenario.failed}").text


def test_refused_action_is_reported_not_applied(manager, scenario):
    token = csrf_of(manager.get("/jobs").text)
    manager.post(f"/jobs/{scenario.done}/action", data={"action": "cancel", "csrf_token": token})
    page = manager.get(f"/jobs/{scenario.done}")
    assert "cannot cancel queue.job" in page.text
    assert manager.get(f"/api/jobs/{scenario.done}").json()["state"] == "done"


def test_bulk_action_on_selected_jobs(manager, scenario):
    token = csrf_of(manager.get("/jobs").text)
    response = manager.post(
        "/jobs/bulk",
        data={
            "action": "cancel",
            "csrf_token": token,
            "next": "/jobs?state=pending",
            "ids": [str(scenario.pending), str(scenario.carol_pending)],
        },
    )
    assert response.headers["location"] == "/jobs?state=pending"
    for job_id in (scenario.pending, scenario.carol_pending):
        assert manager.get(f"/api/jobs/{job_id}").json()["state"] == "cancelled"


def test_actions_without_csrf_token_are_refused(manager, scenario):
    response = manager.post(f"/jobs/{scenario.failed}/action", data={"action": "requeue"})
    assert response.status_code == 403 and "CSRF" in response.text
    forged = manager.post("/channels", data={"name": "root", "limit": "5", "csrf_token": "forged"})
    assert forged.status_code == 403
    assert manager.get(f"/api/jobs/{scenario.failed}").json()["state"] == "failed"


def test_user_sees_only_their_own_jobs_and_cannot_act(user, scenario):
    mine = user.get("/jobs")
    assert f'href="/jobs/{scenario.failed}"' in mine.text
    assert f'href="/jobs/{scenario.carol_pending}"' not in mine.text
    assert user.get(f"/jobs/{scenario.carol_pending}").status_code == 404
    assert user.get(f"/api/jobs/{scenario.carol_pending}").status_code == 404
    assert user.get(f"/jobs?user_id={scenario.carol}").text.count("Carol's export") == 0
    token = csrf_of(mine.text)
    refused = user.post(
        f"/jobs/{scenario.failed}/action", data={"action": "requeue", "csrf_token": token}
    )
    assert refused.status_code == 403
    assert 'name="ids"' not in mine.text  # no bulk selection for a user


def test_manager_edits_channel_limits_and_user_cannot(manager, user, scenario, ops_registry):
    page = manager.get("/channels")
    assert "exports" in page.text and "limit-form" in page.text
    manager.post(
        "/channels",
        data={"name": "exports", "limit": "4", "rate_limit": "2", "csrf_token": csrf_of(page.text)},
    )
    user_page = user.get("/channels")
    assert "limit-form" not in user_page.text
    refused = user.post(
        "/channels", data={"name": "exports", "limit": "0", "csrf_token": csrf_of(user_page.text)}
    )
    assert refused.status_code == 403
    bad = manager.post(
        "/channels", data={"name": "exports", "limit": "-2", "csrf_token": csrf_of(page.text)}
    )
    assert (
        bad.status_code == 303 and "limit must be a whole number" in manager.get("/channels").text
    )
    with ops_registry.cursor() as cr:
        limit = api.Environment(cr, SUPERUSER_ID, {})["queue.limit"].search(
            [("name", "=", "exports")]
        )
        assert (limit.limit, limit.rate_limit) == (4, 2.0)


def test_workers_charts_and_alerts_pages_render(manager, user, scenario):
    assert "No worker has run" in manager.get("/workers").text
    assert manager.get("/charts?range=7d").status_code == 200
    assert manager.get("/charts?range=forever").status_code == 400
    assert all(p["live"] for p in manager.get("/api/series?range=24h").json()["points"])
    assert "New rule" in manager.get("/alerts").text
    assert "New rule" not in user.get("/alerts").text


def test_pages_forbid_framing_and_foreign_scripts(manager, scenario):
    headers = manager.get("/").headers
    assert headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in headers["content-security-policy"]
    cookie = manager.cookies.jar
    assert any(c.name == "job_worker_session" for c in cookie)


def test_logout_ends_the_session(manager, scenario):
    token = csrf_of(manager.get("/").text)
    assert manager.post("/logout", data={"csrf_token": token}).status_code == 303
    assert manager.get("/").status_code == 303
