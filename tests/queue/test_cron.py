"""queue.cron: periodic jobs, refused when bad, one job per occurrence, catch-up after
downtime, no overlap, pause and run-now; driven with a fixed clock."""

from datetime import datetime, timedelta

import pytest

from job_worker.exceptions import UnknownMethodError

T0 = datetime(2026, 1, 5, 12, 0, 0)


@pytest.fixture
def partner(qenv):
    return qenv["res.partner"].create({"name": "Acme"})


def make_cron(env, **values):
    vals = {
        "name": "digest",
        "model_name": "res.partner",
        "method_name": "record",
        "interval": 60,
        "next_at": T0,
    }
    vals.update(values)
    return env["queue.cron"].create(vals)


def cron_jobs(cron):
    return cron.env["queue.job"].search([("cron_id", "=", cron.id)], order="cron_occurrence")


@pytest.mark.parametrize(
    ("values", "error", "message"),
    [
        ({"cron": "0 25 * * *", "interval": None}, ValueError, "invalid cron expression"),
        ({"tz": "Europe/Atlantis"}, ValueError, "unknown time zone 'Europe/Atlantis'"),
        ({"interval": 0}, ValueError, "interval must be a whole number of seconds > 0"),
        ({"interval": -1}, ValueError, "got -1"),
        ({"model_name": "no.such"}, ValueError, "unknown model 'no.such'"),
        ({"method_name": "nope"}, UnknownMethodError, "has no method 'nope'"),
        ({"args": [object()]}, TypeError, r"args\[0\]"),
        ({"kwargs": {"when": {1, 2}}}, TypeError, r"kwargs\['when'\]|kwargs\[\"when\"\]"),
        ({"channel": "bad channel"}, ValueError, "channel must be"),
        ({"priority": "high"}, TypeError, "priority must be an int"),
        ({"max_retries": -1}, ValueError, "max_retries must be an int from 0"),
        ({"timeout": -2}, ValueError, "timeout must be a finite number of seconds >= 0"),
        ({"catch_up": "sometimes"}, ValueError, "catch_up must be one of latest, all, skip"),
        ({"max_catch_up": 0}, ValueError, "max_catch_up must be an int >= 1"),
    ],
)
def test_bad_cron_is_refused_at_create_and_nothing_is_written(qenv, values, error, message):
    with pytest.raises(error, match=message):
        make_cron(qenv, **values)
    assert qenv["queue.cron"].search_count([]) == 0


def test_bad_write_is_refused_and_the_row_is_unchanged(qenv):
    cron = make_cron(qenv)
    with pytest.raises(ValueError, match="invalid cron expression"):
        cron.write({"cron": "every day"})
    with pytest.raises(ValueError, match="unknown time zone"):
        cron.write({"tz": "Nowhere/Land"})
    cron.invalidate_recordset()
    assert (cron.interval, cron.cron or None, cron.tz) == (60, None, "UTC")


def test_switching_to_a_cron_expression_clears_the_interval_and_reschedules(qenv):
    cron = make_cron(qenv)
    cron.write({"cron": "0 3 * * *", "tz": "Europe/Brussels"})
    assert not cron.interval
    assert cron.next_at.minute == 0 and cron.next_at.hour in (1, 2)  # 03:00 Brussels


def test_each_occurrence_becomes_one_job_carrying_its_cron_and_time(qenv):
    cron = make_cron(qenv)
    assert cron._fire(T0 + timedelta(seconds=1)) == {"enqueued": 1, "skipped": 0}
    assert cron._fire(T0 + timedelta(seconds=2)) == {"enqueued": 0, "skipped": 0}
    (job,) = cron_jobs(cron)
    assert (job.cron_id, job.cron_occurrence) == (cron, T0)
    assert (job.model_name, job.method_name, job.name) == ("res.partner", "record", "digest")
    assert cron.next_at == T0 + timedelta(seconds=60)
    assert (cron.last_job_id, cron.last_enqueued_at) == (job, T0 + timedelta(seconds=1))


def test_the_unique_key_refuses_a_second_job_for_one_occurrence(qenv):
    cron = make_cron(qenv)
    cron._fire(T0)
    # an operator sets next_at back: the occurrence already has its job
    cron._store({"next_at": T0})
    assert cron._fire(T0 + timedelta(seconds=5)) == {"enqueued": 0, "skipped": 0}
    assert len(cron_jobs(cron)) == 1


def test_a_worker_that_lost_the_race_for_next_at_enqueues_nothing(qenv):
    cron = make_cron(qenv)
    stale = qenv["queue.cron"].browse(cron.id)
    stale.next_at  # read before the other worker moves it  # noqa: B018
    qenv.cr.execute(
        "UPDATE queue_cron SET next_at = %s WHERE id = %s", [T0 + timedelta(minutes=1), cron.id]
    )
    assert stale._fire(T0 + timedelta(seconds=1)) == {"enqueued": 0, "skipped": 0}
    assert not cron_jobs(cron)


