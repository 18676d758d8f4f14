"""Jobs whose records or whose user no longer exist fail at once, under run_now() and
in synchronous mode (the worker's side is in tests/worker/test_worker_executor.py)."""

import pytest

from job_worker.exceptions import FailedJobError, MissingRecordsError, MissingUserError


@pytest.fixture
def partner(qenv):
    return qenv["res.partner"].create({"name": "Acme"})


def test_job_on_ids_that_no_longer_exist_fails_at_once_naming_them(qenv):
    job = qenv["res.partner"].browse(999999).with_delay(max_retries=5).exists()
    with pytest.raises(MissingRecordsError, match=r"res\.partner record\(s\) 999999 no longer"):
        job.run_now()
    assert (job.state, job.attempts, job.exc_name) == (
        "failed",
        1,
        "job_worker.exceptions.MissingRecordsError",
    )
    assert "999999" in job.exc_message and "MissingRecordsError" in job.exc_info


def test_job_on_records_deleted_after_the_enqueue_fails_without_running(qenv, partner):
    other = qenv["res.partner"].create({"name": "Beta"})
    job = (partner | other).with_delay().record("never")
    other.unlink()
    with pytest.raises(MissingRecordsError) as caught:
        job.run_now()
    assert (caught.value.model_name, caught.value.missing_ids) == ("res.partner", [other.id])
    assert isinstance(caught.value, FailedJobError)  # never retried
    assert job.state == "failed"
    assert not qenv["job.log"].search([])  # the method did not run


def test_job_without_records_still_runs(qenv):
    job = qenv["res.partner"].browse([]).with_delay().record("none")
    job.run_now()
    assert job.state == "done"


def test_missing_records_fail_at_once_in_synchronous_mode(qenv):
    eager = qenv["res.partner"].with_context(queue_job__no_delay=True).browse(999999)
    with pytest.raises(MissingRecordsError, match="999999"):
        eager.with_delay(max_retries=5).exists()
    job = qenv["queue.job"].search([])
    assert (job.state, job.attempts) == ("failed", 1)


def test_job_of_a_deleted_user_fails_instead_of_running_as_the_superuser(qenv, partner):
    user = qenv["res.users"].create({"name": "Ann", "login": "ann"})
    job = partner.with_user(user).with_delay(max_retries=5).record("as-ann")
    assert job.user_id == user
    user.unlink()
    job.invalidate_recordset()
    assert not job.user_id  # set null by the database
    with pytest.raises(MissingUserError, match=f"user who enqueued job {job.uuid}"):
        job.run_now()
    assert (job.state, job.attempts, job.exc_name) == (
        "failed",
        1,
        "job_worker.exceptions.MissingUserError",
    )
    assert not qenv["job.log"].search([])  # it ran as nobody


def test_job_created_directly_runs_as_its_creator(qenv, partner):
    user = qenv["res.users"].create({"name": "Bob", "login": "bob"})
    Job = qenv["queue.job"].with_user(user)
    job = Job.create(
        {
            "uuid": "00000000-0000-4000-8000-000000000001",
            "model_name": "res.partner",
            "method_name": "record",
            "record_ids": [partner.id],
            "args": ["direct"],
        }
    )
    assert job.user_id == user
    job.run_now()
    assert qenv["job.log"].search([]).uid == user.id
