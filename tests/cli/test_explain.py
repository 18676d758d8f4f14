"""``jobs explain``: the right reason for each cause that keeps a job from running."""

from __future__ import annotations

from datetime import timedelta

import pytest

from job_worker.db.jobstore import job_store
from job_worker.delay import chain
from job_worker.monitoring import stats
from job_worker.queue import states
from job_worker.queue.explain import explain

pytestmark = pytest.mark.timeout(60)


def codes(env, job) -> list[str]:
    return [reason.code for reason in explain(env, job.id)]


def message(env, job, code: str) -> str:
    found = [r.message for r in explain(env, job.id) if r.code == code]
    assert found, f"no {code} reason in {[r.code for r in explain(env, job.id)]}"
    return found[0]


def live_worker(env, channels: str | None = None, age: float = 0.0) -> None:
    now = stats.now() - timedelta(seconds=age)
    env["queue.worker"].create(
        {
            "worker_id": f"host:1:{channels or 'all'}:{age}",
            "hostname": "host",
            "pid": 1,
            "concurrency": 2,
            "channels": channels,
            "started_at": now,
            "heartbeat": now,
        }
    )


@pytest.fixture
def partner(ops_env):
    return ops_env["res.partner"].create({"name": "Acme"})


def test_waiting_job_names_its_unfinished_parents(ops_env, partner):
    first = partner.delayable(description="first").export()
    second = partner.delayable(description="second").export()
    chain(first, second).delay()
    job = ops_env["queue.job"].search([("name", "=", "second")])
    parent = ops_env["queue.job"].search([("name", "=", "first")])
    text = message(ops_env, job, "waiting_parents")
    assert f"job {parent.id} (first, pending) to be done" in text


def test_scheduled_job_says_when_it_is_due(ops_env, partner):
    job = partner.with_delay(eta=3600).export()
    assert "scheduled" in codes(ops_env, job)
    assert job.scheduled_at.strftime("%Y-%m-%d %H:%M") in message(ops_env, job, "scheduled")


def test_job_in_retry_backoff_says_until_when(ops_env, partner):
    job = partner.with_delay(max_retries=3).explode()
    job.run_now()  # first attempt fails: retried after a backoff
    assert job.state == "pending" and job.attempts == 1
    text = message(ops_env, job, "retry_backoff")
    assert "attempt 1 failed (ValueError)" in text
    assert job.scheduled_at.strftime("%H:%M:%S") in text
    assert "scheduled" not in codes(ops_env, job)


def test_channel_at_its_limit_names_the_running_jobs(ops_env, partner):
    ops_env["queue.limit"].set_limit("exports", 1)
    running = partner.with_delay(channel="exports").export()
    states.mark_started(ops_env.cr, running.id, "host:1:x")
    job = partner.with_delay(channel="exports").export()
    text = message(ops_env, job, "channel_full")
    assert "1 of 1 running" in text and str(running.id) in text


def test_channel_without_limit_row_uses_the_default_limit(ops_env, partner):
    running = partner.with_delay(channel="reports").export()
    states.mark_started(ops_env.cr, running.id, "host:1:x")
    job = partner.with_delay(channel="reports").export()
    assert "default limit" in message(ops_env, job, "channel_full")
    assert "channel_full" not in [r.code for r in explain(ops_env, job.id, default_limit=2)]


def test_paused_channel_says_limit_zero(ops_env, partner):
    ops_env["queue.limit"].set_limit("exports", 0)
    job = partner.with_delay(channel="exports").export()
    assert "paused (limit 0)" in message(ops_env, job, "channel_paused")


def _claim(env, channel: str) -> list[int]:
    """Start the due jobs of ``channel`` the way a worker does (the claim logs the starts
    of rate-limited channels)."""
    store = job_store(env.cr.backend)
    claim = store.claim(
        env.cr, worker_id="host:1:x", wanted=10, default_limit=1, channels=[channel]
    )
    return [job.id for job in claim.jobs]


