"""Worker drain under a backlog: the same worker drains no-op jobs from a queue of
millions of rows with hundreds of thousands pending, and from a small table, in the
same run; the report is the ratio (a claim should cost the same whatever waits).

    python bench/bench_backlog.py --server postgresql://127.0.0.1:5432/postgres [--keep]

The large queue is a database of its own (``--name``), filled by ``gen_jobs.py``:
``--rows`` job rows (4 million: about 3 minutes on a 2-core machine), of which
``--pending-percent`` are pending no-op jobs (12 %: 480,000, a tenth of them due
later), in the channels root, exports, mail and reports. It is dropped at the end
unless ``--keep`` is given; a kept database is used again by the next run (the jobs a
run drains are put back to pending afterwards, so every run sees the same backlog).

The small table is a schema of its own in that database, holding ``--jobs`` no-op
jobs in the same channels, in the same proportions; it is dropped at the end.

Each drain starts a worker with ``--concurrency`` executors, lets it run ``--jobs``
jobs, and measures jobs done per second from the first start to the last end; per
table, with every channel's limit equal to the executors (each job needs a claim of
its own), and with a limit that does not bind (batches). A round drains both tables
one right after the other in each mode; the report gives, per mode, the median of
``--rounds`` rounds for each table and the median of the rounds' ratios (on a shared
machine the rates move from one minute to the next, a round's ratio much less).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import datetime
from urllib.parse import quote

import psycopg
from bench_worker import machine, set_default_limit, start_worker, stop_worker, wait
from gen_jobs import generate

from job_worker import SUPERUSER_ID, Registry, api

#: written on the database this benchmark makes: it never reuses nor drops another one
MARK = "job_worker backlog benchmark"
CHANNELS = ("root",) * 6 + ("exports",) * 2 + ("mail", "reports")  # gen_jobs' proportions
DRAINED = """
SELECT count(*), min(started_at), max(completed_at) FROM queue_job
 WHERE state = 'done' AND write_date >= %s AND started_at >= %s
