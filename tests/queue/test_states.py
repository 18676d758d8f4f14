"""run_now() and the state machine of PRODUCT.md 5: attempts, backoff, errors,
manual actions."""

from datetime import timedelta

import pytest

from job_worker.exceptions import FailedJobError, RetryableJobError
from job_worker.orm.fields import Datetime
from job_worker.queue.states import backoff


@pytest.fixture
def partner(qenv):
    return qenv["res.partner"].create({"name": "Acme"})


def test_done_job_keeps_its_writes_result_and_timings(qenv, partner):
    job = partner.with_delay().record("x", value=3)
    assert job.run_now() is True
    assert job.state == "done"
    assert job.result == {"recorded": 1, "value": 3}
    assert job.started_at <= job.completed_at and job.duration >= 0
    assert qenv["job.log"].search_count([]) == 1


def test_run_now_still_works_after_the_application_rolled_back(qenv, partner):
    # a driver that prepares a statement run five times answers the next rollback by
    # deallocating every statement of the connection: run_now's own prepared ones too
    assert partner.with_delay().record("a").run_now() is True
    with pytest.raises(ZeroDivisionError), qenv.cr.savepoint():
        for number in range(8):
            qenv.cr.execute("SELECT %s", (number,))
        raise ZeroDivisionError
    assert partner.with_delay().record("b").run_now() is True


def test_failure_rolls_back_the_jobs_writes_and_schedules_a_retry(qenv, partner):
    job = partner.with_delay(max_retries=3).fail_then_write("first")
    before = Datetime.now()
    job.run_now()  # retried: recorded, not raised
    assert job.state == "pending" and job.attempts == 1
    assert job.exc_name == "RuntimeError" and job.exc_message == "first"
    assert "RuntimeError: first" in job.exc_info and "attempt 1" in job.exc_info
    assert (
        before + timedelta(seconds=10) <= job.scheduled_at <= Datetime.now() + timedelta(seconds=10)
    )
    assert qenv["job.log"].search_count([]) == 0  # the job's write was rolled back


def test_an_error_message_no_column_can_hold_is_recorded_escaped(qenv, partner):
    job = partner.with_delay(max_retries=3).fail_with_unstorable_text()
    job.run_now()  # retried: the failure is recorded, not lost with the transaction
    assert job.state == "pending" and job.attempts == 1
    assert job.exc_message == "nul \\x00 and lone surrogate \\ud800"
    assert "RuntimeError: nul \\x00 and lone surrogate \\ud800" in job.exc_info
    job.set_failed("by hand \x00")
    assert job.state == "failed" and job.exc_message == "by hand \\x00"
    assert job.exc_info.endswith("by hand \\x00")
    qenv.cr.commit()  # nothing the database refuses was sent


def test_a_job_runs_at_most_max_retries_plus_one_times(qenv, partner):
    job = partner.with_delay(max_retries=2).fail_then_write()
    job.run_now()
    job.run_now()
    assert (job.state, job.attempts) == ("pending", 2)
    with pytest.raises(RuntimeError, match="boom"):
        job.run_now()
    assert (job.state, job.attempts) == ("failed", 3)
    assert job.exc_info.count("--- attempt") == 3  # diagnoses appended, never overwritten
    with pytest.raises(ValueError, match="only a pending job"):
        job.run_now()


def test_max_retries_zero_retries_forever(qenv, partner):
    job = partner.with_delay(max_retries=0).fail_then_write()
    for _ in range(12):
        job.run_now()
    assert (job.state, job.attempts) == ("pending", 12)


def test_failed_job_error_fails_at_once(qenv, partner):
    job = partner.with_delay(max_retries=5).fail_hard()
    with pytest.raises(Exception, match="no point retrying"):
        job.run_now()
    assert (job.state, job.attempts, job.exc_name) == (
        "failed",
        1,
        "job_worker.exceptions.FailedJobError",
    )


def test_retryable_error_with_seconds_sets_the_backoff(qenv, partner):
    job = partner.with_delay().retry_later(seconds=120)
    before = Datetime.now()
    job.run_now()
    assert job.attempts == 1
    assert (
        before + timedelta(seconds=120)
        <= job.scheduled_at
        <= Datetime.now() + timedelta(seconds=120)
    )


def test_retryable_error_with_ignore_retry_does_not_count(qenv, partner):
    job = partner.with_delay(max_retries=1).retry_later(ignore_retry=True)
    for _ in range(3):
        job.run_now()
    assert (job.state, job.attempts) == ("pending", 0)


def test_retryable_error_validates_seconds():
    with pytest.raises(ValueError, match="seconds"):
        RetryableJobError("x", seconds=-1)


