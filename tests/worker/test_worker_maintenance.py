"""The elected maintenance runs beside the supervisor's loop: claims never wait for it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from worker_helpers import enqueue, query, set_config, wait_for

from job_worker.orm.fields import Datetime
from job_worker.queue.models.maintenance import QueueMaintenance
from job_worker.worker.services import DatabaseServices
from job_worker.worker.settings import WorkerSettings

pytestmark = pytest.mark.timeout(90)

#: how long the slowed maintenance waits to be released (the test releases it far sooner)
HELD_AT_MOST = 30.0


@pytest.fixture
def slow_maintenance(monkeypatch):
    """Maintenance that waits at its purge, until released (the stale-job reclaim before
    it has committed: it never holds the write lock meanwhile)."""
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()
    purge = QueueMaintenance._purge_old_jobs

    def held(self, *args):
        entered.set()
        release.wait(HELD_AT_MOST)
        try:
            return purge(self, *args)
        finally:
            finished.set()

    monkeypatch.setattr(QueueMaintenance, "_purge_old_jobs", held)
    yield entered, release, finished
    release.set()


@pytest.fixture
def producer(db_url, registry):
    set_config(registry, "default_limit", 5)
    settings = WorkerSettings(databases=(db_url,), modules=("workerapp",))
    producer = DatabaseServices(0, db_url, settings, "maintainer:1:a")
    yield producer
    producer.stop()


def test_claims_go_on_while_maintenance_runs(registry, producer, slow_maintenance):
    entered, release, finished = slow_maintenance
    ids = enqueue(registry, "noop", count=3)
    assert producer.ensure_started(time.monotonic())
    producer.tick(time.monotonic(), [])  # maintenance is due at once
    assert entered.wait(10), "maintenance did not begin"
    claimed = producer.producer.claim(time.monotonic(), 3)
    assert not finished.is_set(), "the claim waited for the maintenance run to end"
    assert sorted(job.id for job in claimed) == ids
    release.set()
    assert finished.wait(10)
    wait_for(
        lambda: (
            query(registry, "SELECT count(*) FROM queue_job WHERE state = 'started'")[0][0] == 3
        ),
        10,
        "the claimed jobs to stay started",
    )


def test_maintenance_keeps_one_holder_per_database(registry, producer, db_url, slow_maintenance):
    _entered, release, finished = slow_maintenance
    release.set()  # no slowing here: the election is what is tested
    other = DatabaseServices(0, db_url, producer.db.settings, "maintainer:2:b")
    try:
        assert producer.ensure_started(time.monotonic())
        producer.tick(time.monotonic(), [])
        assert finished.wait(10), "the first worker did not run maintenance"
        assert other.ensure_started(time.monotonic())
        assert other.maintenance is not None
        session = other.db.store.session(role="maintenance")  # type: ignore[union-attr]
        try:
            assert other.maintenance.run_once(session) is None  # not elected: nothing done
        finally:
            session.close()
        producer.stop()  # the holder goes away: the role is free again
        session = other.db.store.session(role="maintenance")  # type: ignore[union-attr]
        try:
            if db_url.startswith("sqlite"):  # a lease: free once it expires
                query(registry, "UPDATE queue_lease SET expires_at = '2000-01-01 00:00:00'")
            assert other.maintenance.run_once(session) is not None
        finally:
            session.close()
    finally:
        other.stop()


def _stale_job(registry) -> int:
    """A job started by a worker that died an hour ago."""
    [job_id] = enqueue(registry, "noop")
    query(
        registry,
        "UPDATE queue_job SET state = 'started', worker_id = 'gone:1:x', heartbeat = %s"
        " WHERE id = %s",
        (Datetime.now() - timedelta(hours=1), job_id),
    )
    return job_id


def test_a_run_reclaims_stale_jobs_first_in_a_transaction_of_its_own(
    registry, producer, monkeypatch
):
    first = _stale_job(registry)
    assert producer.ensure_started(time.monotonic())
    assert producer.maintenance is not None and producer.db.store is not None

    def failing(self, settings):
        raise RuntimeError("a later task failed")

    session = producer.db.store.session(role="maintenance")
    try:
        with monkeypatch.context() as patch:
            patch.setattr(QueueMaintenance, "_run_maintenance", failing)
            with pytest.raises(RuntimeError, match="a later task failed"):
                producer.maintenance.run_once(session)
        # the reclaim committed before the task that failed
        assert query(registry, "SELECT state, attempts FROM queue_job WHERE id = %s", (first,)) == [
            ("pending", 1)
        ]
        second = _stale_job(registry)
        counters = producer.maintenance.run_once(session)
    finally:
        session.close()
    assert counters is not None
    assert counters["jobs_reclaimed"] == 1 and counters["jobs_purged"] == 0
    assert query(registry, "SELECT state, exc_name FROM queue_job WHERE id = %s", (second,)) == [
        ("pending", "job_worker.exceptions.WorkerDiedJobError")
    ]
