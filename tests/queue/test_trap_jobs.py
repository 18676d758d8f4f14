"""job_worker.testing.trap_jobs."""

import pytest

from job_worker.testing import trap_jobs


@pytest.fixture
def partner(qenv):
    return qenv["res.partner"].create({"name": "Acme"})


def test_trap_collects_counts_and_performs(qenv, partner):
    partner.with_delay().record("before the trap")
    with trap_jobs(qenv) as trap:
        partner.with_delay(priority=5).record("a", value=1)
        partner.with_delay().echo(2)
        assert len(trap.enqueued_jobs) == 2
        trap.assert_jobs_count(2)
        trap.assert_jobs_count(1, model="res.partner", method="record")
        job = trap.assert_enqueued_job(partner.record, args=("a",), kwargs={"value": 1}, priority=5)
        assert job.priority == 5
        trap.perform_enqueued_jobs()
    assert qenv["job.log"].search([]).mapped("name") == ["a"]
    assert qenv["queue.job"].search([("state", "=", "pending")]).args == ["before the trap"]


def test_trap_assertions_fail_with_what_was_enqueued(qenv, partner):
    with trap_jobs(qenv) as trap:
        partner.with_delay().record("a")
        with pytest.raises(AssertionError, match="expected 2 enqueued job"):
            trap.assert_jobs_count(2)
        with pytest.raises(AssertionError, match=r"no job res.partner.*record"):
            trap.assert_enqueued_job(partner.record, args=("b",))
        with pytest.raises(AssertionError):
            trap.assert_enqueued_job(partner.record, priority=1)


def test_perform_runs_graphs_in_order_and_retries(qenv, partner):
    from job_worker.delay import chain

    with trap_jobs(qenv) as trap:
        chain(partner.delayable().record("1"), partner.delayable().record("2")).delay()
        flaky = partner.with_delay(max_retries=2).fail_then_write()
        trap.perform_enqueued_jobs()
    assert qenv["job.log"].search([]).mapped("name") == ["1", "2"]
    assert (flaky.state, flaky.attempts) == ("failed", 3)


@pytest.mark.timeout(60)
def test_perform_stops_on_a_job_retried_forever_without_counting(qenv, partner):
    from job_worker.exceptions import RetryLoopError

    with trap_jobs(qenv) as trap:
        job = partner.with_delay().retry_later(ignore_retry=True)
        with pytest.raises(RetryLoopError, match=f"queue.job {job.id} .*ran 100 times"):
            trap.perform_enqueued_jobs()
    assert (job.state, job.attempts) == ("pending", 0)
