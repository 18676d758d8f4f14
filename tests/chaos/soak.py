"""The soak: mixed jobs on hosts made of network namespaces, for minutes, under chaos.

    make soak                                   # 100,000 jobs, 3 hosts, 15 minutes
    .venv/bin/python tests/chaos/soak.py --jobs 5000 --minutes 3 --db-down 30

Needs root (namespaces, iptables) and PostgreSQL 15's binaries; it builds a lab of its
own (``lab.py``) and tears it down at the end. Jobs: fast, slow, failing, retrying then
succeeding, timing out, and graphs (chains, a group barrier, a failing parent whose
dependents fail in cascade). Chaos while it runs: executors and whole workers killed
with SIGKILL at random (a killed worker is started again on its host), two partitions
of a host (its packets dropped for ``--partition`` seconds), one database crash
(SIGKILL of the postmaster) that stays down ``--db-down`` seconds. Then it lets the
queue drain and counts, in the database: every job's outcome against the one its kind
must end with, each effect once. The report ends with ``lost 0, doubled 0, stuck 0``
or the run failed (exit 1).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "worker"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "apps"))

import psycopg
from lab import HostWorker, Lab
from worker_helpers import set_config, set_limit

from job_worker import SUPERUSER_ID, Registry, api
from job_worker.delay import chain, group

#: the outcome each kind of job must end with (the description's first word)
EXPECTED = {
    "fast": "done",
    "slow": "done",
    "retrying": "done",
    "graph": "done",
    "failing": "failed",
    "timeout": "failed",
    "cascade": "failed",
}


@dataclass
class Tally:
    jobs: int = 0
    executor_kills: int = 0
    worker_kills: int = 0
    partitions: int = 0
    restarts: int = 0
    reclaim_delays: list[float] = field(default_factory=list)
    watched: dict[tuple[str, int], float] = field(default_factory=dict)  # (worker, job): since


def enqueue_batch(registry: Registry, rng: random.Random, count: int) -> int:
    """About ``count`` mixed jobs in one transaction; returns how many."""
    made = 0
    with registry.cursor() as cr:
        task = api.Environment(cr, SUPERUSER_ID, {})["workerapp.task"]
        while made < count:
            roll = rng.random()
            name = uuid.uuid4().hex[:8]
            if roll < 0.80:
                task.with_delay(description="fast", max_retries=0).record(name)
                made += 1
            elif roll < 0.85:
                seconds = rng.uniform(0.2, 2.0)
                task.with_delay(description="slow", max_retries=0).sleep_then_record(name, seconds)
                made += 1
            elif roll < 0.88:
                task.with_delay(description="failing", max_retries=1).fail(name)
                made += 1
            elif roll < 0.93:
                task.with_delay(description="retrying", max_retries=0).flaky(name, 2)
                made += 1
            elif roll < 0.94:
                options = {"description": "timeout", "max_retries": 1, "timeout": 1}
                task.with_delay(**options).sleep_then_record(name, 30)
                made += 1
            elif roll < 0.97:
                nodes = [
                    task.delayable(description="graph", max_retries=0).record(f"{name}-{n}")
                    for n in range(4)
                ]
                chain(nodes[0], group(nodes[1], nodes[2]), nodes[3]).delay()
                made += 4
            else:
                parent = task.delayable(description="failing", max_retries=1).fail(name)
                children = [
                    task.delayable(description="cascade", max_retries=0).record(f"{name}-{n}")
                    for n in range(2)
                ]
                chain(parent, *children).delay()
                made += 3
    return made


class Soak:
    def __init__(self, options: argparse.Namespace):
        self.options = options
        self.rng = random.Random(options.seed)
        self.tally = Tally()
        self.lab = Lab.open(hosts=options.hosts)
        self.folder = Path(tempfile.mkdtemp(prefix="job-worker-soak-"))
        assert self.lab.postgres is not None
        self.postgres = self.lab.postgres
        self.dbname = "soak"
        self.postgres.create_database(self.dbname)
        self.registry = Registry(self.postgres.url(self.dbname), ["chaosapp"])
        set_config(self.registry, "stale_seconds", options.stale)
        set_limit(self.registry, "root", options.hosts * options.concurrency)
        self.workers: dict[int, HostWorker] = {}
        self.started = 0

    # -- workers -------------------------------------------------------------------

    def start_worker(self, index: int) -> None:
        host = self.lab.hosts[index]
        self.started += 1
        self.workers[index] = self.lab.start_worker(
            host,
            self.postgres.url(self.dbname, host.gateway),
            ["--concurrency", str(self.options.concurrency), "--max-backoff", "2"],
            self.folder / f"worker-{self.started}-h{host.index}.log",
            load="chaosapp",
        )

    def worker_id(self, index: int) -> str | None:
        rows = self.query(
            "SELECT worker_id FROM queue_worker WHERE pid = %s", (self.workers[index].pid,)
        )
        return rows[0][0] if rows else None

    def executors(self, index: int) -> list[int]:
        worker = self.workers[index]
        for child in _children(worker.pid):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"forkserver" in cmdline:
                return _children(child)
        return []

    # -- database ------------------------------------------------------------------

    def query(self, sql: str, params: tuple = ()) -> list[tuple] | None:
        """Rows, or None while the database is down or cannot be reached."""
        try:
            with self.registry.cursor(readonly=True) as cr:
                cr.execute(sql, params)
                return cr.fetchall()
        except psycopg.OperationalError:
            return None

    def watch(self, index: int, at: float) -> None:
        """Measure how long the jobs the worker on host ``index`` holds take to be
        reclaimed (it was killed or cut off at ``at``)."""
        worker_id = self.worker_id(index)
        if worker_id is None:
            return
        rows = self.query(
            "SELECT id FROM queue_job WHERE state = 'started' AND worker_id = %s", (worker_id,)
        )
        for (job_id,) in rows or ():
            self.tally.watched[(worker_id, job_id)] = at

    def check_watched(self) -> None:
        if not self.tally.watched:
            return
        ids = [job_id for _worker, job_id in self.tally.watched]
        rows = self.query(
            "SELECT id, worker_id FROM queue_job WHERE id = ANY(%s) AND state = 'started'", (ids,)
        )
        if rows is None:
            return  # the database is down: nothing can be told
        still = {(worker_id, job_id) for job_id, worker_id in rows}
        now = time.monotonic()
        for key, since in list(self.tally.watched.items()):
            if key not in still:
                self.tally.reclaim_delays.append(now - since)
                del self.tally.watched[key]

    # -- the run -------------------------------------------------------------------

    def run(self) -> bool:
        options = self.options
        for index in range(options.hosts):
            self.start_worker(index)
        duration = options.minutes * 60
        began = time.monotonic()
        # the schedule: feed the queue over the first 60 % of the run; partitions at
        # 20 % and 45 %, the database crash at 65 %
        feed_until = began + duration * 0.6
        events = sorted(
            [
                (began + duration * 0.20, "partition"),
                (began + duration * 0.45, "partition"),
                (began + duration * 0.65, "database"),
            ]
        )
        heal_at: dict[int, float] = {}
        db_up_at: float | None = None
        next_executor_kill = began + self.rng.uniform(2, 6)
        next_worker_kill = began + self.rng.uniform(15, 40)
        while time.monotonic() - began < duration:
            now = time.monotonic()
            if self.tally.jobs < options.jobs and now < feed_until + 1:
                share = min(1.0, (now - began) / (feed_until - began))
                due = int(options.jobs * share) - self.tally.jobs
                if due > 0 and self.postgres.pid:
                    try:
                        self.tally.jobs += enqueue_batch(
                            self.registry, self.rng, min(due, options.jobs - self.tally.jobs, 2000)
                        )
                    except psycopg.OperationalError:
                        pass  # the database is down: the batch is enqueued again later
            if events and now >= events[0][0]:
                _at, kind = events.pop(0)
                if kind == "partition":
                    index = self.rng.randrange(options.hosts)
                    self.watch(index, now)
                    self.lab.hosts[index].partition()
                    heal_at[index] = now + options.partition
                    self.tally.partitions += 1
                    print(f"[{now - began:6.0f} s] host {index + 1} cut off", flush=True)
                else:
                    self.postgres.crash()
                    db_up_at = now + options.db_down
                    self.tally.restarts += 1
                    print(f"[{now - began:6.0f} s] database killed", flush=True)
            for index, at in list(heal_at.items()):
                if now >= at:
                    self.lab.hosts[index].heal()
                    del heal_at[index]
                    print(f"[{now - began:6.0f} s] host {index + 1} back", flush=True)
            if db_up_at is not None and now >= db_up_at:
                self.postgres.start()
                db_up_at = None
                print(f"[{now - began:6.0f} s] database back (crash recovery)", flush=True)
            if now >= next_executor_kill:
                next_executor_kill = now + self.rng.uniform(2, 6)
                index = self.rng.randrange(options.hosts)
                if (pids := self.executors(index)) and _kill(self.rng.choice(pids)):
                    self.tally.executor_kills += 1
            if now >= next_worker_kill:
                next_worker_kill = now + self.rng.uniform(15, 40)
                index = self.rng.randrange(options.hosts)
                if not self.lab.hosts[index].cut and self.postgres.pid:
                    self.watch(index, now)
                    self.workers[index].kill()
                    self.tally.worker_kills += 1
                    self.start_worker(index)
            self.check_watched()
            time.sleep(0.5)  # the chaos loop's pace
        # the end of the chaos: every link back, the database up, then the drain
        for index in list(heal_at):
            self.lab.hosts[index].heal()
        if db_up_at is not None:
            self.postgres.start()
        while self.tally.jobs < options.jobs:
            self.tally.jobs += enqueue_batch(
                self.registry, self.rng, min(2000, options.jobs - self.tally.jobs)
            )
        drain_deadline = time.monotonic() + options.drain * 60
        while time.monotonic() < drain_deadline:
            self.check_watched()
            open_jobs = self.query(
                "SELECT count(*) FROM queue_job WHERE state IN ('pending', 'started', 'waiting')"
            )
            if open_jobs is not None and open_jobs[0][0] == 0:
                break
            time.sleep(1)  # the drain's pace
        self.check_watched()
        return self.report(time.monotonic() - began)

    def report(self, elapsed: float) -> bool:
        tally, options = self.tally, self.options
        rows = self.query(
            """SELECT split_part(j.name, ' ', 1), j.state, count(e.id)
                 FROM queue_job j LEFT JOIN workerapp_effect e ON e.job_uuid = j.uuid
                GROUP BY j.id, j.name, j.state"""
        )
        if rows is None:
            print("the database cannot be read: no report", flush=True)
            return False
        outcomes: Counter[tuple[str, str]] = Counter()
        lost = doubled = stuck = wrong = 0
        for kind, state, effects in rows:
            outcomes[(kind, state)] += 1
            if state in ("pending", "started", "waiting"):
                stuck += 1
            elif effects > 1:
                doubled += 1
            elif state == "done" and effects == 0:
                lost += 1
            elif state != "done" and effects:
                doubled += 1  # the effect of a job that did not end done: committed anyway
            elif state != EXPECTED.get(kind, "done"):
                wrong += 1
        lost += max(tally.jobs - len(rows), 0)
        delays = sorted(tally.reclaim_delays)
        lines = [
            f"soak: {options.hosts} hosts x {options.concurrency} executors, "
            f"{options.minutes} min of chaos, {elapsed / 60:.1f} min in all",
            f"jobs {len(rows)} (asked {options.jobs}): "
            + ", ".join(f"{k} {s} {n}" for (k, s), n in sorted(outcomes.items())),
            f"kills: executors {tally.executor_kills}, workers {tally.worker_kills}; "
            f"partitions {tally.partitions} ({options.partition} s each); "
            f"database restarts {tally.restarts} (down {options.db_down} s, after SIGKILL)",
            "reclaim delay: "
            + (
                f"p50 {statistics.median(delays):.1f} s, max {delays[-1]:.1f} s "
                f"over {len(delays)} jobs"
                if delays
                else "no job was held by a killed or cut-off worker"
            )
            + (f", {len(tally.watched)} never reclaimed" if tally.watched else ""),
            f"lost {lost}, doubled {doubled}, stuck {stuck}, wrong outcome {wrong}",
        ]
        text = "\n".join(lines)
        print(text, flush=True)
        if options.report:
            Path(options.report).write_text(text + "\n")
        return lost == doubled == stuck == wrong == 0 and not tally.watched

    def close(self) -> None:
        self.registry.close()
        self.lab.close()
        print(f"worker logs kept in {self.folder}", flush=True)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--partition", type=float, default=60, help="seconds a host is cut off")
    parser.add_argument("--db-down", type=float, default=120, help="seconds the database is down")
    parser.add_argument("--stale", type=int, default=30, help="the stale_seconds setting")
    parser.add_argument("--drain", type=float, default=10, help="minutes allowed to drain")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", help="also write the report to this file")
    options = parser.parse_args(argv)
    # the pool of this process says so at every failed reconnect while the database is down
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    soak = Soak(options)
    try:
        ok = soak.run()
    finally:
        soak.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
