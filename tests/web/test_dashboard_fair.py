"""The channels page shows rate windows, the running weight and fair keys; managers edit
the windows and weigh keys; /metrics tells the running weight, the starts per window and
the fair keys with work (both databases)."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from opsapp.scenario import csrf_of

from job_worker import SUPERUSER_ID, api
from job_worker.db.jobstore import job_store
from job_worker.queue import states

pytestmark = pytest.mark.timeout(60)


def _limit(ops_registry) -> list[dict]:
    with ops_registry.cursor() as cr:
        return (
            api.Environment(cr, SUPERUSER_ID, {})["queue.limit"]
            .search([("name", "=", "exports")])
            .read(["limit", "rate_limit", "rates"])
        )


def _weights(ops_registry) -> dict[str, int]:
    with ops_registry.cursor() as cr:
        keys = api.Environment(cr, SUPERUSER_ID, {})["queue.fair.key"].search([])
        return {key.fair_key: key.weight for key in keys}


def enqueue(ops_registry, *keys: str, weight: int = 1) -> list[int]:
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["queue.limit"].set_limit("exports", 10)
        partner = env["res.partner"].search([], limit=1)
        return [
            partner.with_delay(channel="exports", fair_key=key or None, weight=weight).export().id
            for key in keys
        ]


def test_manager_edits_the_rate_windows(manager, scenario, ops_registry):
    page = manager.get("/channels").text
    assert 'name="rates"' in page
    data = {"name": "exports", "limit": "3", "rate_limit": "2", "csrf_token": csrf_of(page)}
    saved = manager.post("/channels", data={**data, "rates": "500/min, 10/s"})
    assert saved.status_code == 303
    page = manager.get("/channels").text
    assert "channel exports: limit 3, rate 2/s, rates 10/s 500/min" in page
    assert re.search(r'<td class="rates">10/s 500/min, 2/s <small', page)
    assert _limit(ops_registry)[0]["rates"] == "10/s 500/min"
    # a form without the field keeps the windows; an empty one clears them
    assert manager.post("/channels", data=data).status_code == 303
    assert _limit(ops_registry)[0]["rates"] == "10/s 500/min"
    assert manager.post("/channels", data={**data, "rates": " "}).status_code == 303
    assert not _limit(ops_registry)[0]["rates"]


def test_bad_rate_windows_flash_an_error_and_write_nothing(manager, scenario, ops_registry):
    token = csrf_of(manager.get("/channels").text)
    for value, words in (
        ("lots", "rates: rate 'lots' is not a window: expected COUNT/PERIOD windows"),
        ("0/s", "rates: rate '0/s': the count must be from 1"),
        ("<b>1/d</b>", "rates: rate '<b>1/d</b>' is not a window"),
    ):
        data = {"name": "exports", "limit": "2", "rates": value, "csrf_token": token}
        assert manager.post("/channels", data=data).status_code == 303
        page = manager.get("/channels").text
        assert words in html.unescape(page)
        assert "<b>" not in page
    assert _limit(ops_registry) == []


def test_the_page_shows_the_running_weight(manager, scenario, ops_registry):
    heavy = enqueue(ops_registry, "", weight=4)[0]
    with ops_registry.cursor() as cr:
        states.mark_started(cr, heavy, "host:1:x")
    page = manager.get("/channels").text
    assert '<td class="running">1 <small class="muted">weighing 4</small></td>' in page


def test_fair_keys_show_and_only_a_manager_weighs_them(manager, user, scenario, ops_registry):
    hostile = "<script>alert(1)</script>"
    enqueue(ops_registry, hostile, "tenant-2", "tenant-2")
    user_page = user.get("/channels").text
    assert "Fair keys of exports" in user_page and "fair-form" not in user_page
    assert hostile not in user_page and html.escape(hostile) in user_page
    assert "jobs without a key" in user_page  # the scenario's pending export
    refused = user.post(
        "/channels/exports/fair",
        data={"key": "tenant-2", "weight": "3", "csrf_token": csrf_of(user_page)},
    )
    assert refused.status_code == 403 and _weights(ops_registry) == {}

    page = manager.get("/channels").text
    assert 'action="/channels/exports/fair"' in page
    forged = manager.post(
        "/channels/exports/fair", data={"key": "tenant-2", "weight": "3", "csrf_token": "x"}
    )
    assert forged.status_code == 403 and _weights(ops_registry) == {}
    token = csrf_of(page)
    for key in ("tenant-2", hostile):
        saved = manager.post(
            "/channels/exports/fair", data={"key": key, "weight": "3", "csrf_token": token}
        )
        assert saved.status_code == 303
    assert _weights(ops_registry) == {"tenant-2": 3, hostile: 3}
    page = manager.get("/channels").text
    assert hostile not in page and "3 turns per round" in page
    assert f"<tr><td>{html.escape(hostile)}</td><td>3</td><td>1</td></tr>" in page
    assert "<tr><td>tenant-2</td><td>3</td><td>2</td></tr>" in page
    # weight 1 removes the row
    manager.post(
        "/channels/exports/fair", data={"key": "tenant-2", "weight": "1", "csrf_token": token}
    )
    assert _weights(ops_registry) == {hostile: 3}


def test_bad_fair_weights_flash_an_error_and_write_nothing(manager, scenario, ops_registry):
    enqueue(ops_registry, "tenant-1")
    token = csrf_of(manager.get("/channels").text)
    for key, weight, words in (
        ("tenant-1", "0", "weight must be a whole number from 1 to"),
        ("tenant-1", "many", "weight must be a whole number from 1 to"),
        ("", "2", "fair_key must be a text of 1 to 200 characters"),
        ("k" * 201, "2", "fair_key must be a text of 1 to 200 characters"),
    ):
        data = {"key": key, "weight": weight, "csrf_token": token}
        assert manager.post("/channels/exports/fair", data=data).status_code == 303
        assert words in html.unescape(manager.get("/channels").text)
    assert _weights(ops_registry) == {}


def test_metrics_tell_running_weight_window_starts_and_fair_keys(
    client_for, scenario, ops_registry
):
    [heavy, *_rest] = enqueue(ops_registry, "", "tenant-1", "tenant-2", "tenant-2", weight=3)
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["queue.limit"].set_limit("exports", 10, 0.5, rates="10/s 500/min")
        states.mark_started(cr, heavy, "host:1:x")
        store = job_store(cr.backend)
        now = store.now(cr)
        for seconds in (1.5, 30, 90):  # two starts within the minute, none within the second
            cr.execute(
                "INSERT INTO queue_channel_start (channel, started_at) VALUES (%s, %s)",
                ["exports", now - timedelta(seconds=seconds)],
            )
    body = client_for(None).get("/metrics").text
    assert 'job_worker_channel_running_weight{channel="exports"} 3.0' in body
    assert 'job_worker_channel_rate_window_starts{channel="exports",window="10/s"} 0.0' in body
    assert 'job_worker_channel_rate_window_starts{channel="exports",window="1/2s"} 1.0' in body
    assert 'job_worker_channel_rate_window_starts{channel="exports",window="500/min"} 2.0' in body
    assert 'job_worker_channel_fair_keys{channel="exports"} 2.0' in body
    assert 'job_worker_channel_fair_keys{channel="root"} 0.0' in body
