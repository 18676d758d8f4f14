"""Periodic jobs with real workers: each occurrence becomes exactly one job, however
many workers run, and none is missed."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from itertools import pairwise
from urllib.parse import quote

import psycopg
import pytest
from worker_helpers import (
    FAST,
    enqueue,
    is_postgres,
    query,
    set_limit,
    wait_for,
    worker_ready,
)

from job_worker import SUPERUSER_ID, Registry, api
from job_worker.db import jobstore
from job_worker.worker.scheduler import MIN_REREAD, REFRESH_SECONDS, Scheduler
from job_worker.worker.services import DatabaseServices
from job_worker.worker.settings import WorkerSettings

#: how long the cron runs, one occurrence a second: each occurrence is a race of the
#: three workers' schedulers, so ten of them race ten times (30 s bought nothing more)
SECONDS = 10


def make_cron(registry: Registry, **values) -> int:
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        vals = {"name": "every second", "model_name": "workerapp.task", "method_name": "noop"}
        return env["queue.cron"].create({**vals, **values}).id


def set_active(registry: Registry, cron_id: int, active: bool) -> None:
    with registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["queue.cron"].browse(cron_id).write(
            {"active": active}
        )


def as_datetime(value):
    return datetime.fromisoformat(value) if isinstance(value, str) else value


@pytest.fixture
def other_schema(request, db_url):
    """PostgreSQL: a second schema on the same server, with workers of its own."""
    if not is_postgres(db_url):
        yield None
        return
    pg_database = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_database, autocommit=True) as cnx:
        cnx.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in pg_database else "?"
    yield f"{pg_database}{sep}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(pg_database, autocommit=True) as cnx:
        cnx.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_three_workers_make_one_job_per_occurrence_of_a_cron_every_second(
    registry, start_worker, make_registry, other_schema
):
    workers = [start_worker("--concurrency", "2", *FAST) for _ in range(3)]
    other = None
    if other_schema is not None:
        other = make_registry(["workerapp"], url=other_schema)
        workers.append(start_worker("--concurrency", "1", *FAST, url=other_schema))
    wait_for(lambda: all(worker_ready(registry, w) for w in workers[:3]), 60, "workers started")
    if other is not None:
        wait_for(lambda: worker_ready(other, workers[3]), 60, "the other schema's worker")
    cron_id = make_cron(registry, interval=1, catch_up="all")
    wait_for(
        lambda: (
            query(registry, "SELECT count(*) FROM queue_job WHERE state = 'done'")[0][0] >= SECONDS
        ),
        SECONDS + 60,
        f"{SECONDS} occurrences run",
    )
    set_active(registry, cron_id, False)
    rows = [
        (cron, as_datetime(occurrence), as_datetime(created))
        for cron, occurrence, created in query(
            registry,
            "SELECT cron_id, cron_occurrence, create_date FROM queue_job ORDER BY cron_occurrence",
        )
    ]
    occurrences = [row[1] for row in rows]
    assert {row[0] for row in rows} == {cron_id}
    assert len(occurrences) == len(set(occurrences)) >= SECONDS  # exactly one job each
    first = occurrences[0]
    # none missed: one job for every second from the first occurrence to the last
    assert occurrences == [first + timedelta(seconds=i) for i in range(len(occurrences))]
    lags = sorted((created - occurrence).total_seconds() for _c, occurrence, created in rows)
    assert lags[len(lags) // 2] < 1.0, lags  # enqueued within a second, typically
    if other is not None:  # the other schema's worker saw none of these crons
        assert query(other, "SELECT count(*) FROM queue_job")[0][0] == 0
    wait_for(lambda: query(registry, "SELECT count(*) FROM queue_worker"), 5, "workers listed")
    # paused: no new occurrence becomes a job
    count = len(rows)
    wait_for(
        lambda: query(registry, "SELECT count(*) FROM queue_job WHERE state != 'done'")[0][0] == 0,
        30,
        "the last jobs done",
    )
    assert query(registry, "SELECT count(*) FROM queue_job")[0][0] == count


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_no_overlap_skips_occurrences_while_a_slower_job_runs(registry, start_worker):
    set_limit(registry, "root", 4)  # the channel would let several run at once
    workers = [start_worker("--concurrency", "2", *FAST) for _ in range(2)]
    wait_for(lambda: all(worker_ready(registry, w) for w in workers), 60, "workers started")
    # every second, a job that takes 2.5 s: without no_overlap, two or three would run at once
    cron_id = make_cron(
        registry,
        name="slow",
        method_name="sleep_then_record",
        args=["slow", 2.5],
        interval=1,
        no_overlap=True,
    )
    wait_for(
        lambda: query(registry, "SELECT count(*) FROM workerapp_effect")[0][0] >= 3,
        60,
        "three runs of the slow job",
    )
    set_active(registry, cron_id, False)
    wait_for(
        lambda: query(registry, "SELECT count(*) FROM queue_job WHERE state != 'done'")[0][0] == 0,
        30,
        "the last job done",
    )
    runs = sorted(query(registry, "SELECT started, ended FROM workerapp_effect"))
    assert all(ended <= next_start for (_s, ended), (next_start, _e) in pairwise(runs))
    [(skipped,)] = query(registry, "SELECT skipped_count FROM queue_cron WHERE id = %s", [cron_id])
    assert skipped >= len(runs) - 1  # at least one occurrence skipped while each job ran


def test_scheduler_wakes_for_the_earliest_occurrence_and_looks_again_on_change(registry):
    store = jobstore.for_backend(registry.backend)
    scheduler = Scheduler("test")
    scheduler.tick(100.0, registry.cursor, store)  # monotonic clock of the worker: fixed
    assert scheduler.wake_at == 100.0 + REFRESH_SECONDS  # no cron: the safety-net look
    assert not scheduler.due(100.1)
    with registry.cursor() as cr:
        soon = store.now(cr) + timedelta(seconds=2)
    cron_id = make_cron(registry, interval=60, next_at=soon)
    scheduler.changed()  # what a NOTIFY or a data_version change does
    assert scheduler.next_timer() == 100.0 + MIN_REREAD
    scheduler.tick(100.0 + MIN_REREAD, registry.cursor, store)
    assert 100.0 + MIN_REREAD + 1.0 < scheduler.wake_at <= 100.0 + MIN_REREAD + 2.0
    with registry.cursor() as cr:
        cr.execute(
            "UPDATE queue_cron SET next_at = %s WHERE id = %s",
            [soon - timedelta(seconds=3), cron_id],
        )
    scheduler.tick(scheduler.wake_at, registry.cursor, store)
    assert scheduler.enqueued == 1
    assert query(registry, "SELECT count(*) FROM queue_job WHERE cron_id = %s", [cron_id]) == [(1,)]


def test_a_wake_up_for_jobs_leaves_the_crons_alone_and_a_cron_change_is_read_at_once(
    registry, db_url
):
    """PostgreSQL: an enqueue's wake-up claims, without reading the periodic jobs again
    (a round trip of the supervisor at every wake-up of a busy queue); a cron made
    elsewhere still wakes the scheduler, read within MIN_REREAD. SQLite's poll cannot
    tell the two apart: any change is read."""
    settings = WorkerSettings(databases=(db_url,), modules=("workerapp",))
    services = DatabaseServices(0, db_url, settings, "crons:1:a")
    scheduler, producer = services.scheduler, services.producer
    try:
        assert services.ensure_started(time.monotonic())
        services.tick(time.monotonic(), [])  # the first read of the crons: none
        assert not scheduler.stale and scheduler.enqueued == 0
        assert producer.claim(time.monotonic(), 1) == []  # nothing: asleep until woken
        assert not producer.woken

        [job_id] = enqueue(registry, "noop")
        wait_for(lambda: _woken(services) and producer.woken, 5, "the enqueue's wake-up")
        assert scheduler.stale is not is_postgres(db_url)
        assert [job.id for job in producer.claim(time.monotonic(), 1)] == [job_id]

        scheduler.stale = False
        with registry.cursor() as cr:
            soon = jobstore.for_backend(registry.backend).now(cr) + timedelta(seconds=1)
        make_cron(registry, interval=60, next_at=soon)
        wait_for(lambda: _woken(services) and scheduler.stale, 5, "the cron's wake-up")
        now = time.monotonic()
        assert scheduler.next_timer() <= now + MIN_REREAD
        services.tick(scheduler.next_timer(), [])
        assert not scheduler.stale and scheduler.wake_at <= now + MIN_REREAD + 1.0
        wait_for(
            lambda: services.tick(scheduler.wake_at, []) is not None and scheduler.enqueued == 1,
            5,
            "the cron's first occurrence",
        )
    finally:
        services.stop()


def _woken(services: DatabaseServices) -> bool:
    """Handle what the listener received, as the supervisor does when its descriptor is
    readable; true so that a wait can go on to check what it changed."""
    services.on_wakeup_fd(time.monotonic())
    return True
