"""Synchronous mode: QUEUE_JOB__NO_DELAY or the queue_job__no_delay context key."""

import pytest

from job_worker.delay import chain, group
from job_worker.exceptions import FailedJobError, RetryableJobError, RetryLoopError


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


def test_a_failed_job_releases_its_on_error_handlers_before_the_failure_is_raised(qenv, partner):
    eager = partner.with_context(queue_job__no_delay=True)
    failing = eager.delayable(max_retries=3).fail_hard()
    after, rescue = eager.delayable().record("after"), eager.delayable().record("rescue")
    failing.on_done(after)
    failing.on_error(rescue)
    with pytest.raises(FailedJobError, match="no point retrying"):
        failing.delay()
    # the states a worker leaves (PRODUCT.md 4): on_done failed, on_error run
    assert [d._job.state for d in (failing, after, rescue)] == ["failed", "failed", "done"]
    assert qenv["job.log"].search([]).mapped("name") == ["rescue"]


def test_a_failure_in_a_group_fails_the_dependents_and_runs_the_rest(qenv, partner):
    eager = partner.with_context(queue_job__no_delay=True)
    good, bad = eager.delayable().record("good"), eager.delayable().fail_hard()
    then, rescue = eager.delayable().record("then"), eager.delayable().record("rescue")
    group(good, bad).on_done(then).on_error(rescue)
    with pytest.raises(FailedJobError):
        then.delay()
    assert [d._job.state for d in (good, bad, then, rescue)] == ["done", "failed", "failed", "done"]
    assert sorted(qenv["job.log"].search([]).mapped("name")) == ["good", "rescue"]


def test_a_retry_is_recorded_and_the_job_runs_again_at_once(qenv, partner):
    eager = partner.with_context(queue_job__no_delay=True)
    job = eager.with_delay(max_retries=2).retry_first_attempt("second try")
    assert (job.state, job.attempts) == ("done", 1)
    assert "RetryableJobError: not yet" in job.exc_info
    assert qenv["job.log"].search([]).mapped("name") == ["second try"]


def test_a_job_that_keeps_asking_for_a_retry_fails_once_its_retries_are_spent(qenv, partner):
    eager = partner.with_context(queue_job__no_delay=True)
    with pytest.raises(RetryableJobError, match="not yet"):
        eager.with_delay(max_retries=2).retry_later(seconds=60)
    job = qenv["queue.job"].search([])
    assert (job.state, job.attempts) == ("failed", 3)  # max_retries + 1 runs, as a worker


@pytest.mark.timeout(60)
def test_a_job_retried_forever_without_counting_stops_with_a_clear_error(qenv, partner):
    eager = partner.with_context(queue_job__no_delay=True)
    with pytest.raises(RetryLoopError, match=r"ran 100 times at once and still asks to be retried"):
        eager.with_delay().retry_later(ignore_retry=True)
    job = qenv["queue.job"].search([])
    assert (job.state, job.attempts) == ("pending", 0)  # left for a worker, nothing lost


def test_environment_variable_is_read_at_every_enqueue(qenv, partner, monkeypatch):
    # set and unset within one transaction: each enqueue sees the variable as it is
    assert partner.with_delay().record("queued").state == "pending"
    monkeypatch.setenv("QUEUE_JOB__NO_DELAY", "1")
    assert partner.with_delay().record("run").state == "done"
    monkeypatch.setenv("QUEUE_JOB__NO_DELAY", "0")
    assert partner.with_delay().record("queued too").state == "pending"
    monkeypatch.delenv("QUEUE_JOB__NO_DELAY")
    assert partner.with_delay().record("queued again").state == "pending"
    assert qenv["job.log"].search([]).mapped("name") == ["run"]


def test_environment_variable_without_the_dict_behind_os_environ(qenv, partner, monkeypatch):
    # a Python whose os.environ keeps no such dict reads the variable the public way
    from job_worker.queue import enqueue

    monkeypatch.setattr(enqueue, "_ENVIRON_DATA", None)
    assert partner.with_delay().record("queued").state == "pending"
    monkeypatch.setenv("QUEUE_JOB__NO_DELAY", "1")
    assert partner.with_delay().record("run").state == "done"
