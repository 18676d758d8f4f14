"""Where the start latency goes: the worker's path from the enqueue call to the job's
first line, step by step, for each job of the peers' latency scenario.

The scenario of ``../shared/peers-bench/compare ... --mode latency``: an idle worker
(``--concurrency 2``, warmed up with 20 jobs, then left idle 0.5 s), 300 jobs enqueued
one a transaction, 20 ms apart, each carrying the ``time.time()`` its enqueuer took
right before the enqueue call. The worker runs with ``bench/latency_probe`` on its
``PYTHONPATH``: each of its processes writes down when the job passed each step (see
``latency_probe.py``). Segments, in milliseconds (p50 / p90 / p99 over the jobs):

- ``enqueue call``: the call, its commit included (beside the chain, for comparison);
- ``woken``: from before the call to the supervisor's wake-up by the ``NOTIFY``
  (the enqueue's commit flushed, the listener's socket ready);
- ``claim sent``: the supervisor's Python from its wake-up to the claim's message;
- ``claim``: the claim's round trip;
- ``to the pipe``: the claim's rows read, the job dealt out;
- ``pipe``: its message made and written, until the executor's run of it begins;
- ``begin sent``, ``begin``: the executor's Python to its begin, and the begin's
  round trip (run lock, check, records);
- ``first line``: from the begin to the job's first line;
- ``total``: from before the enqueue call to the first line (the harness's figure).

The slowest jobs are listed with their segments: which step holds the tail. Then the
CPU a job of the worker's processes and of their PostgreSQL backends over the measured
jobs: the work each job costs when jobs come one at a time. The probe's own cost is
tens of microseconds a step on a CPU woken from sleep (a clock read, the job's key
read from its arguments); compare totals with the harness run in the same hour, not
with other days.

    python bench/bench_latency_segments.py [--database postgresql://127.0.0.1:5432/postgres]
        [--jobs 300] [--interval 0.02] [--concurrency 2] [--slowest 8]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench_worker import (
    _worker_up,
    count_state,
    cpu_of_tree,
    drop_database,
    fresh_database,
    percentile,
    reset,
    set_default_limit,
    start_worker,
    stop_worker,
    wait,
)

from job_worker import SUPERUSER_ID, Registry, api

PROBE = Path(__file__).resolve().parent / "latency_probe"
WARM_UP = 20
#: the chain of steps, each segment from the step before it
SEGMENTS = (
    "woken",
    "claim sent",
    "claim",
    "to the pipe",
    "pipe",
    "begin sent",
    "begin",
    "first line",
)


def read_probe(probe_dir: str) -> dict[float, dict[str, list[float]]]:
    """What the worker's processes wrote, by job (its enqueuer's timestamp)."""
    steps: dict[float, dict[str, list[float]]] = {}
    for path in Path(probe_dir).glob("*.txt"):
        for line in path.read_text().splitlines():
            step, key, *times = line.split()
            steps.setdefault(float(key), {})[step] = [float(t) for t in times]
    return steps


def segments(ts: float, called: float, steps: dict[str, list[float]]) -> dict[str, float]:
    """One job's segments (ms), or an empty dict if a step is missing or the claim that
    took it followed another wake-up than this job's ``NOTIFY``."""
    if not all(step in steps for step in ("claim", "piped", "begun", "first")):
        return {}
    woken, claim_sent, claim_answered = steps["claim"]
    (piped,) = steps["piped"]
    received, begin_sent, begin_answered = steps["begun"]
    (first,) = steps["first"]
    if woken < ts:  # claimed after a later wake-up (a finished job, the poll)
        return {}
    chain = [ts, woken, claim_sent, claim_answered, piped, received, begin_sent]
    chain += [begin_answered, first]
    values = {
        name: (b - a) * 1000 for name, a, b in zip(SEGMENTS, chain[:-1], chain[1:], strict=True)
    }
    values["total"] = (first - ts) * 1000
    values["enqueue call"] = (called - ts) * 1000
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="postgresql://127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--slowest", type=int, default=8)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="jw-segments-"))
    url, dropping = fresh_database(args.database, workdir)
    probe_dir = str(workdir)
    try:
        sys.path.insert(0, str(PROBE))  # the job's module, for this process's registry
        registry = Registry(url, modules=["latency_probe_app"])
        reset(registry)
        set_default_limit(registry, args.concurrency)
        with registry.cursor() as cr:
            partner_id = (
                api.Environment(cr, SUPERUSER_ID, {})["res.partner"].create({"name": "latency"}).id
            )
        process = start_worker(
            url,
            args.concurrency,
            modules=("latency_probe_app",),
            paths=(str(PROBE),),
            env={"LATENCY_PROBE_DIR": probe_dir},
        )
        called: dict[float, float] = {}
        try:
            wait(lambda: _worker_up(registry), 60, "the worker")

            def enqueue(ts: float) -> None:
                with registry.cursor() as cr:
                    env = api.Environment(cr, SUPERUSER_ID, {})
                    env["res.partner"].browse(partner_id).with_delay().mark_first_line(ts)

            for _ in range(WARM_UP):
                enqueue(0.0)
                time.sleep(args.interval)
            wait(lambda: count_state(registry, "done") == WARM_UP, 60, "the warm-up jobs")
            time.sleep(0.5)  # idle again, as in the peers' scenario
            before = cpu_of_tree(process.pid, registry)
            start = time.perf_counter() + 0.05
            for i in range(args.jobs):
                delay = start + i * args.interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                ts = time.time()
                enqueue(ts)
                called[ts] = time.time()
            total = WARM_UP + args.jobs
            wait(lambda: count_state(registry, "done") == total, 60, "the measured jobs")
            after = cpu_of_tree(process.pid, registry)
        finally:
            stop_worker(process)
        steps = read_probe(probe_dir)
        rows = [r for ts, t in called.items() if (r := segments(ts, t, steps.get(ts, {})))]
        if len(rows) < args.jobs // 2:
            raise SystemExit(f"only {len(rows)} of {args.jobs} jobs went the whole way measured")
        report(rows, args)
        cpu = {name: (after[name] - before.get(name, 0.0)) * 1e6 / args.jobs for name in after}
        others = sum(v for name, v in cpu.items() if name.startswith("child "))
        print(
            f"\nCPU a job (µs): supervisor {cpu['supervisor']:.0f}, its other processes "
            f"{others:.0f}, their backends {cpu['backends']:.0f}; {sum(cpu.values()):.0f} in all"
        )
    finally:
        drop_database(dropping)
        shutil.rmtree(workdir, ignore_errors=True)


def report(rows: list[dict[str, float]], args: argparse.Namespace) -> None:
    names = ["enqueue call", *SEGMENTS, "total"]
    print(
        f"{len(rows)} of {args.jobs} jobs {args.interval * 1000:g} ms apart, woken by their "
        f"own NOTIFY (ms)"
    )
    width = max(len(name) for name in names)
    print(f"{'segment':<{width}}   p50      p90      p99")
    for name in names:
        values = sorted(row[name] for row in rows)
        print(f"{name:<{width}} " + " ".join(f"{percentile(values, q):8.3f}" for q in (50, 90, 99)))
    print(f"\nthe {args.slowest} slowest jobs: " + ", ".join(names))
    for row in sorted(rows, key=lambda row: -row["total"])[: args.slowest]:
        print("  " + " ".join(f"{row[name]:7.2f}" for name in names))


if __name__ == "__main__":
    main()
