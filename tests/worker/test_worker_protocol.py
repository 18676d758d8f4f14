"""The supervisor <-> executor messages and the shared backoff (in-process, no database)."""

from __future__ import annotations

import logging
import pickle

import pytest

from job_worker.db.jobstore import ClaimedJob
from job_worker.exceptions import RetryableJobError
from job_worker.worker.backoff import FAILED, MAX_BACKOFF, MIN_BACKOFF, Backoff
from job_worker.worker.database import Database
from job_worker.worker.protocol import (
    Began,
    Drain,
    FailureReport,
    Finished,
    JobOutcome,
    Outcome,
    Ready,
    Run,
    SessionOpened,
    Stop,
    Wake,
)
from job_worker.worker.settings import WorkerSettings

pytestmark = pytest.mark.timeout(10)


def test_every_message_crosses_a_pipe_unchanged():
    report = FailureReport.of(RetryableJobError("later", seconds=2), "tb")
    job = ClaimedJob(7, "uuid-7", "root", 10, None, 0.0, {"model_name": "m"})
    messages = [
        Run(0, [job]),
        Drain(),
        Stop(),
        Ready(42),
        SessionOpened(1, 99),
        Began(1, 7),
        Wake(2),
        Finished(
            0,
            (
                JobOutcome(1, Outcome.DONE),
                JobOutcome(2, Outcome.FAILED, "failed"),
                JobOutcome(3, Outcome.LOST),
                JobOutcome(4, Outcome.SKIPPED),
                JobOutcome(5, Outcome.UNRECORDED, report=report),
            ),
        ),
    ]
    for message in messages:
        copy = pickle.loads(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
        assert copy == message and type(copy) is type(message)
    outcome = pickle.loads(pickle.dumps(Outcome.UNRECORDED))
    assert outcome is Outcome.UNRECORDED  # the member itself, comparable with `is`


def test_messages_are_frozen_and_hold_no_dict():
    message = JobOutcome(1, Outcome.DONE)
    assert not hasattr(message, "__dict__")
    with pytest.raises(AttributeError):
        message.job_id = 2  # type: ignore[misc]


def test_a_connection_lost_is_reported_as_retryable_in_a_second():
    report = FailureReport.connection_lost(OSError("reset"), "tb")
    rebuilt = report.exception()
    assert isinstance(rebuilt, RetryableJobError) and rebuilt.seconds == 1.0
    assert "database connection lost while the job ran: OSError: reset" in str(rebuilt)


def test_the_backoff_doubles_to_its_cap_and_logs_an_outage_once(caplog):
    backoff = Backoff("db")
    caplog.set_level(logging.DEBUG, logger="job_worker.worker.backoff")
    now = 100.0
    waits = []
    for _ in range(9):
        backoff.failed(now, "claim", OSError("down"))
        waits.append(round(backoff.down_until - now, 3))
        assert not backoff.available(now) and backoff.available(backoff.down_until)
    assert waits == [MIN_BACKOFF, 0.2, 0.4, 0.8, 1.6, 3.2, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]
    backoff.succeeded(now + 30)
    events = [record.event for record in caplog.records]  # type: ignore[attr-defined]
    assert events == ["db.unavailable", *["db.retry"] * 8, "db.recovered"]
    assert backoff.available(now + 30) and backoff.failing_since is None
    backoff.failed(now + 31, "heartbeat", OSError("down again"))
    assert backoff.down_until == now + 31 + MIN_BACKOFF  # a new outage starts small


def test_a_guarded_operation_that_fails_holds_every_service_of_the_database_back():
    db = Database(0, "sqlite:///x.db", WorkerSettings(databases=("sqlite:///x.db",)), "w")

    def fail() -> None:
        raise OSError("database is locked")

    assert db.guarded(10.0, "claim", fail) is FAILED
    assert not db.available(10.0) and db.available(10.0 + MIN_BACKOFF)
    assert db.guarded(11.0, "heartbeat", lambda: 3) == 3
    assert db.backoff.delay == 0.0