"""


# -- the databases --------------------------------------------------------------------------


def _database_url(server: str, name: str) -> str:
    base, _, query = server.partition("?")
    url = f"{base.rsplit('/', 1)[0]}/{name}"
    return f"{url}?{query}" if query else url


def backlog_database(server: str, name: str, rows: int, pending_percent: int) -> str:
    """The URL of the large queue, made (and marked as ours) unless a kept one exists."""
    with psycopg.connect(server, autocommit=True) as admin:
        row = admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (name,),
        ).fetchone()
        if row is not None and row[0] != MARK:
            raise SystemExit(
                f"database {name!r} exists and was not made by this benchmark: choose"
                " another --name"
            )
        if row is None:
            admin.execute(f'CREATE DATABASE "{name}"')
            admin.execute(f"COMMENT ON DATABASE \"{name}\" IS '{MARK}'")
    url = _database_url(server, name)
    if row is None:
        began = time.perf_counter()
        print(f"filling {name}: {rows:,} job rows, {pending_percent} % pending", flush=True)
        generate(url, rows, pending_percent=pending_percent, runnable=True)
        print(f"  {time.perf_counter() - began:.0f} s", flush=True)
    return url


def drop_backlog_database(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def small_schema(url: str) -> tuple[str, str]:
    """A URL whose tables are in a new, empty schema of the database at ``url``."""
    schema = f"bench_small_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as cnx:
        cnx.execute(f'CREATE SCHEMA "{schema}"')
    return f"{url}?options={quote(f'-csearch_path={schema}')}", schema


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as cnx:
        cnx.execute(f'DROP SCHEMA "{schema}" CASCADE')


def enqueue_noops(registry: Registry, count: int) -> None:
    with registry.cursor() as cr:
        partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse([])
        for i in range(count):
            partner.with_delay(channel=CHANNELS[i % len(CHANNELS)]).exists()


def backlog(registry: Registry) -> tuple[int, int, int]:
    """Rows, pending jobs, and those due now."""
    with registry.cursor(readonly=True) as cr:
        cr.execute(
            "SELECT count(*), count(*) FILTER (WHERE state = 'pending'),"
            " count(*) FILTER (WHERE state = 'pending' AND scheduled_at <= %s) FROM queue_job",
            (db_now(registry),),
        )
        rows, pending, due = cr.fetchone()  # type: ignore[misc]
    return rows, pending, due


def db_now(registry: Registry) -> datetime:
    with registry.cursor(readonly=True) as cr:
        cr.execute("SELECT timezone('UTC', clock_timestamp())")
        return cr.fetchone()[0]  # type: ignore[index]


# -- a drain --------------------------------------------------------------------------------


def drain(registry: Registry, url: str, jobs: int, concurrency: int, limit: int) -> float:
    """Jobs/s of a worker that runs ``jobs`` jobs, from the first start to the last end;
    the jobs it ran go back to pending afterwards (the table stays as it was)."""
    since = db_now(registry)
    set_default_limit(registry, limit)
    process = start_worker(url, concurrency)
    try:
        wait(lambda: done_since(registry, since) >= jobs, 3600, "the drain")
    finally:
        stop_worker(process)  # jobs running then end first: they count too
    with registry.cursor(readonly=True) as cr:
        cr.execute(DRAINED, (since, since))
        count, first, last = cr.fetchone()  # type: ignore[misc]
    with registry.cursor() as cr:  # the next drain finds the same backlog
        cr.execute(
            "UPDATE queue_job SET state = 'pending', worker_id = NULL, started_at = NULL,"
            " heartbeat = NULL, completed_at = NULL, duration = NULL, result = NULL"
            " WHERE state = 'done' AND write_date >= %s AND started_at >= %s",
            (since, since),
        )
    return count / (last - first).total_seconds()


def done_since(registry: Registry, since: datetime) -> int:
    with registry.cursor(readonly=True) as cr:  # a range of the (state, write_date) index
        cr.execute(
            "SELECT count(*) FROM queue_job WHERE state = 'done' AND write_date >= %s", (since,)
        )
        return cr.fetchone()[0]  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="postgresql://127.0.0.1:5432/postgres")
    parser.add_argument("--name", default="job_worker_bench_backlog", help="the large queue")
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--pending-percent", type=int, default=12)
    parser.add_argument("--jobs", type=int, default=5_000, help="jobs run by each drain")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the large queue for next time")
    args = parser.parse_args()
    print(machine())
    url = backlog_database(args.server, args.name, args.rows, args.pending_percent)
    small_url, schema = small_schema(url)
    large = Registry(url)
    small = Registry(small_url)
    try:
        enqueue_noops(small, args.jobs)
        rows, pending, due = backlog(large)
        print(f"large queue: {rows:,} rows, {pending:,} pending ({due:,} due)", flush=True)
        if pending < 400_000:
            print("  (fewer than 400,000 pending: raise --rows or --pending-percent)")
        modes = {"limit = executors": args.concurrency, "limit not binding": max(args.jobs, 10_000)}
        rates: dict[tuple[str, str], list[float]] = {}
        for round_ in range(1, args.rounds + 1):
            for mode, limit in modes.items():
                for table, registry, target in (("small", small, small_url), ("large", large, url)):
                    rate = drain(registry, target, args.jobs, args.concurrency, limit)
                    rates.setdefault((mode, table), []).append(rate)
                    print(
                        f"  round {round_}, {table} table, {mode}: {rate:,.0f} jobs/s", flush=True
                    )
    finally:
        small.close()
        large.close()
        drop_schema(url, schema)
        if not args.keep:
            drop_backlog_database(args.server, args.name)
    print(
        f"\nPostgreSQL, {args.jobs:,} no-op jobs per drain, {args.concurrency} executors,"
        f" {args.rounds} rounds; large queue: {rows:,} rows, {pending:,} pending"
    )
    for mode in modes:
        small_rates, large_rates = rates[mode, "small"], rates[mode, "large"]
        ratios = [b / a for a, b in zip(small_rates, large_rates, strict=True)]
        print(
            f"  {mode:<18}  small table {statistics.median(small_rates):7,.0f} jobs/s"
            f"   large queue {statistics.median(large_rates):7,.0f} jobs/s"
            f"   = {statistics.median(ratios):.2f} x"
            f" (rounds: {', '.join(f'{ratio:.2f}' for ratio in ratios)})"
        )


if __name__ == "__main__":
    main()
