"""Flow control (PRODUCT.md 12) on real ``job-worker worker`` processes: 4 workers of 4
executors each on one database, which is sampled while they run and read afterwards.

- weights: the running weight of a channel never passes its limit, and a heavy job is
  not starved by a stream of light ones;
- stacked rate windows: no window of 1 s holds more than 5 starts, none of 3 s more
  than 12;
- fair share: a key with 20 jobs is served within the first 40 starts behind a key
  with 5,000.

Times are the database's (started_at, completed_at): the invariants are checked on
what the workers wrote, not on when the test happened to look.
"""

from __future__ import annotations

import bisect
from datetime import datetime, timedelta

import pytest
from worker_helpers import FAST, query, sample_until, set_limit, wait_for, worker_ready

from job_worker import SUPERUSER_ID, api

pytestmark = pytest.mark.timeout(120)

WORKERS = 4
EXECUTORS = 4


def _dt(value) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _start_workers(registry, start_worker) -> list:
    workers = [start_worker("--concurrency", str(EXECUTORS), *FAST) for _ in range(WORKERS)]
    wait_for(lambda: all(worker_ready(registry, w) for w in workers), 30, "workers started")
    return workers


def _enqueue(registry, method: str, *args, count: int = 1, **options) -> list[int]:
    with registry.cursor() as cr:
        task = api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"]
        return [getattr(task.with_delay(**options), method)(*args).id for _ in range(count)]


def _most_in_any_window(starts: list[datetime], seconds: float) -> int:
    """The most starts any half-open window [t, t + seconds) holds (the busiest one
    begins at a start)."""
    starts = sorted(starts)
    span = timedelta(seconds=seconds)
    return max(
        (bisect.bisect_left(starts, start + span) - i for i, start in enumerate(starts)),
        default=0,
    )


def test_running_weight_never_passes_the_limit_and_a_heavy_job_is_not_starved(
    registry, start_worker
):
    set_limit(registry, "video", 10)
    _enqueue(registry, "sleep_then_record", "light", 0.3, count=20, channel="video")
    [heavy] = _enqueue(registry, "sleep_then_record", "heavy", 0.3, channel="video", weight=8)
    _start_workers(registry, start_worker)

    def running_weight() -> int:
        rows = query(
            registry,
            "SELECT coalesce(sum(weight), 0) FROM queue_job"
            " WHERE state = 'started' AND channel = 'video'",
        )
        _enqueue(registry, "sleep_then_record", "light", 0.3, count=2, channel="video")
        return int(rows[0][0])

    def heavy_done() -> bool:
        return (
            query(registry, "SELECT state FROM queue_job WHERE id = %s", (heavy,))[0][0] == "done"
        )

    # a stream of light jobs (two more at every look) while the heavy one waits its turn
    samples = sample_until(running_weight, heavy_done, 60, "the heavy job to run")
    assert max(samples) <= 10
    assert max(samples) > 2, "the light jobs never filled the channel: nothing was tested"

    # what the workers wrote: at every start, the jobs running then weigh at most 10
    runs = [
        (_dt(started), _dt(completed) if completed else None, weight)
        for started, completed, weight in query(
            registry,
            "SELECT started_at, completed_at, weight FROM queue_job"
            " WHERE channel = 'video' AND started_at IS NOT NULL",
        )
    ]
    for moment, _end, _weight in runs:
        running = sum(w for s, e, w in runs if s <= moment and (e is None or e > moment))
        assert running <= 10, f"{running} of weight running at {moment}"
    created, started = query(
        registry, "SELECT create_date, started_at FROM queue_job WHERE id = %s", (heavy,)
    )[0]
    # the light jobs ahead of it (20 of 0.3 s, 10 at once) and those running: a few seconds
    assert _dt(started) - _dt(created) < timedelta(seconds=10)


def test_stacked_rate_windows_each_hold_across_workers(registry, start_worker):
    set_limit(registry, "api", 100, rates="5/s 12/3s")
    _enqueue(registry, "noop", count=48, channel="api")
    _start_workers(registry, start_worker)
    wait_for(
        lambda: query(registry, "SELECT count(*) FROM queue_job WHERE state = 'done'")[0][0] == 48,
        60,
        "48 rate-limited jobs done",
    )
    starts = [
        _dt(row[0])
        for row in query(registry, "SELECT started_at FROM queue_job WHERE channel = 'api'")
    ]
    assert max(starts) - min(starts) >= timedelta(seconds=10)  # 12 every 3 s: ~11 s
    assert _most_in_any_window(starts, 1.0) <= 5
    assert _most_in_any_window(starts, 3.0) <= 12
    # the windows stack: a burst of 5 in a second is allowed, not one start every 250 ms
    assert _most_in_any_window(starts, 1.0) >= 4


def test_a_small_fair_key_is_served_within_the_first_starts(registry, start_worker):
    set_limit(registry, "shared", 2)
    _enqueue(registry, "noop", count=5000, channel="shared", fair_key="A")
    _enqueue(registry, "noop", count=20, channel="shared", fair_key="B")
    _start_workers(registry, start_worker)
    wait_for(
        lambda: (
            query(
                registry, "SELECT count(*) FROM queue_job WHERE fair_key = 'B' AND state = 'done'"
            )[0][0]
            == 20
        ),
        60,
        "the 20 jobs of key B done",
    )
    # jobs of one claim start at one instant: the last job of B is start number N when
    # fewer than N jobs started before it
    [(last_small,)] = query(registry, "SELECT max(started_at) FROM queue_job WHERE fair_key = 'B'")
    [(before,)] = query(
        registry, "SELECT count(*) FROM queue_job WHERE started_at < %s", (last_small,)
    )
    assert before < 40, f"{before} jobs started before the last job of key B"
