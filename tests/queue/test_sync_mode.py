"""Synchronous mode: QUEUE_JOB__NO_DELAY or the queue_job__no_delay context key."""

import pytest

from job_worker.delay import chain, group


@pytest.fixture
def partner(qenv):
    return qenv["res.partner"].create({"name": "Acme"})


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_environment_variable_runs_jobs_at_once(qenv, partner, monkeypatch, value):
    monkeypatch.setenv("QUEUE_JOB__NO_DELAY", value)
    job = partner.with_delay().record("now")
    assert job.state == "done"  # the row exists, and it ran in this transaction
    assert qenv["job.log"].search([]).mapped("name") == ["now"]


@pytest.mark.parametrize("value", ["", "0"])
def test_environment_variable_empty_or_zero_keeps_jobs_queued(qenv, partner, monkeypatch, value):
    monkeypatch.setenv("QUEUE_JOB__NO_DELAY", value)
    assert partner.with_delay().record().state == "pending"


def test_context_key_runs_jobs_at_once(qenv, partner):
    job = partner.with_context(queue_job__no_delay=True).with_delay().record("ctx")
    assert job.state == "done"


def test_graph_runs_in_dependency_order(qenv, partner):
    records = partner.with_context(queue_job__no_delay=True)
    a, b, c, d = (records.delayable().record(n) for n in "abcd")
    jobs = chain(a, group(b, c), d).delay()
    assert set(jobs.mapped("state")) == {"done"}
    names = qenv["job.log"].search([]).mapped("name")
    assert names[0] == "a" and names[-1] == "d" and sorted(names[1:3]) == ["b", "c"]


def test_failures_raise_to_the_caller(qenv, partner):
    records = partner.with_context(queue_job__no_delay=True)
    with pytest.raises(RuntimeError, match="boom"):
        records.with_delay(max_retries=5).fail_then_write()
    job = qenv["queue.job"].search([])
    assert job.state == "failed"