def test_job_options_and_arguments_reach_the_job(qenv, partner):
    cron = make_cron(
        qenv,
        record_ids=[partner.id],
        args=["nightly"],
        kwargs={"value": 7},
        channel="reports",
        priority=3,
        max_retries=2,
        timeout=30,
        description="Nightly digest",
    )
    cron._fire(T0)
    (job,) = cron_jobs(cron)
    assert (job.channel, job.priority, job.max_retries, job.timeout) == ("reports", 3, 2, 30)
    assert job.name == "Nightly digest"
    assert job.record_ids == [partner.id]
    job.run_now()
    job.invalidate_recordset()
    assert (job.state, job.exc_message) == ("done", False)


def test_paused_cron_enqueues_nothing(qenv):
    cron = make_cron(qenv, active=False)
    assert qenv["queue.cron"]._run_due(T0 + timedelta(hours=1)) == {"enqueued": 0, "skipped": 0}
    cron.write({"active": True})
    cron.write({"active": False})
    assert qenv["queue.cron"]._run_due(T0 + timedelta(days=1)) == {"enqueued": 0, "skipped": 0}
    assert not cron_jobs(cron)


def test_resumed_cron_does_not_owe_what_fell_while_paused(qenv):
    cron = make_cron(qenv, active=False)
    cron.write({"active": True})
    assert cron.next_at > datetime.utcnow() - timedelta(minutes=1)


def test_run_now_enqueues_one_job_outside_the_schedule_without_moving_next_at(qenv):
    cron = make_cron(qenv)
    job = cron.run_now()
    assert job.cron_id == cron and not job.cron_occurrence
    assert cron.next_at == T0
    assert cron.last_job_id == job
    second = cron.run_now()
    assert second != job and len(cron_jobs(cron)) == 2


FIVE_MIN = timedelta(minutes=5)


@pytest.mark.parametrize(
    ("catch_up", "max_catch_up", "expected"),
    [
        ("latest", 100, [T0 + 10 * FIVE_MIN]),
        ("all", 100, [T0 + m * FIVE_MIN for m in range(11)]),
        ("all", 4, [T0 + m * FIVE_MIN for m in range(7, 11)]),
        ("skip", 100, []),
    ],
)
def test_catch_up_after_a_downtime_of_ten_occurrences(qenv, catch_up, max_catch_up, expected):
    cron = make_cron(qenv, interval=300, catch_up=catch_up, max_catch_up=max_catch_up)
    # no worker ran from T0 to 90 s after T0 + 50 min: 11 occurrences were missed
    now = T0 + 10 * FIVE_MIN + timedelta(seconds=90)
    counters = qenv["queue.cron"]._run_due(now)
    assert [job.cron_occurrence for job in cron_jobs(cron)] == expected
    assert counters == {"enqueued": len(expected), "skipped": 11 - len(expected)}
    assert cron.skipped_count == 11 - len(expected)
    assert cron.next_at == T0 + 11 * FIVE_MIN


def test_skip_still_enqueues_the_occurrence_that_is_on_time(qenv):
    cron = make_cron(qenv, catch_up="skip")
    qenv["queue.cron"]._run_due(T0 + timedelta(minutes=10, seconds=2))
    assert [job.cron_occurrence for job in cron_jobs(cron)] == [T0 + timedelta(minutes=10)]


def test_no_overlap_skips_occurrences_while_the_previous_job_is_not_finished(qenv):
    cron = make_cron(qenv, no_overlap=True)
    cron._fire(T0)
    (first,) = cron_jobs(cron)
    # the job is slower than the interval: still pending, then started
    assert cron._fire(T0 + timedelta(minutes=1)) == {"enqueued": 0, "skipped": 1}
    qenv.cr.execute("UPDATE queue_job SET state = 'started' WHERE id = %s", [first.id])
    first.invalidate_recordset()
    assert cron._fire(T0 + timedelta(minutes=2)) == {"enqueued": 0, "skipped": 1}
    assert cron.skipped_count == 2
    qenv.cr.execute("UPDATE queue_job SET state = 'done' WHERE id = %s", [first.id])
    first.invalidate_recordset()
    assert cron._fire(T0 + timedelta(minutes=3)) == {"enqueued": 1, "skipped": 0}
    assert [j.cron_occurrence for j in cron_jobs(cron)] == [T0, T0 + timedelta(minutes=3)]


def test_next_due_is_the_earliest_active_next_at(qenv):
    make_cron(qenv, name="a", next_at=T0 + timedelta(minutes=5))
    make_cron(qenv, name="b", next_at=T0 + timedelta(minutes=2))
    make_cron(qenv, name="c", next_at=T0, active=False)
    assert qenv["queue.cron"]._next_due() == T0 + timedelta(minutes=2)


def test_explain_says_which_occurrence_a_job_is(qenv):
    from job_worker.queue.explain import explain

    cron = make_cron(qenv)
    cron._fire(T0)
    (job,) = cron_jobs(cron)
    reasons = explain(qenv, job.id)
    assert reasons[-1].code == "periodic"
    assert reasons[-1].message == (
        f"job {job.id} is the occurrence of 2026-01-05 12:00:00 UTC of periodic job {cron.id} (digest)"
    )
    by_hand = cron.run_now()
    assert "enqueued by hand (run now)" in explain(qenv, by_hand.id)[-1].message
    plain = qenv["res.partner"].with_delay().record()
    assert all(reason.code != "periodic" for reason in explain(qenv, plain.id))
