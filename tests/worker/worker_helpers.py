"""Helpers of the worker's tests: real ``job-worker worker`` processes, and waiting on
the database with a deadline (never a fixed sleep)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from job_worker import SUPERUSER_ID, Registry, api

APPS = Path(__file__).resolve().parent.parent / "apps"

#: fast heartbeats, short backoffs: the guarantees, not the defaults, are tested (the
#: fast reclaim is the database's stale window: :data:`FAST_STALE_SECONDS`)
FAST = [
    "--heartbeat-interval",
    "0.5",
    "--maintenance-interval",
    "0.5",
    "--max-backoff",
    "1",
]


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what} (last: {value!r})"
            )
        time.sleep(interval)  # polling the database between looks, not synchronising


def sample_until(
    sample: Callable[[], Any],
    done: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.02,
) -> list[Any]:
    """Take ``sample()`` every ``interval`` until ``done()``; fail after ``timeout``."""
    samples = []
    deadline = time.monotonic() + timeout
    while not done():
        samples.append(sample())
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # the sampling rate, not a synchronisation
    return samples


#: the stale window of the worker tests' databases (a cluster setting, see ``set_config``)
FAST_STALE_SECONDS = 3


def set_config(registry: Registry, key: str, value: Any) -> None:
    """Set a cluster setting (what ``job-worker config set`` does)."""
    with registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["queue.config"].set_value(key, value)


def query(registry: Registry, sql: str, params: Any = ()) -> list[tuple]:
    # reads never wait for SQLite's write lock (a job may hold it for long)
    readonly = sql.lstrip().upper().startswith("SELECT")
    with registry.cursor(readonly=readonly) as cr:
        cr.execute(sql, params)
        return cr.fetchall() if cr.description else []


def states(registry: Registry) -> dict[str, int]:
    return dict(query(registry, "SELECT state, count(*) FROM queue_job GROUP BY state"))


class WorkerProcess:
    """A ``job-worker worker`` subprocess."""

    def __init__(self, url: str, args: list[str], log: Path):
        self.log_path = log
        self._log = log.open("wb")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(APPS), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        env.pop("QUEUE_JOB__NO_DELAY", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "job_worker",
                "worker",
                "--database",
                url,
                "--load",
                "workerapp",
                *args,
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def executor_pids(self) -> list[int]:
        """Executor processes: children of its fork server (a child of the worker)."""
        pids = []
        for child in _children(self.pid):
            pids.extend(_children(child))
        return pids

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def enqueue(
    registry: Registry, method: str, *args: Any, count: int = 1, **options: Any
) -> list[int]:
    """Enqueue ``count`` jobs of workerapp.task in one transaction; returns their ids."""
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        task = env["workerapp.task"]
        ids = []
        for i in range(count):
            call_args = [a.format(i=i) if isinstance(a, str) else a for a in args]
            ids.append(getattr(task.with_delay(**options), method)(*call_args).id)
        return ids


def set_limit(
    registry: Registry, channel: str, limit: int, rate_limit: float | None = None
) -> None:
    with registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["queue.limit"].set_limit(channel, limit, rate_limit)


def worker_ready(registry: Registry, worker: WorkerProcess) -> bool:
    return bool(query(registry, "SELECT 1 FROM queue_worker WHERE pid = %s", (worker.pid,)))


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")
