"""Worker speed: drain throughput, enqueue-to-start latency and memory, each against a
baseline measured in the same run on the same machine.

    python bench/bench_worker.py --database postgresql://127.0.0.1:5432/postgres
    python bench/bench_worker.py --database sqlite

Baseline: a bare SQL loop over the same ``queue_job`` table, in as many processes as
the worker has executors, that claims one job (``SKIP LOCKED`` on PostgreSQL, under
the write lock on SQLite; through the same pending-jobs index the worker uses),
commits, marks it done and commits: the least any worker with a durable ``started``
state must do, with no Python above the driver and no channel limits.

The drain is measured twice: with the channel's limit equal to the executors (a
slot frees only when a job commits, so every job needs a claim of its own), and
with a limit that does not bind (jobs are claimed and committed in batches).

PostgreSQL runs in a schema of its own (dropped at the end); SQLite in a temporary
file.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import psycopg

from job_worker import SUPERUSER_ID, Registry, api

ROOT = Path(__file__).resolve().parent.parent
#: jobs run before the latency is measured (the executors' start is not the scenario)
WARM_UP_JOBS = 20
EXTRA: list[str] = []


# -- databases ------------------------------------------------------------------------


def fresh_database(target: str, workdir: Path) -> tuple[str, object]:
    """A URL for an empty database, and what to drop afterwards."""
    if target == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}", None
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(target, autocommit=True) as cnx:
        cnx.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in target else "?"
    return f"{target}{sep}options={quote(f'-csearch_path={schema}')}", (target, schema)


def drop_database(dropping: object) -> None:
    if dropping:
        target, schema = dropping  # type: ignore[misc]
        with psycopg.connect(target, autocommit=True) as cnx:
            cnx.execute(f'DROP SCHEMA "{schema}" CASCADE')


def enqueue_noops(registry: Registry, count: int, fair_keys: int = 0) -> float:
    """Enqueue ``count`` no-op jobs in one transaction (with ``fair_keys``, spread over
    that many fair keys); returns jobs/s."""
    began = time.perf_counter()
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        partner = env["res.partner"].browse([])
        for i in range(count):
            if fair_keys:
                partner.with_delay(fair_key=f"tenant-{i % fair_keys}").exists()
            else:
                partner.with_delay().exists()
    return count / (time.perf_counter() - began)


def reset(registry: Registry) -> None:
    with registry.cursor() as cr:
        cr.execute("DELETE FROM queue_job")
        cr.execute("DELETE FROM queue_worker")


# -- baseline ---------------------------------------------------------------------------

PG_CLAIM = """UPDATE queue_job SET state = 'started', started_at = now()
 WHERE id = (SELECT id FROM queue_job WHERE state = 'pending' AND channel = 'root'
              ORDER BY priority, fair_key, scheduled_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id"""
SQLITE_CLAIM = """UPDATE queue_job SET state = 'started', started_at = ?
 WHERE id = (SELECT id FROM queue_job INDEXED BY queue_job_pending
              WHERE state = 'pending' AND channel = 'root'
              ORDER BY priority, fair_key, scheduled_at, id LIMIT 1)
RETURNING id"""


def _baseline_loop(url: str, done: multiprocessing.Value) -> None:  # type: ignore[valid-type]
    count = 0
    if url.startswith("sqlite"):
        cnx = sqlite3.connect(url[len("sqlite:///") :], timeout=30, isolation_level=None)
        cnx.execute("PRAGMA journal_mode=WAL")
        cnx.execute("PRAGMA synchronous=NORMAL")
        while True:
            cnx.execute("BEGIN IMMEDIATE")
            row = cnx.execute(SQLITE_CLAIM, (datetime.now(UTC).isoformat(),)).fetchone()
            cnx.execute("COMMIT")
            if row is None:
                break
            cnx.execute("BEGIN IMMEDIATE")
            cnx.execute("UPDATE queue_job SET state = 'done' WHERE id = ?", (row[0],))
            cnx.execute("COMMIT")
            count += 1
    else:
        with psycopg.connect(url) as cnx:
            while True:
                row = cnx.execute(PG_CLAIM).fetchone()
                cnx.commit()
                if row is None:
                    break
                cnx.execute("UPDATE queue_job SET state = 'done' WHERE id = %s", (row[0],))
                cnx.commit()
                count += 1
    with done.get_lock():
        done.value += count


def baseline(registry: Registry, url: str, jobs: int, processes: int) -> float:
    reset(registry)
    enqueue_noops(registry, jobs)
    done = multiprocessing.Value("i", 0)
    workers = [
        multiprocessing.Process(target=_baseline_loop, args=(url, done)) for _ in range(processes)
    ]
    began = time.perf_counter()
    for process in workers:
        process.start()
    for process in workers:
        process.join()
    elapsed = time.perf_counter() - began
    assert done.value == jobs, (done.value, jobs)
    return jobs / elapsed


# -- the worker -------------------------------------------------------------------------------


def set_default_limit(registry: Registry, limit: int) -> None:
    """The cluster's default limit (channels without a queue.limit row)."""
    with registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["queue.config"].set_value("default_limit", limit)


#: the worker's ``--batch`` (None: its default), set by ``--batch``
BATCH: int | None = None


def start_worker(
    url: str,
    concurrency: int,
    *,
    modules: tuple[str, ...] = (),
    paths: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """``job-worker worker`` on this checkout's code, loading ``modules`` found on
    ``paths``, with ``env`` added to its environment."""
    batch = [] if BATCH is None else ["--batch", str(BATCH)]
    load = [arg for module in modules for arg in ("--load", module)]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "job_worker",
            "worker",
            "--database",
            url,
            "--concurrency",
            str(concurrency),
            *batch,
            *load,
            "--log-level",
            "WARNING",
        ],
        env={
            **os.environ,
            **(env or {}),
            "PYTHONPATH": os.pathsep.join([*paths, str(ROOT / "src")]),
        },
    )


