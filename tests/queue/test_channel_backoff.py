"""ChannelBackoff (PRODUCT.md 12): a job pauses its whole channel; it returns to pending
without counting an attempt, bounded by ``max_channel_backoffs``; a later backoff extends
the pause; a manager lifts it; the claim starts no job of a paused channel."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from job_worker.db.jobstore import job_store
from job_worker.exceptions import MAX_BACKOFF_REASON, ChannelBackoff, JobError
from job_worker.queue.explain import explain


@pytest.fixture
def partner(qenv):
    return qenv["res.partner"].create({"name": "Acme"})


def _now(env):
    return job_store(env.cr.backend).now(env.cr)


def _channel(env, name):
    return env["queue.channel"].search([("name", "=", name)])


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf, 86_400.5, True, "3", None])
def test_a_backoff_of_bad_seconds_is_refused_by_its_constructor(seconds):
    with pytest.raises((ValueError, TypeError), match="seconds must be a finite number > 0"):
        ChannelBackoff(seconds)


def test_a_backoff_keeps_its_seconds_and_a_bounded_reason():
    exc = ChannelBackoff(86_400, "x" * 2000)
    assert isinstance(exc, JobError)
    assert exc.seconds == 86_400.0 and len(exc.reason) == MAX_BACKOFF_REASON
    assert str(ChannelBackoff(3, "HTTP 429")) == "channel backoff for 3 s: HTTP 429"
    with pytest.raises(TypeError, match="reason must be a str"):
        ChannelBackoff(3, 429)  # type: ignore[arg-type]


def test_a_job_that_backs_off_returns_to_pending_without_counting_an_attempt(qenv, partner):
    job = partner.with_delay(channel="api", max_retries=1).back_off(3, "HTTP 429")
    due = job.scheduled_at
    before = _now(qenv)
    job.run_now()
    assert (job.state, job.attempts, job.backoffs) == ("pending", 0, 1)
    assert job.scheduled_at == due  # the pause is the channel's, not the job's
    assert job.exc_name == "job_worker.exceptions.ChannelBackoff"
    assert "channel backoff: channel api paused for 3 s" in job.exc_message
    assert "HTTP 429" in job.exc_message
    assert "--- channel backoff 1 at " in job.exc_info
    assert qenv["job.log"].search_count([]) == 0  # the job's write was rolled back
    channel = _channel(qenv, "api")
    assert channel.backoff_reason == "HTTP 429" and channel.backoff_job_id == job
    assert channel.backoff_count == 1
    assert before + timedelta(seconds=3) <= channel.backoff_until
    assert channel.backoff_until <= _now(qenv) + timedelta(seconds=3)


def test_past_the_bound_a_backoff_counts_an_attempt(qenv, partner):
    qenv["queue.config"].set_value("max_channel_backoffs", 2)
    job = partner.with_delay(channel="api", max_retries=1).back_off(1, "busy")
    job.run_now()
    job.run_now()
    assert (job.state, job.attempts, job.backoffs) == ("pending", 0, 2)
    job.run_now()  # the third: the bound is reached, an attempt counts, retry as usual
    assert (job.state, job.attempts, job.backoffs) == ("pending", 1, 2)
    assert "max_channel_backoffs = 2" in job.exc_message
    assert "counted as a failed attempt" in job.exc_info
    assert job.scheduled_at > _now(qenv)  # the usual retry backoff
    assert _channel(qenv, "api").backoff_count == 3  # the channel is paused all the same
    job.write({"scheduled_at": _now(qenv)})
    with pytest.raises(ChannelBackoff):
        job.run_now()  # retries spent: failed, raised like any final failure
    assert (job.state, job.attempts) == ("failed", 2)


def test_a_later_backoff_extends_the_pause_and_a_shorter_one_does_not(qenv, partner):
    long_job = partner.with_delay(channel="api").back_off(600, "long")
    long_job.run_now()
    until = _channel(qenv, "api").backoff_until
    short_job = partner.with_delay(channel="api").back_off(5, "short")
    short_job.run_now()
    channel = _channel(qenv, "api")
    assert (channel.backoff_until, channel.backoff_reason) == (until, "long")
    assert channel.backoff_job_id == long_job and channel.backoff_count == 2
    longer = partner.with_delay(channel="api").back_off(1200, "longer")
    longer.run_now()
    channel = _channel(qenv, "api")
    assert channel.backoff_until >= until + timedelta(seconds=590)
    assert (channel.backoff_reason, channel.backoff_job_id) == ("longer", longer)


def test_lifting_ends_the_pause_and_says_when_there_was_none(qenv, partner):
    Channel = qenv["queue.channel"]
    assert Channel.lift_backoff("api") is False
    partner.with_delay(channel="api").back_off(60, "HTTP 429").run_now()
    assert set(Channel.active_backoffs()) == {"api"}
    assert Channel.lift_backoff("api") is True
    assert Channel.active_backoffs() == {}
    assert Channel.lift_backoff("api") is False
    assert _channel(qenv, "api").backoff_count == 1  # the counter stays


def test_explain_names_the_backoff_as_what_holds_a_pending_job(qenv, partner):
    asker = partner.with_delay(channel="api").back_off(60, "HTTP 429")
    asker.run_now()
    other = partner.with_delay(channel="api").record("later")
    reasons = explain(qenv, other.id, now=_now(qenv))
    assert reasons[0].code == "channel_backoff"
    until = _channel(qenv, "api").backoff_until
    assert reasons[0].message.startswith(f"channel api backs off until {until:%H:%M:%S} UTC")
    assert reasons[0].message.endswith(f": HTTP 429 from job {asker.id}")
    qenv["queue.channel"].lift_backoff("api")
    assert "channel_backoff" not in [r.code for r in explain(qenv, other.id, now=_now(qenv))]


def test_requeue_resets_the_backoff_counter(qenv, partner):
    job = partner.with_delay(channel="api").back_off(1)
    job.run_now()
    job.cancel()
    job.requeue()
    assert (job.state, job.backoffs) == ("pending", 0)


def test_the_timeline_tells_each_backoff_apart_from_the_attempts(qenv, partner):
    from job_worker.queue import describe

    job = partner.with_delay(channel="api", max_retries=3).back_off(3, "HTTP 429")
    job.run_now()
    labels = [event.label for event in describe.timeline(job)]
    assert labels[0] == "enqueued"
    assert "run before channel backoff 1 started in the calling process (run_now)" in labels
    [backed_off] = [label for label in labels if label.startswith("channel backoff 1")]
    assert "back to pending after" in backed_off
    assert "channel api paused for 3 s" in backed_off and "HTTP 429" in backed_off
    assert not any(label.startswith("attempt") for label in labels)  # no attempt counted
