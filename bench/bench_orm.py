"""How much the record runtime costs over the database driver it runs on.

On SQLite (a temporary file) and PostgreSQL (a temporary database, created and
dropped here), it times:

- creating N ``res.partner`` records in one ``create()`` call and committing,
  against a plain ``executemany`` INSERT of the same rows and columns with the
  same driver (sqlite3, psycopg) and commit;
- reading one field (``name``) of all of them in a fresh transaction, against a
  plain ``SELECT id, name`` of the same rows with the same driver.

Each figure is the best of ``--repeat`` runs, the two sides taking turns; the
table is emptied before each create.
Ratios are ours / baseline: 1.0 means no overhead.

    python bench/bench_orm.py [--rows 10000] [--repeat 5] [--pg-url URL] [--no-pg]
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from job_worker import SUPERUSER_ID, Registry, api, fields


def rows(count: int) -> list[dict]:
    return [{"name": f"Partner {i:06}", "email": f"partner{i}@example.com"} for i in range(count)]


def best_of(
    repeat: int, reset: Callable[[], None], ours: Callable[[], object], plain: Callable[[], object]
) -> tuple[float, float]:
    """The shortest of ``repeat`` timings of each side, run in turns (each after ``reset``)
    so that both see the same machine load."""
    timings: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for run, times in ((ours, timings[0]), (plain, timings[1])):
            reset()
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return min(timings[0]), min(timings[1])


class Case:
    """One database: the runtime's side and the plain driver's side of each operation."""

    def __init__(self, registry: Registry, connect: Callable[[], object], placeholder: str):
        self.registry = registry
        self.connect = connect  # a plain driver connection, transactions as the driver does them
        self.mark = placeholder
        self.ids: list[int] = []

    def empty(self) -> None:
        with self.registry.cursor() as cr:
            cr.execute("DELETE FROM res_partner")

    def orm_create(self, values: list[dict]) -> None:
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            self.ids = env["res.partner"].create(values).ids

    def plain_create(self, values: list[dict]) -> None:
        now = fields.Datetime.now()
        m = self.mark
        cnx = self.connect()
        try:
            cur = cnx.cursor()
            cur.executemany(
                "INSERT INTO res_partner (name, email, company_id, create_date, write_date)"
                f" VALUES ({m}, {m}, {m}, {m}, {m})",
                [(v["name"], v["email"], None, now, now) for v in values],
            )
            cnx.commit()
        finally:
            cnx.close()

    def orm_read(self) -> list[str]:
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            return env["res.partner"].browse(self.ids).mapped("name")

    def plain_read(self) -> list[str]:
        cnx = self.connect()
        try:
            cur = cnx.cursor()
            cur.execute("SELECT id, name FROM res_partner")
            names = [name for _id, name in cur.fetchall()]
            cnx.commit()
            return names
        finally:
            cnx.close()

    def measure(self, count: int, repeat: int) -> list[tuple[str, float, float]]:
        values = rows(count)
        results = []
        ours, plain = best_of(
            repeat, self.empty, lambda: self.orm_create(values), lambda: self.plain_create(values)
        )
        results.append((f"create {count:,} partners", ours, plain))
        self.empty()
        self.orm_create(values)
        if len(self.orm_read()) != count or len(self.plain_read()) != count:
            raise RuntimeError("the read did not see every row")
        ours, plain = best_of(repeat, lambda: None, self.orm_read, self.plain_read)
        results.append((f"read one field of {count:,}", ours, plain))
        return results


def sqlite_case(folder: Path) -> tuple[Case, str]:
    path = folder / "bench.db"
    registry = Registry(f"sqlite:///{path}")

    def connect() -> sqlite3.Connection:
        # the settings the runtime's connections have (WAL is kept in the file)
        cnx = sqlite3.connect(path)
        cnx.execute("PRAGMA synchronous=NORMAL")
        cnx.execute("PRAGMA foreign_keys=ON")
        return cnx

    return Case(registry, connect, "?"), f"SQLite {sqlite3.sqlite_version}"


def postgres_case(admin_url: str, dbname: str) -> tuple[Case, str]:
    base, _, query = admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + dbname + (f"?{query}" if query else "")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
        version = admin.execute("SHOW server_version").fetchone()[0]
    registry = Registry(url)
    return Case(registry, lambda: psycopg.connect(url), "%s"), f"PostgreSQL {version}"


def drop_database(admin_url: str, dbname: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="records per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (best is kept)")
    parser.add_argument(
        "--pg-url",
        default="postgresql://127.0.0.1:5432/postgres",
        help="a PostgreSQL database to connect to while creating the temporary one",
    )
    parser.add_argument("--no-pg", action="store_true", help="only measure SQLite")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")

    results: list[tuple[str, str, float, float]] = []
    versions: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        case, version = sqlite_case(Path(folder))
        versions.append(version)
        try:
            results += [("sqlite", *r) for r in case.measure(args.rows, args.repeat)]
        finally:
            case.registry.close()
    if not args.no_pg:
        dbname = f"job_worker_bench_{os.getpid()}"
        try:
            case, version = postgres_case(args.pg_url, dbname)
            versions.append(version)
            try:
                results += [("postgresql", *r) for r in case.measure(args.rows, args.repeat)]
            finally:
                case.registry.close()
        finally:
            drop_database(args.pg_url, dbname)

    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, {platform.system()}, "
        f"Python {platform.python_version()}, {', '.join(versions)}"
    )
    print(f"best of {args.repeat} runs; ratio = ours / plain driver")
    print()
    print(f"| {'database':<10} | {'operation':<26} | {'ours':>9} | {'driver':>9} | {'ratio':>6} |")
    print(f"|{'-' * 12}|{'-' * 28}|{'-' * 11}|{'-' * 11}|{'-' * 8}|")
    for database, operation, ours, plain in results:
        print(
            f"| {database:<10} | {operation:<26} | {ours * 1000:>7.1f}ms | {plain * 1000:>7.1f}ms"
            f" | {ours / plain:>5.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