def stop_worker(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(60)


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)
    return value


def count_state(registry: Registry, state: str) -> int:
    with registry.cursor(readonly=True) as cr:
        cr.execute("SELECT count(*) FROM queue_job WHERE state = %s", (state,))
        return cr.fetchone()[0]


def _dt(value):
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def drain(
    registry: Registry,
    url: str,
    jobs: int,
    concurrency: int,
    limit: int | None = None,
    fair_keys: int = 0,
) -> tuple[float, dict, dict]:
    """Jobs/s from the first start to the last completion; ``limit``: the channel's;
    ``fair_keys``: the jobs spread over that many fair keys. Also the memory of the
    worker's processes, and the CPU (µs a job) of each of them and of their PostgreSQL
    backends in the steady part of the drain (from a tenth of the jobs done to nine
    tenths)."""
    reset(registry)
    enqueue_noops(registry, jobs, fair_keys)
    set_default_limit(registry, limit or concurrency)
    process = start_worker(url, concurrency)
    try:
        first_done = wait(
            lambda: (n := count_state(registry, "done")) >= jobs // 10 and n, 600, "the drain"
        )
        before = cpu_of_tree(process.pid, registry)
        last_done = wait(
            lambda: (n := count_state(registry, "done")) >= jobs * 9 // 10 and n, 600, "the drain"
        )
        after = cpu_of_tree(process.pid, registry)
        wait(lambda: count_state(registry, "done") == jobs, 600, "the drain")
        memory = rss_of_tree(process.pid)
    finally:
        stop_worker(process)
    with registry.cursor(readonly=True) as cr:
        cr.execute("SELECT min(started_at), max(completed_at) FROM queue_job")
        first, last = cr.fetchone()
    cpu = {
        name: (after[name] - before.get(name, 0.0)) * 1e6 / (last_done - first_done)
        for name in after
    }
    return jobs / (_dt(last) - _dt(first)).total_seconds(), memory, cpu


def latency(
    registry: Registry, url: str, jobs: int, interval: float, concurrency: int
) -> list[float]:
    """Milliseconds from an enqueue's commit to its claim, on an idle worker (warmed up
    first: its executors start after it registers, and jobs enqueued meanwhile wait for
    them)."""
    reset(registry)
    set_default_limit(registry, concurrency)
    process = start_worker(url, concurrency)
    try:
        wait(lambda: _worker_up(registry), 60, "the worker")
        with registry.cursor() as cr:
            partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse([])
            warm_up = [partner.with_delay().exists().id for _ in range(WARM_UP_JOBS)]
        wait(lambda: count_state(registry, "done") == len(warm_up), 60, "the warm-up jobs")
        time.sleep(0.5)  # idle again before the first measured job, as in the scenario
        committed: dict[int, datetime] = {}
        for _ in range(jobs):
            with registry.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                job = env["res.partner"].browse([]).with_delay().exists()
                job_id = job.id
            committed[job_id] = datetime.now(UTC).replace(tzinfo=None)
            time.sleep(interval)  # the enqueue rate of the scenario
        wait(lambda: count_state(registry, "done") == jobs + len(warm_up), 60, "the latency jobs")
    finally:
        stop_worker(process)
    with registry.cursor(readonly=True) as cr:
        cr.execute("SELECT id, started_at FROM queue_job")
        started = dict(cr.fetchall())
    return sorted(
        max((_dt(started[i]) - at).total_seconds() * 1000, 0.0) for i, at in committed.items()
    )


def _worker_up(registry: Registry) -> bool:
    with registry.cursor(readonly=True) as cr:
        cr.execute("SELECT count(*) FROM queue_worker WHERE stopped_at IS NULL")
        return cr.fetchone()[0] > 0