def test_rate_limited_channel_counts_the_starts_of_its_window(ops_env, partner):
    ops_env["queue.limit"].set_limit("mail", 10, rates="2/min")
    first = partner.with_delay(channel="mail").export()
    second = partner.with_delay(channel="mail").export()
    assert _claim(ops_env, "mail") == [first.id, second.id]
    job = partner.with_delay(channel="mail").export()
    text = message(ops_env, job, "rate_limited")
    assert "2 start(s) within its window 2/min" in text
    assert "next start comes at" in text
    assert _claim(ops_env, "mail") == []


def test_rate_limited_channel_says_when_its_next_start_comes(ops_env, partner):
    ops_env["queue.limit"].set_limit("mail", 10, rate_limit=0.5)
    partner.with_delay(channel="mail").export()
    assert len(_claim(ops_env, "mail")) == 1
    job = partner.with_delay(channel="mail").export()
    assert "next start comes at" in message(ops_env, job, "rate_limited")
    assert "its window 1/2s" in message(ops_env, job, "rate_limited")


def test_rate_limit_not_reached_is_not_a_reason(ops_env, partner):
    ops_env["queue.limit"].set_limit("mail", 10, rate_limit=100)
    job = partner.with_delay(channel="mail").export()
    assert "rate_limited" not in codes(ops_env, job)


def test_no_live_worker_when_heartbeats_are_stale(ops_env, partner):
    job = partner.with_delay().export()
    assert "no worker ever ran here" in message(ops_env, job, "no_worker")
    live_worker(ops_env, age=120)
    assert "last heartbeat 2 min ago" in message(ops_env, job, "no_worker")
    live_worker(ops_env)
    assert "no_worker" not in codes(ops_env, job)


def test_worker_that_stopped_cleanly_is_reported_stopped_not_silent(ops_env, partner):
    live_worker(ops_env, age=4)
    worker = ops_env["queue.worker"].search([])
    stopped = stats.now() - timedelta(seconds=4)
    worker.write({"stopped_at": stopped})
    job = partner.with_delay().export()
    text = message(ops_env, job, "no_worker")
    assert text.startswith("no worker running: the last one")
    assert f"stopped cleanly at {stopped:%Y-%m-%d %H:%M:%S}" in text
    assert "heartbeat" not in text


def test_no_live_worker_takes_the_channel(ops_env, partner):
    live_worker(ops_env, channels="mail,reports")
    job = partner.with_delay(channel="exports").export()
    assert "no live worker takes channel 'exports'" in message(ops_env, job, "no_worker")


def test_due_job_behind_others_says_how_many_come_first(ops_env, partner):
    live_worker(ops_env)
    partner.with_delay(priority=1).export()
    partner.with_delay(priority=1).export()
    job = partner.with_delay(priority=5).export()
    assert "2 due job(s)" in message(ops_env, job, "queued_behind")


def test_job_with_nothing_in_its_way_is_ready(ops_env, partner):
    live_worker(ops_env)
    job = partner.with_delay().export()
    assert codes(ops_env, job) == ["ready"]


def test_started_job_with_a_silent_worker_is_reclaimed_later(ops_env, partner):
    job = partner.with_delay().export()
    states.mark_started(ops_env.cr, job.id, "host:1:x")
    assert codes(ops_env, job) == ["running"]
    ops_env.cr.execute(
        "UPDATE queue_job SET heartbeat = %s WHERE id = %s",
        [stats.now() - timedelta(seconds=300), job.id],
    )
    assert codes(ops_env, job) == ["stale_heartbeat", "running"]


def test_finished_job_is_not_waiting_for_anything(ops_env, partner):
    job = partner.with_delay().export()
    job.run_now()
    assert codes(ops_env, job) == ["finished"]


def test_explain_of_a_missing_job_raises_key_error(ops_env):
    with pytest.raises(KeyError, match=r"no queue\.job with id 999"):
        explain(ops_env, 999)
