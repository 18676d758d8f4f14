"""The channels page shows a job's backoff and lets a manager lift it; /metrics tells
the seconds left and counts backoffs."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from opsapp.scenario import csrf_of

from job_worker import SUPERUSER_ID, api
from job_worker.db.jobstore import job_store


def pause(registry, channel: str, seconds: float, reason: str, job_id: int):
    """Pause ``channel`` as a job's ChannelBackoff does (committed); returns until when."""
    with registry.cursor() as cr:
        store = job_store(cr.backend)
        now = store.now(cr)
        return store.back_off_channel(
            cr,
            channel,
            until=now + timedelta(seconds=seconds),
            reason=reason,
            job_id=job_id,
            at=now,
        )


def active(registry) -> set[str]:
    with registry.cursor() as cr:
        return set(api.Environment(cr, SUPERUSER_ID, {})["queue.channel"].active_backoffs())


def test_the_channels_page_shows_a_backoff_and_only_a_manager_lifts_it(
    manager, user, scenario, ops_registry
):
    until = pause(ops_registry, "exports", 600, "HTTP 429 <quota>", scenario.pending)
    user_page = user.get("/channels")
    text = html.unescape(user_page.text)
    assert f"until {until:%Y-%m-%d %H:%M:%S} UTC: HTTP 429 <quota>" in text
    assert "HTTP 429 <quota>" not in user_page.text  # escaped
    assert f'href="/jobs/{scenario.pending}"' in user_page.text
    assert "lift-form" not in user_page.text
    refused = user.post("/channels/exports/lift", data={"csrf_token": csrf_of(user_page.text)})
    assert refused.status_code == 403 and active(ops_registry) == {"exports"}

    page = manager.get("/channels")
    assert 'action="/channels/exports/lift"' in page.text
    forged = manager.post("/channels/exports/lift", data={"csrf_token": "forged"})
    assert forged.status_code == 403 and active(ops_registry) == {"exports"}
    lifted = manager.post("/channels/exports/lift", data={"csrf_token": csrf_of(page.text)})
    assert lifted.status_code == 303 and active(ops_registry) == set()
    after = manager.get("/channels").text
    assert "backoff lifted" in after and "lift-form" not in after
    again = manager.post("/channels/exports/lift", data={"csrf_token": csrf_of(after)})
    assert again.status_code == 303
    assert "no backoff in force" in html.unescape(manager.get("/channels").text)


def test_metrics_tell_the_seconds_left_and_count_backoffs(client_for, scenario, ops_registry):
    pause(ops_registry, "exports", 600, "HTTP 429", scenario.pending)
    pause(ops_registry, "exports", 5, "shorter", scenario.pending)  # counted, not shortened
    body = client_for(None).get("/metrics").text
    left = float(
        re.search(r'^job_worker_channel_backoff_seconds\{channel="exports"\} (\S+)$', body, re.M)[1]
    )
    assert 590 < left <= 600
    assert 'job_worker_channel_backoffs_total{channel="exports"} 2.0' in body
    with ops_registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["queue.channel"].lift_backoff("exports")
    body = client_for(None).get("/metrics").text
    assert 'job_worker_channel_backoff_seconds{channel="exports"} 0.0' in body
    assert 'job_worker_channel_backoffs_total{channel="exports"} 2.0' in body


def test_the_job_page_says_how_often_a_job_backed_off(manager, scenario, ops_registry):
    job_id = scenario.pending
    assert "Channel backoffs" not in manager.get(f"/jobs/{job_id}").text
    with ops_registry.cursor() as cr:
        cr.execute("UPDATE queue_job SET backoffs = 3 WHERE id = %s", (job_id,))
    page = manager.get(f"/jobs/{job_id}").text
    assert "<th>Channel backoffs</th><td>3 " in page
