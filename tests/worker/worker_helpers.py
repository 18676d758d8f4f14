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


def begun(worker: WorkerProcess) -> int:
    """Jobs whose code the worker's executors began: its ``job.started`` lines (the
    worker runs with ``--log-level debug``). A job ``started`` in the database may not
    have begun yet, and a stop gives such a job back to pending."""
    return worker.log().count("job.started:")


def unfinished(registry: Registry, limit: int = 10) -> list[tuple]:
    """The first jobs not done, with who holds them: what a hung drain's failure shows."""
    return query(
        registry,
        "SELECT id, state, worker_id, attempts, started_at, heartbeat FROM queue_job"
        " WHERE state <> 'done' ORDER BY id LIMIT %s",
        (limit,),
    )


class WorkerProcess:
    """A ``job-worker worker`` subprocess; with ``new_session``, the leader of a session
    and process group of its own, which receives a signal the way systemd, supervisord
    (``stopasgroup``) and Ctrl-C send it: to every process of the worker at once."""

    def __init__(self, url: str, args: list[str], log: Path, new_session: bool = False):
        self.log_path = log
        self.new_session = new_session
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
            start_new_session=new_session,
        )
        self.pid = self.proc.pid

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signum)

    def signal_group(self, signum: int) -> None:
        """``signum`` to every process of its process group (it leads it: pgid = pid)."""
        assert self.new_session, "only a worker started in a session of its own"
        os.killpg(self.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def executor_pids(self) -> list[int]:
        """Executor processes: children of its fork server (a child of the worker)."""
        pids = []
        for child in _children(self.pid):
            pids.extend(_children(child))
        return pids

    def fork_server(self) -> int | None:
        """The process its executors are forked from."""
        for child in _children(self.pid):
            try:
                if b"multiprocessing.forkserver" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return child
            except OSError:
                pass
        return None

    def descendants(self) -> list[int]:
        """Every process it started, and theirs (fork server, executors, resource tracker)."""
        found, todo = [], [self.pid]
        while todo:
            children = _children(todo.pop())
            found.extend(children)
            todo.extend(children)
        return found

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.new_session:
            try:  # whatever is left of its group, the leader included
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
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


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def signal_dispositions(pid: int) -> dict[str, set[int]]:
    """The signals process ``pid`` blocks (``SigBlk``), ignores (``SigIgn``) and catches
    (``SigCgt``), as the kernel reports them."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("SigBlk", "SigIgn", "SigCgt"):
            bits = int(value, 16)
            found[key] = {n for n in range(1, 65) if bits >> (n - 1) & 1}
    return found


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
    registry: Registry,
    channel: str,
    limit: int,
    rate_limit: float | None = None,
    *,
    rates: str | None = None,
) -> None:
    with registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["queue.limit"].set_limit(
            channel, limit, rate_limit, rates=rates
        )


def worker_ready(registry: Registry, worker: WorkerProcess) -> bool:
    return bool(query(registry, "SELECT 1 FROM queue_worker WHERE pid = %s", (worker.pid,)))


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")
