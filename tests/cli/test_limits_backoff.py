"""``job-worker limits list`` shows a channel's backoff, ``limits lift`` ends it and
``jobs explain`` names it."""

from __future__ import annotations

import json
from datetime import timedelta

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


def test_limits_list_shows_the_backoff_and_lift_ends_it(cli, scenario, ops_registry):
    until = pause(ops_registry, "exports", 600, "HTTP 429", scenario.pending)
    rows = {row["channel"]: row for row in json.loads(cli("limits", "list", "--json").output)}
    exports = rows["exports"]
    assert (exports["backoff_reason"], exports["backoff_job_id"]) == ("HTTP 429", scenario.pending)
    assert exports["backoff_until"].startswith(f"{until:%Y-%m-%d %H:%M:%S}")
    text = cli("limits", "list").output
    assert "backoff_until" in text and "HTTP 429" in text and f"{until:%Y-%m-%d %H:%M:%S}" in text

    explained = json.loads(cli("jobs", "explain", str(scenario.pending), "--json").output)
    first = explained["reasons"][0]
    assert first["code"] == "channel_backoff"
    assert first["message"].startswith(f"channel exports backs off until {until:%H:%M:%S} UTC")
    assert first["message"].endswith(f": HTTP 429 from job {scenario.pending}")

    lifted = cli("limits", "lift", "exports")
    assert lifted.exit_code == 0 and "backoff lifted" in lifted.output
    rows = {row["channel"]: row for row in json.loads(cli("limits", "list", "--json").output)}
    assert rows["exports"]["backoff_until"] is None
    again = cli("limits", "lift", "exports")
    assert again.exit_code == 1
    assert "channel 'exports' has no backoff in force: nothing to lift" in again.output


def test_a_channel_paused_without_jobs_is_listed(cli, scenario, ops_registry):
    pause(ops_registry, "quiet", 60, "", scenario.pending)
    rows = {row["channel"]: row for row in json.loads(cli("limits", "list", "--json").output)}
    assert rows["quiet"]["backoff_until"] is not None and rows["quiet"]["pending"] == 0
    assert cli("limits", "lift", "quiet", "--json").exit_code == 0


def test_max_channel_backoffs_is_a_cluster_setting(cli, ops_registry):
    assert cli("config", "set", "max_channel_backoffs", "0").exit_code != 0
    assert cli("config", "set", "max_channel_backoffs", "5").exit_code == 0
    with ops_registry.cursor() as cr:
        settings = api.Environment(cr, SUPERUSER_ID, {})["queue.config"].get_settings()
        assert settings.max_channel_backoffs == 5


def test_jobs_show_says_how_often_a_job_backed_off(cli, scenario, ops_registry):
    job_id = scenario.pending
    assert "channel backoffs" not in cli("jobs", "show", str(job_id)).output
    with ops_registry.cursor() as cr:
        cr.execute("UPDATE queue_job SET backoffs = 2 WHERE id = %s", (job_id,))
    shown = cli("jobs", "show", str(job_id)).output
    assert "channel backoffs" in shown and "2" in shown.split("channel backoffs", 1)[1][:40]
    assert json.loads(cli("jobs", "show", str(job_id), "--json").output)["backoffs"] == 2
