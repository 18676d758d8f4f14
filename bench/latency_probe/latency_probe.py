"""Timestamps along a job's way to its first line, in the worker's processes.

This folder goes on the worker's ``PYTHONPATH`` in ``bench/bench_latency_segments.py``,
with ``LATENCY_PROBE_DIR`` set: the ``sitecustomize`` beside this module imports it in
every process of the worker (the supervisor, the fork server and the executors it
forks), which then wraps a few of the worker's own steps and appends a
line per job and step to ``<LATENCY_PROBE_DIR>/<pid>.txt``. A job is known by its
first argument, the enqueuer's ``time.time()`` taken before the enqueue call. Without
the variable it does nothing. A step renamed in the worker fails the import loudly:
the probe names the steps it wraps.
"""

from __future__ import annotations

import json
import os
import time

_DIR = os.environ.get("LATENCY_PROBE_DIR")


def _install(directory: str) -> None:
    import psycopg

    import job_worker.worker  # noqa: F401  (the supervisor's modules, in their order)
    from job_worker.db.jobstore import JobStore
    from job_worker.worker.executor import Executor
    from job_worker.worker.pool import ExecutorPool
    from job_worker.worker.producer import Producer

    out: dict[str, int] = {}
    last: dict[str, float] = {"wake": 0.0, "sent": 0.0, "answered": 0.0, "received": 0.0}
    running: list[object] = [None]

    def write(line: str) -> None:
        key = str(os.getpid())  # the executors are forked: a file each
        if key not in out:
            out[key] = os.open(
                os.path.join(directory, f"{key}.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND
            )
        os.write(out[key], (line + "\n").encode())

    def key(job: object) -> float:
        args = json.loads(job.call["args"])  # type: ignore[attr-defined]
        return float(args[0]) if args and isinstance(args[0], (int, float)) else 0.0

    execute = psycopg.Cursor.execute

    def timed_execute(self, *args, **kwargs):  # the last round trip's ends
        last["sent"] = time.time()
        try:
            return execute(self, *args, **kwargs)
        finally:
            last["answered"] = time.time()

    psycopg.Cursor.execute = timed_execute

    on_wakeup_fd = Producer.on_wakeup_fd

    def woken(self):
        last["wake"] = time.time()
        return on_wakeup_fd(self)

    Producer.on_wakeup_fd = woken

    claim = Producer.claim

    def claimed(self, now, wanted):
        jobs = claim(self, now, wanted)
        for job in jobs:
            write(
                f"claim {key(job)!r} {last['wake']:.6f} {last['sent']:.6f} {last['answered']:.6f}"
            )
        return jobs

    Producer.claim = claimed

    dispatch = ExecutorPool.dispatch

    def dispatched(self, child, db_index, jobs, now):
        began = time.time()
        dispatch(self, child, db_index, jobs, now)
        for job in jobs:
            write(f"piped {key(job)!r} {began:.6f}")

    ExecutorPool.dispatch = dispatched

    run = Executor.run

    def received(self, db_index, jobs):
        last["received"] = time.time()
        running[0] = jobs[0]
        return run(self, db_index, jobs)

    Executor.run = received

    begin = JobStore.begin_jobs_reading

    def begun(self, *args, **kwargs):
        rows = begin(self, *args, **kwargs)
        if running[0] is not None:
            write(
                f"begun {key(running[0])!r} {last['received']:.6f} "
                f"{last['sent']:.6f} {last['answered']:.6f}"
            )
            running[0] = None
        return rows

    JobStore.begin_jobs_reading = begun


def mark(ts: float) -> None:
    """The job's first line (called by the job itself)."""
    if _DIR:
        path = os.path.join(_DIR, f"{os.getpid()}.txt")
        with open(path, "a") as f:
            f.write(f"first {ts!r} {time.time():.6f}\n")


if _DIR:
    _install(_DIR)
