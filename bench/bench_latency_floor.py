"""The start latency no PostgreSQL queue goes below on this machine: bare psycopg paths.

The peers' ``latency`` scenario (an idle consumer, jobs enqueued 20 ms apart on a
fixed schedule, the time taken right before the enqueue call and again when the job
is in the hands of the process that runs it), played by bare psycopg processes with
no queue's code around them, along three paths:

- ``claim``: the consumer LISTENs on the connection it claims with. Woken by the
  enqueue's NOTIFY, it claims (``UPDATE ... FOR UPDATE SKIP LOCKED ... RETURNING``,
  asynchronous commit, as the worker's claim) and holds the job: one wake-up and one
  round trip after the enqueue's commit, the least any queue woken by NOTIFY does.
- ``claim+pipe``: the claimed job then goes through a pipe to a second process, which
  holds it (a supervisor handing jobs to an executor process).
- ``claim+pipe+begin``: the second process then opens the job's transaction with a
  round trip of its own (an advisory lock on the job and a read of its row) before it
  holds it: the path of job_worker's worker (``docs/benchmarks.md``), without its
  Python.

The enqueue is one message, ``BEGIN; INSERT; SELECT pg_notify(...); COMMIT``, with the
durable commit on; the enqueue call's own time is reported beside. Milliseconds, p50 /
p95 / p99 / max of each run; several runs of each path, in turn. Compare the figures
with ``../shared/peers-bench/compare ... --mode latency`` run in the same hour.

    python bench/bench_latency_floor.py [--pg-url postgresql://127.0.0.1:5432/postgres]
        [--jobs 300] [--interval 0.02] [--runs 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any

import psycopg
from bench_worker import percentile as _percentile


def percentile(values: list[float], pct: float) -> float:
    return _percentile(sorted(values), pct)


PATHS = ("claim", "claim+pipe", "claim+pipe+begin")
#: jobs run before the measured ones (every process and connection warm)
WARM_UP = 20
CHANNEL = "latency_floor"

SCHEMA = """
CREATE TABLE floor_job (
    id bigserial PRIMARY KEY,
    state text NOT NULL DEFAULT 'pending',
    ts double precision NOT NULL
);
CREATE INDEX floor_job_pending ON floor_job (id) WHERE state = 'pending';
"""

CLAIM = """
UPDATE floor_job SET state = 'started'
 WHERE id = (SELECT id FROM floor_job WHERE state = 'pending'
              ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, ts
"""


def consumer(url: str, ready: Any, out: Connection, relay: Connection | None) -> None:
    """Claim on every NOTIFY; hold the job (``claim``) or pipe it on."""
    cnx = psycopg.connect(url, autocommit=True)
    cnx.execute("SET synchronous_commit = off")
    cnx.execute(f"LISTEN {CHANNEL}")
    ready.set()
    held: list[float] = []
    while True:
        # (a NOTIFY that came during a claim waits in psycopg's backlog: returned at once)
        stop = any(n.payload == "stop" for n in cnx.notifies(stop_after=1))
        while True:
            row = cnx.execute(CLAIM).fetchone()
            if row is None:
                break
            if relay is None:
                held.append(time.time() - row[1])
            else:
                relay.send((row[0], row[1]))
        if stop:
            break
    if relay is not None:
        relay.send(None)
    out.send(held)
    cnx.close()


def runner(url: str, begin: bool, jobs: Connection, out: Connection) -> None:
    """The second process: holds each job it is piped, after a begin of its own."""
    cnx = psycopg.connect(url) if begin else None
    held: list[float] = []
    while True:
        job = jobs.recv()
        if job is None:
            break
        job_id, ts = job
        if cnx is not None:
            cnx.execute(
                f"SELECT pg_advisory_xact_lock(7, {int(job_id)}); "
                f"SELECT state FROM floor_job WHERE id = {int(job_id)}".encode()
            )
            held.append(time.time() - ts)
            cnx.commit()
        else:
            held.append(time.time() - ts)
    out.send(held)
    if cnx is not None:
        cnx.close()


def run(url: str, path: str, jobs: int, interval: float) -> tuple[list[float], list[float]]:
    """One run of ``path``: the start latencies and the enqueue calls' times (ms)."""
    ctx = multiprocessing.get_context("fork")
    with psycopg.connect(url, autocommit=True) as cnx:
        cnx.execute("TRUNCATE floor_job RESTART IDENTITY")
    ready = ctx.Event()
    results_r, results_w = ctx.Pipe(duplex=False)
    processes = []
    relay_w = None
    if path != "claim":
        relay_r, relay_w = ctx.Pipe(duplex=False)
        second_r, second_w = ctx.Pipe(duplex=False)
        processes.append(
            ctx.Process(target=runner, args=(url, path.endswith("begin"), relay_r, second_w))
        )
    processes.append(ctx.Process(target=consumer, args=(url, ready, results_w, relay_w)))
    for process in processes:
        process.start()
    calls: list[float] = []
    try:
        if not ready.wait(30):
            raise RuntimeError("the consumer did not start")
        enqueuer = psycopg.connect(url)
        enqueuer.autocommit = True  # the message below is its own transaction

        def enqueue() -> float:
            ts = time.time()
            enqueuer.execute(
                f"BEGIN; INSERT INTO floor_job (ts) VALUES ({ts!r}); "
                f"SELECT pg_notify('{CHANNEL}', ''); COMMIT".encode()
            )
            return ts

        for _ in range(WARM_UP):
            enqueue()
            time.sleep(interval)
        time.sleep(0.5)  # idle again, as in the peers' scenario
        start = time.perf_counter() + 0.05
        for i in range(jobs):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            ts = enqueue()
            calls.append((time.time() - ts) * 1000)
        time.sleep(0.2)
        enqueuer.execute(f"SELECT pg_notify('{CHANNEL}', 'stop')")
        enqueuer.close()
        held = (second_r if path != "claim" else results_r).recv()
        if path != "claim":
            results_r.recv()  # the consumer's (empty) list: it is done
    finally:
        for process in processes:
            process.join(30)
            if process.exitcode is None:
                process.kill()
    latencies = [seconds * 1000 for seconds in held[WARM_UP:]]
    if len(latencies) != jobs:
        raise RuntimeError(f"{len(latencies)} jobs held for {jobs} enqueued")
    return latencies, calls


def summary(values: list[float]) -> str:
    return " / ".join(f"{percentile(values, p):.2f}" for p in (50, 95, 99)) + (
        f" (max {max(values):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default="postgresql://127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    name = f"bench_floor_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(args.pg_url, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as cnx:
            cnx.execute(SCHEMA.encode())
        results: dict[str, list[tuple[list[float], list[float]]]] = {p: [] for p in PATHS}
        for _ in range(args.runs):
            for path in PATHS:  # in turn: the machine's moods fall on every path alike
                results[path].append(run(url, path, args.jobs, args.interval))
        print(f"{args.jobs} jobs {args.interval * 1000:g} ms apart, {args.runs} runs a path")
        print(f"{'path':<18} {'start latency p50 / p95 / p99 ms':<38} enqueue call p50 / p99")
        for path in PATHS:
            for latencies, calls in results[path]:
                print(
                    f"{path:<18} {summary(latencies):<38} "
                    f"{percentile(calls, 50):.2f} / {percentile(calls, 99):.2f}"
                )
            p99s = [percentile(latencies, 99) for latencies, _calls in results[path]]
            print(f"{path:<18} median p99 of the runs: {statistics.median(p99s):.2f}")
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