def rss_of_tree(pid: int) -> dict:
    """Resident memory (MiB) of the worker and of each of its descendants."""

    def rss(p: int) -> float:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def children(p: int) -> list[int]:
        try:
            return [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            return []

    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children(current))
    sizes = {p: rss(p) for p in tree}
    return {"supervisor": sizes[pid], "others": sorted(v for p, v in sizes.items() if p != pid)}


def cpu_of_tree(pid: int, registry: Registry) -> dict[str, float]:
    """CPU seconds (user and system) so far of the worker (``supervisor``), of each of its
    other processes (``child <pid>``), and of the PostgreSQL backends of their
    connections (``backends``, found by their client ports; 0 on SQLite)."""
    tick = os.sysconf("SC_CLK_TCK")

    def cpu(p: int) -> float:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick

    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        try:
            todo.extend(
                int(c) for c in Path(f"/proc/{current}/task/{current}/children").read_text().split()
            )
        except OSError:
            pass
    figures = {"supervisor": cpu(pid)}
    figures.update({f"child {p}": cpu(p) for p in tree if p != pid})
    figures["backends"] = sum(cpu(p) for p in _backends_of(tree, registry))
    return figures


def _backends_of(tree: list[int], registry: Registry) -> list[int]:
    """The pids of the PostgreSQL backends whose clients are processes of ``tree``."""
    if registry.backend.dialect != "postgresql":
        return []
    inodes = set()
    for p in tree:
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                link = os.readlink(f"/proc/{p}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    with registry.cursor(readonly=True) as cr:
        cr.execute("SELECT pid, client_port FROM pg_stat_activity WHERE client_port IS NOT NULL")
        return [backend for backend, port in cr.fetchall() if port in ports]


def percentile(values: list[float], q: float) -> float:
    return values[min(round(q / 100 * (len(values) - 1)), len(values) - 1)]


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, load average at start {load[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database",
        default="sqlite",
        help="'sqlite' or a PostgreSQL URL (a schema is created in it)",
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs drained")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch", type=int, help="the worker's --batch (default: its own)")
    parser.add_argument("--latency-jobs", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between enqueues")
    parser.add_argument(
        "--fair-keys",
        type=int,
        default=1000,
        help="also drain the jobs spread over this many fair keys (0: skip)",
    )
    args = parser.parse_args()
    global BATCH
    BATCH = args.batch
    print(machine())
    with tempfile.TemporaryDirectory() as workdir:
        url, dropping = fresh_database(args.database, Path(workdir))
        try:
            registry = Registry(url, [])
            if url.startswith("postgresql"):
                with registry.cursor() as cr:
                    cr.execute("SHOW server_version")
                    print(f"PostgreSQL {cr.fetchone()[0]}")
            bulk = enqueue_noops(registry, args.jobs)
            base = baseline(registry, url, args.jobs, args.concurrency)
            rate, memory, _cpu = drain(registry, url, args.jobs, args.concurrency)
            unbound, _memory, cpu = drain(registry, url, args.jobs, args.concurrency, args.jobs)
            fair = (
                drain(registry, url, args.jobs, args.concurrency, args.jobs, args.fair_keys)[0]
                if args.fair_keys
                else None
            )
            lat = latency(registry, url, args.latency_jobs, args.interval, args.concurrency)
            registry.close()
        finally:
            drop_database(dropping)
    kind = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"\n{kind}, {args.jobs} no-op jobs, {args.concurrency} executors")
    print(f"  bulk enqueue (one transaction)   {bulk:9.0f} jobs/s")
    print(f"  baseline claim+complete loop     {base:9.0f} jobs/s ({args.concurrency} processes)")
    print(
        f"  worker drain, limit {args.concurrency:<3}          {rate:9.0f} jobs/s  "
        f"= {rate / base:.2f} x baseline"
    )
    print(
        f"  worker drain, limit not binding  {unbound:9.0f} jobs/s  = {unbound / base:.2f} x baseline"
    )
    if fair is not None:
        print(
            f"  worker drain, {args.fair_keys} fair keys   {fair:9.0f} jobs/s  "
            f"= {fair / unbound:.2f} x the drain without keys"
        )
    print(
        f"  enqueue-to-start latency (ms)    p50 {percentile(lat, 50):.1f}  "
        f"p95 {percentile(lat, 95):.1f}  p99 {percentile(lat, 99):.1f}  "
        f"(mean {statistics.mean(lat):.1f}, {len(lat)} jobs {args.interval * 1000:.0f} ms apart)"
    )
    children = sorted(name for name in cpu if name.startswith("child "))
    print(
        f"  CPU a job, not binding (µs)      {sum(cpu.values()):.0f}: supervisor "
        f"{cpu['supervisor']:.0f}, others {', '.join(f'{cpu[c]:.0f}' for c in children)}, "
        f"backends {cpu['backends']:.0f}"
    )
    print(
        f"  memory (RSS, MiB)                supervisor {memory['supervisor']:.0f}, "
        f"others {', '.join(f'{m:.0f}' for m in memory['others'])}"
    )


if __name__ == "__main__":
    main()
