"""SQLite on a small tmpfs that fills up mid-run: enqueue fails with a clear error naming
the file, the worker backs off, nothing is corrupted, and work resumes once space
returns."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from chaos_helpers import assert_each_job_done_once, wait_quietly
from worker_helpers import FAST, FAST_STALE_SECONDS, query, set_config, set_limit, wait_for

from job_worker import SUPERUSER_ID, Registry, api
from job_worker.exceptions import DatabaseFullError

PADDING = "x" * 1000  # each job's argument: the backlog takes room in the file


def test_a_full_database_file_is_named_in_a_clear_error(tmp_path):
    # SQLite answers "database or disk is full" when a file reaches max_page_count, as
    # when its disk is full: no root needed to see the error the enqueuer gets
    path = tmp_path / "small.db"
    registry = Registry(f"sqlite:///{path}", ["workerapp"])
    try:
        with pytest.raises(DatabaseFullError) as raised, registry.cursor() as cr:
            [(pages,)] = cr.execute("PRAGMA page_count").fetchall()
            cr.execute(f"PRAGMA max_page_count = {pages + 2}")
            task = api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"]
            for i in range(100):
                task.with_delay().record(f"job-{i}-{PADDING}")
        assert str(raised.value).startswith(f"database file {path} is full: ")
        assert query(registry, "SELECT count(*) FROM queue_job") == [(0,)]  # nothing kept
    finally:
        registry.close()


def _enqueue(registry: Registry, first: int, count: int) -> None:
    with registry.cursor() as cr:
        task = api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"]
        for i in range(first, first + count):
            task.with_delay(max_retries=0).record(f"job-{i}-{PADDING}")


def _fill(folder: Path) -> Path:
    """Write a file until the filesystem is full; returns it (removing it frees the room)."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:  # unbuffered: nothing left to write at close
        try:
            while out.write(chunk):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def _done(registry: Registry) -> int:
    return query(registry, "SELECT count(*) FROM queue_job WHERE state = 'done'")[0][0]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_full_disk_fails_enqueue_clearly_and_work_resumes_once_space_returns(
    small_tmpfs, start_worker
):
    path = small_tmpfs / "queue.db"
    url = f"sqlite:///{path}"
    registry = Registry(url, ["workerapp"])
    try:
        set_config(registry, "stale_seconds", FAST_STALE_SECONDS)
        set_limit(registry, "root", 4)
        _enqueue(registry, 0, 300)
        worker = start_worker(url, "--concurrency", "2", *FAST)
        wait_for(lambda: _done(registry) >= 50, 60, "the worker running jobs")
        filler = _fill(small_tmpfs)
        # enqueueing goes on until the file needs room it cannot get
        enqueued = 300
        with pytest.raises(DatabaseFullError) as raised:
            for _ in range(200):
                _enqueue(registry, enqueued, 100)
                enqueued += 100
        message = str(raised.value)
        assert str(path) in message and "full" in message, message
        # the worker, whose writes fail too, backs off and says so; it does not exit
        wait_for(lambda: "db.unavailable" in worker.log(), 60, "the worker backing off")
        wait_quietly(2, still=lambda: worker.proc.poll() is None)  # the disk stays full a while
        assert worker.proc.poll() is None, worker.log()[-2000:]
        # space returns: the filler goes, and the filesystem grows (what it holds now
        # may need more room than the filler left)
        filler.unlink()
        subprocess.run(
            ["mount", "-o", "remount,size=48m", str(small_tmpfs)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        wait_for(lambda: _done(registry) == enqueued, 90, f"{enqueued} jobs done")
        assert_each_job_done_once(registry, enqueued)
        assert worker.proc.poll() is None
        assert query(registry, "PRAGMA integrity_check") == [("ok",)]
    finally:
        registry.close()
        os.sync()