def test_backoff_doubles_from_ten_seconds_up_to_the_cap():
    assert [backoff(n) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert backoff(20) == 3600
    assert backoff(5, max_backoff=60) == 60


def test_large_results_are_truncated_with_a_marker(qenv, partner):
    job = partner.with_delay().big_result(200_000)
    job.run_now()
    assert job.result["$truncated"] is True and job.result["size"] > 200_000
    assert len(job.result["head"]) < 64 * 1024


def test_unstorable_result_is_kept_as_its_repr(qenv, partner):
    job = partner.with_delay().opaque()
    job.run_now()
    assert (job.state, job.result) == ("done", "{1, 2}")


def test_requeue_resets_attempts_and_error(qenv, partner):
    job = partner.with_delay(max_retries=0).fail_then_write()
    job.run_now()
    job.set_failed()
    job.requeue()
    assert (job.state, job.attempts, job.exc_name, job.exc_info, job.completed_at) == (
        "pending",
        0,
        False,
        False,
        False,
    )


@pytest.mark.parametrize(
    ("action", "refused_from"),
    [
        ("requeue", ("pending", "waiting", "started")),
        ("cancel", ("done", "failed", "cancelled")),
        ("set_done", ("done",)),
        ("set_failed", ("failed",)),
    ],
)
def test_manual_actions_refuse_jobs_in_the_wrong_state(qenv, partner, action, refused_from):
    for state in refused_from:
        job = partner.with_delay().record()
        qenv.cr.execute("UPDATE queue_job SET state = %s WHERE id = %s", [state, job.id])
        job.invalidate_recordset()
        other = partner.with_delay().record()
        with pytest.raises(ValueError, match=f"cannot {action.replace('_', ' ')}.*{state}"):
            getattr(job | other, action)()
        assert (job.state, other.state) == (state, "pending")  # nothing changed


def test_cancel_and_set_done_stamp_times(qenv, partner):
    a, b = partner.with_delay().record(), partner.with_delay().record()
    a.cancel()
    b.set_done()
    assert a.state == "cancelled" and a.cancelled_at
    assert b.state == "done" and b.completed_at


def test_eta_and_retry_aliases(qenv, partner):
    job = partner.with_delay(max_retries=0).fail_then_write()
    job.run_now()
    assert job.eta == job.scheduled_at and job.retry == job.attempts == 1
    assert job["eta"] == job.scheduled_at and job["retry"] == 1


def test_eta_and_retry_aliases_are_searched_ordered_and_read_as_their_fields(qenv, partner):
    from datetime import datetime

    later = partner.with_delay(eta=datetime(2031, 1, 1)).record()
    sooner = partner.with_delay(eta=datetime(2030, 1, 1), max_retries=0).fail_then_write()
    qenv.cr.execute(
        "UPDATE queue_job SET scheduled_at = %s WHERE id = %s", [Datetime.now(), sooner.id]
    )
    sooner.invalidate_recordset()
    sooner.run_now()  # one failed attempt, retried
    Job = qenv["queue.job"]
    assert Job.search([("eta", "<", datetime(2030, 6, 1))]) == sooner
    assert Job.search([("retry", ">=", 1)]) == sooner
    assert Job.search_count([("retry", "=", 0), ("eta", ">", datetime(2030, 6, 1))]) == 1
    assert Job.search([], order="eta desc").ids == [later.id, sooner.id]
    assert Job.search([], order="retry desc, id").ids == [sooner.id, later.id]
    [row] = later.read(["eta", "retry"])
    assert row == {"id": later.id, "eta": datetime(2031, 1, 1), "retry": 0}
    assert "eta" not in later.read()[0]  # reading every field does not repeat the targets


def test_eta_alias_is_written_as_scheduled_at(qenv, partner):
    from datetime import datetime

    job = partner.with_delay().record()
    job.eta = datetime(2032, 1, 1)
    assert job.scheduled_at == datetime(2032, 1, 1)
    job.write({"eta": datetime(2033, 1, 1), "scheduled_at": datetime(2033, 1, 1)})
    assert job.scheduled_at == datetime(2033, 1, 1)
    with pytest.raises(ValueError, match="scheduled_at is given twice, under an alias"):
        job.write({"eta": datetime(2034, 1, 1), "scheduled_at": datetime(2035, 1, 1)})
    assert job.scheduled_at == datetime(2033, 1, 1)  # nothing written


def test_set_failed_appends_its_message_to_the_diagnoses(qenv, partner):
    job = partner.with_delay(max_retries=0).fail_then_write("first")
    job.run_now()  # retried forever: pending, one diagnosis
    job.set_failed("given up by hand")
    assert job.state == "failed" and job.exc_message == "given up by hand"
    assert "RuntimeError: first" in job.exc_info  # appended, never overwritten
    assert job.exc_info.index("RuntimeError: first") < job.exc_info.index("--- set failed at")
    assert job.exc_info.endswith("given up by hand")


def test_a_dependent_failed_by_its_parent_records_an_error_class_that_exists(qenv, partner):
    import importlib

    parent, child = partner.delayable().record("p"), partner.delayable().record("c")
    parent.on_done(child).delay()
    parent._job.set_failed()
    job = child._job
    assert (job.state, job.exc_message) == ("failed", f"parent job {parent._job.id} failed")
    module, _, name = job.exc_name.rpartition(".")
    error = getattr(importlib.import_module(module), name)
    assert issubclass(error, FailedJobError) and name == "DependencyFailedError"
    assert f"DependencyFailedError: parent job {parent._job.id} failed" in job.exc_info


def test_every_error_a_caller_may_catch_is_importable_from_job_worker_exceptions():
    from job_worker import exceptions
    from job_worker.db import TransactionOwnedError
    from job_worker.db.cursor import TransactionOwnedError as FromCursor
    from job_worker.queue.delayable import UnknownMethodError

    assert TransactionOwnedError is FromCursor is exceptions.TransactionOwnedError
    assert UnknownMethodError is exceptions.UnknownMethodError
    for name in (
        "MissingError",
        "JobError",
        "RetryableJobError",
        "FailedJobError",
        "TimeoutJobError",
        "WorkerDiedJobError",
        "DependencyFailedError",
        "MissingRecordsError",
        "MissingUserError",
        "RetryLoopError",
    ):
        assert issubclass(getattr(exceptions, name), Exception)
