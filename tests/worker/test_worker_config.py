"""A running worker picks up the cluster settings changed with ``job-worker config set``
within ``config.REFRESH_SECONDS``, without a restart."""

from __future__ import annotations

from datetime import timedelta

import pytest
from worker_helpers import (
    FAST,
    enqueue,
    query,
    sample_until,
    set_config,
    states,
    wait_for,
    worker_ready,
)

from job_worker.monitoring import stats
from job_worker.queue import config

#: how long after a change a running worker may take to act on it, with a margin for a
#: loaded machine
PICKED_UP_WITHIN = config.REFRESH_SECONDS + 10


@pytest.mark.timeout(90)
def test_a_changed_default_limit_reaches_a_running_worker(registry, start_worker):
    enqueue(registry, "sleep_then_record", "slow-{i}", 30, count=4, channel="bulk")
    worker = start_worker("--concurrency", "3", *FAST)
    wait_for(lambda: states(registry).get("started") == 1, 30, "one job started")

    set_config(registry, "default_limit", 3)

    wait_for(
        lambda: states(registry).get("started") == 3,
        PICKED_UP_WITHIN,
        "three jobs of the channel running at once",
    )
    assert "cluster settings changed: default_limit 1 -> 3" in worker.log()


@pytest.mark.timeout(90)
def test_a_changed_retention_reaches_a_running_worker(registry, start_worker):
    [old] = enqueue(registry, "record", "old")
    query(
        registry,
        "UPDATE queue_job SET state = 'done', write_date = %s WHERE id = %s",
        (stats.now() - timedelta(days=3), old),
    )
    worker = start_worker("--concurrency", "1", *FAST)
    wait_for(lambda: worker_ready(registry, worker), 30, "the worker")
    [recent] = enqueue(registry, "record", "recent")
    wait_for(lambda: states(registry).get("done") == 2, 30, "the recent job done")
    # kept under the default retention of 30 days
    assert query(registry, "SELECT 1 FROM queue_job WHERE id = %s", (old,)) == [(1,)]

    set_config(registry, "retention_days", 2)

    wait_for(
        lambda: not query(registry, "SELECT 1 FROM queue_job WHERE id = %s", (old,)),
        PICKED_UP_WITHIN,
        "the job done 3 days ago deleted",
    )
    assert query(registry, "SELECT id FROM queue_job") == [(recent,)]


@pytest.mark.timeout(90)
def test_worker_heartbeats_within_a_stale_window_shorter_than_its_interval(registry, start_worker):
    # the worker tests' databases have a 3 s stale window; this worker asks for 10 s. The
    # job outlives the stale window (by 2 s): heartbeats 10 s apart would age past 3 s
    # while it runs; the maintenance looks for stale jobs every 0.5 s meanwhile
    [job] = enqueue(registry, "sleep_then_record", "long", 5)
    worker = start_worker(
        "--concurrency",
        "1",
        "--heartbeat-interval",
        "10",
        "--maintenance-interval",
        "0.5",
        "--max-backoff",
        "1",
    )
    wait_for(lambda: states(registry).get("started") == 1, 30, "the job started")

    def heartbeat_age() -> float:
        rows = query(
            registry, "SELECT heartbeat FROM queue_job WHERE id = %s AND state = 'started'", (job,)
        )
        if not rows:
            return 0.0
        return (stats.now() - stats.as_datetime(rows[0][0])).total_seconds()

    ages = sample_until(heartbeat_age, lambda: states(registry).get("done") == 1, 30, "the job")
    assert max(ages) < 3, ages
    # never taken for a job of a dead worker
    assert query(registry, "SELECT attempts, exc_name FROM queue_job WHERE id = %s", (job,)) == [
        (0, None)
    ]
    assert "stale_seconds 3 is not above --heartbeat-interval 10" in worker.log()
