"""How fast jobs are enqueued, against a plain INSERT of the same rows.

For each database (a temporary SQLite file; a temporary PostgreSQL database):

- single: one enqueue per transaction (``with_delay().write(...)`` then commit),
  against one plain INSERT per transaction;
- batch: 1,000 enqueues in one transaction, against 1,000 plain INSERTs;
- split: ``split(100)`` of 100,000 records into 1,000 jobs in one transaction,
  against 1,000 plain INSERTs in one transaction.

The baseline inserts the very row our enqueue writes (same table, same
indexes, a fresh uuid each) with the bare driver (sqlite3 / psycopg). Figures
are medians of a few rounds, as rates and as the time of one job or row; the
ratio is ours / baseline.

    python bench/bench_enqueue.py [--pg-url postgresql://127.0.0.1:5432/postgres] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from job_worker import SUPERUSER_ID, Registry, api


def timed(func: Callable[[], Any]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


class Case:
    def __init__(self, registry: Registry, raw: Callable[[], Any], dialect: str):
        self.registry = registry
        self.raw_connect = raw
        self.dialect = dialect
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            partners = env["res.partner"].create([{"name": f"P{i}"} for i in range(100_000)])
            self.first_partner = partners[0].id
            self.partner_ids = partners.ids
            job = partners[0].with_delay().write({"email": "x@example.com"})
            cr.execute("SELECT * FROM queue_job WHERE id = %s", [job.id])
            row = cr.dictfetchall()[0]
            cr.execute("DELETE FROM queue_job")
        row.pop("id")
        self.columns = list(row)
        for key in ("record_ids", "args", "kwargs", "context", "result"):
            if row.get(key) is not None and not isinstance(row[key], str):
                row[key] = json.dumps(row[key])
        self.row = row
        placeholder = "?" if dialect == "sqlite" else "%s"
        cols = ", ".join(f'"{c}"' for c in self.columns)
        self.insert = f"INSERT INTO queue_job ({cols}) VALUES ({', '.join([placeholder] * len(self.columns))})"

    def _values(self) -> tuple:
        row = dict(self.row, uuid=str(uuid.uuid4()))
        return tuple(row[c] for c in self.columns)

    # -- ours ---------------------------------------------------------------

    def ours_single(self, n: int) -> None:
        for _ in range(n):
            with self.registry.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                env["res.partner"].browse(self.first_partner).with_delay().write(
                    {"email": "x@example.com"}
                )

    def ours_batch(self, n: int) -> None:
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            partner = env["res.partner"].browse(self.first_partner)
            for _ in range(n):
                partner.with_delay().write({"email": "x@example.com"})

    def ours_split(self) -> None:
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            records = env["res.partner"].browse(self.partner_ids)
            records.delayable().write({"email": "x@example.com"}).split(100).delay()

    # -- baseline -------------------------------------------------------------

    def plain_single(self, n: int) -> None:
        cnx = self.raw_connect()
        for _ in range(n):
            if self.dialect == "sqlite":
                cnx.execute("BEGIN IMMEDIATE")
            cnx.execute(self.insert, self._values())
            cnx.commit()
        cnx.close()

    def plain_batch(self, n: int) -> None:
        cnx = self.raw_connect()
        if self.dialect == "sqlite":
            cnx.execute("BEGIN IMMEDIATE")
        for _ in range(n):
            cnx.execute(self.insert, self._values())
        cnx.commit()
        cnx.close()

    def clear(self) -> None:
        with self.registry.cursor() as cr:
            cr.execute("DELETE FROM queue_job")


def run_case(
    name: str, case: Case, rounds: int, single_n: int
) -> list[tuple[str, str, float, float]]:
    results = []
    scenarios = [
        (
            f"single ({single_n} commits)",
            lambda: case.ours_single(single_n),
            lambda: case.plain_single(single_n),
            single_n,
        ),
        (
            "batch (1,000 in one commit)",
            lambda: case.ours_batch(1000),
            lambda: case.plain_batch(1000),
            1000,
        ),
        (
            "split 100,000 records -> 1,000 jobs",
            case.ours_split,
            lambda: case.plain_batch(1000),
            1000,
        ),
    ]
    for label, ours, plain, jobs in scenarios:
        ours_t, plain_t = [], []
        for _ in range(rounds):
            case.clear()
            plain_t.append(timed(plain))
            case.clear()
            ours_t.append(timed(ours))
        o, p = statistics.median(ours_t), statistics.median(plain_t)
        results.append((name, label, jobs / o, jobs / p))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("JOB_WORKER_TEST_PG_URL", "postgresql://127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--single", type=int, default=300, help="transactions in the single scenario"
    )
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.db")
        registry = Registry(f"sqlite:///{path}")

        def sqlite_connect() -> sqlite3.Connection:
            cnx = sqlite3.connect(path, timeout=30, isolation_level=None)
            cnx.execute("PRAGMA synchronous=NORMAL")
            cnx.execute("PRAGMA foreign_keys=ON")
            return cnx

        results += run_case(
            "SQLite", Case(registry, sqlite_connect, "sqlite"), args.rounds, args.single
        )
        registry.close()

    pg_version = "skipped"
    if not args.skip_pg:
        dbname = f"job_worker_bench_{os.getpid()}"
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
            pg_version = admin.execute("SHOW server_version").fetchone()[0]
        url = args.pg_url.rsplit("/", 1)[0] + "/" + dbname
        try:
            registry = Registry(url)
            results += run_case(
                "PostgreSQL",
                Case(registry, lambda: psycopg.connect(url), "postgresql"),
                args.rounds,
                args.single,
            )
            registry.close()
        finally:
            with psycopg.connect(args.pg_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, PostgreSQL {pg_version}"
    )
    print(
        f"{'database':<11} {'scenario':<38} {'enqueue jobs/s':>15} {'plain INSERT rows/s':>20}"
        f" {'ours µs/job':>12} {'plain µs/row':>13} {'cost ratio':>11}"
    )
    for db, label, ours, plain in results:
        print(
            f"{db:<11} {label:<38} {ours:>15,.0f} {plain:>20,.0f}"
            f" {1e6 / ours:>12.1f} {1e6 / plain:>13.1f} {plain / ours:>10.2f}x"
        )


if __name__ == "__main__":
    main()
