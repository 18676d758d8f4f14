"""Fill a PostgreSQL database with N job rows (default 1,000,000) for the dashboard benchmark.

    python bench/gen_jobs.py --database postgresql://127.0.0.1/job_worker_bench --rows 1000000

The rows are made by one INSERT ... SELECT over generate_series, so a million
rows take seconds. What they look like (a month of a busy queue):

- created over the last 30 days, newest ids last; 1 % of them in the last hour; the
  cluster setting ``retention_days`` is set to ``forever``, so that a worker started on
  them keeps the month (with the default of 7 days its maintenance would spend its
  time deleting three weeks of jobs);
- 90 % done, 3 % failed (half of them with their retries spent), 1 % cancelled,
  4 % pending (a tenth of those scheduled in the future), 2 % waiting, and one
  in 50,000 started (by a worker long gone); ``--pending-percent`` moves done rows to pending;
- channels root (60 %), exports, mail, reports; 10 users owning a tenth of the
  rows each: user 2 is "bench" (a Queue Job Manager, password "bench"), user 3
  "viewer" (a Queue Job User, with 40,000 pending jobs in 10^7 rows) and user 4
  "quiet" (a Queue Job User whose jobs are all finished: its active jobs go to
  user 1);
- failed jobs carry an exception name, a message and a traceback;
- with ``--runnable``, pending and waiting jobs call ``res.partner.exists()`` on
  no records (a no-op a worker can run), so the rows can serve as a backlog.

The database is dropped and created again when ``--recreate`` is given.
"""

from __future__ import annotations

import argparse
import time

import psycopg

from job_worker import SUPERUSER_ID, Registry, api
from job_worker.db.jobstore import job_store

INSERT = """
INSERT INTO queue_job (uuid, name, model_name, method_name, record_ids, args, kwargs, state, priority,
    channel, scheduled_at, max_retries, attempts, timeout, user_id, company_id, context, result,
    exc_name, exc_message, exc_info, worker_id, heartbeat, started_at, completed_at, cancelled_at,
    duration, create_date, write_date, fair_key, weight, backoffs)
SELECT
    gen_random_uuid()::text,
    (ARRAY['Export partners', 'Send reminder', 'Sync stock', 'Push invoice', 'Rebuild index'])[1 + g %% 5]
        || ' #' || g,
    CASE WHEN %(runnable)s AND s.state IN ('pending', 'waiting') THEN 'res.partner' ELSE
        (ARRAY['res.partner', 'res.partner', 'sale.order', 'account.move', 'stock.picking'])[1 + g %% 5]
    END,
    CASE WHEN %(runnable)s AND s.state IN ('pending', 'waiting') THEN 'exists' ELSE
        (ARRAY['export', 'send_reminder', 'sync', 'push', 'reindex'])[1 + g %% 5]
    END,
    CASE WHEN %(runnable)s AND s.state IN ('pending', 'waiting') THEN '[]'::jsonb
         ELSE jsonb_build_array(g %% 1000 + 1) END, '[]'::jsonb, '{}'::jsonb,
    s.state, 5 + g %% 11,
    CASE WHEN g / 100 %% 10 < 6 THEN 'root' WHEN g / 100 %% 10 < 8 THEN 'exports'
         WHEN g / 100 %% 10 < 9 THEN 'mail' ELSE 'reports' END,
    s.created + CASE WHEN s.state = 'pending' AND g / 7 %% 10 = 0 THEN interval '2 hours'
                     ELSE interval '0' END,
    5, CASE WHEN s.state = 'failed' THEN 6 - g %% 2 * 5 ELSE 0 END, 0,
    CASE WHEN s.state IN ('pending', 'waiting', 'started') AND 1 + g / 1000 %% 10 = %(quiet)s
         THEN 1 ELSE 1 + g / 1000 %% 10 END,
    1, '{"lang": "en_US", "tz": "UTC"}'::jsonb,
    CASE WHEN s.state = 'done' THEN '{"ok": true}'::jsonb END,
    CASE WHEN s.state = 'failed' THEN
        (ARRAY['builtins.ValueError', 'psycopg.OperationalError', 'TimeoutError'])[1 + g %% 3] END,
    CASE WHEN s.state = 'failed' THEN 'remote end refused the request' END,
    CASE WHEN s.state = 'failed' THEN '--- attempt 1 at ' || s.created::text
        || E' ---\\nTraceback (most recent call last):\\n  File "app.py", line 12, in push\\nValueError: refused' END,
    CASE WHEN s.state = 'started' THEN 'bench:1:w' END,
    CASE WHEN s.state = 'started' THEN s.created END,
    CASE WHEN s.state IN ('done', 'failed', 'started') THEN s.created + interval '1 second' END,
    CASE WHEN s.state IN ('done', 'failed') THEN s.created + interval '1 second' + s.took END,
    CASE WHEN s.state = 'cancelled' THEN s.created + interval '1 minute' END,
    CASE WHEN s.state IN ('done', 'failed') THEN extract(epoch FROM s.took) END,
    s.created,
    CASE WHEN s.state IN ('done', 'failed') THEN s.created + interval '1 second' + s.took
         WHEN s.state = 'cancelled' THEN s.created + interval '1 minute' ELSE s.created END,
    '', 1, 0
FROM generate_series(1, %(rows)s) AS g
CROSS JOIN LATERAL (SELECT
    CASE WHEN g %% 50000 = 777 THEN 'started'
         WHEN g %% 100 < 94 - %(pending)s THEN 'done' WHEN g %% 100 < 97 - %(pending)s THEN 'failed'
         WHEN g %% 100 < 98 - %(pending)s THEN 'cancelled' WHEN g %% 100 < 98 THEN 'pending'
         ELSE 'waiting' END AS state,
    CASE WHEN g > %(rows)s * 0.99
         THEN now() at time zone 'utc' - interval '1 hour' * (%(rows)s - g) / (%(rows)s * 0.01)
         ELSE now() at time zone 'utc' - interval '30 days' + interval '30 days' * g / %(rows)s - interval '1 hour'
    END AS created,
    interval '1 millisecond' * (5 + (g::bigint * 7919) %% 3000) AS took
) s
"""


def generate(database: str, rows: int, *, pending_percent: int = 4, runnable: bool = False) -> int:
    """Add ``rows`` job rows (and the users) to ``database``; returns the rows in the table."""
    if not 0 <= pending_percent <= 94:
        raise ValueError(f"pending percent {pending_percent!r}: expected 0 to 94")
    registry = Registry(database)
    try:
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            groups = {g.key: g.id for g in env["res.groups"].search([])}
            for login, keys in (
                ("bench", ["queue_job.group_user", "queue_job.group_manager"]),
                ("viewer", ["queue_job.group_user"]),
                ("quiet", ["queue_job.group_user"]),
            ):
                if not env["res.users"].search([("login", "=", login)]):
                    env["res.users"].create(
                        {
                            "name": login.title(),
                            "login": login,
                            "password": login,
                            "group_ids": [(6, 0, [groups[k] for k in keys])],
                        }
                    )
            for i in range(5, 11):
                if not env["res.users"].search([("login", "=", f"user{i}")]):
                    env["res.users"].create({"name": f"User {i}", "login": f"user{i}"})
            quiet = env["res.users"].search([("login", "=", "quiet")]).id
        with psycopg.connect(database, autocommit=True) as cnx:
            cnx.execute("ALTER TABLE queue_job DISABLE TRIGGER ALL")
            cnx.execute(
                INSERT,
                {"rows": rows, "pending": pending_percent, "runnable": runnable, "quiet": quiet},
            )
            cnx.execute("ALTER TABLE queue_job ENABLE TRIGGER ALL")
            cnx.execute(
                "INSERT INTO queue_job_dependency (job_id, parent_id, kind)"
                " SELECT w.id, w.id - 1, 'done' FROM queue_job w WHERE w.state = 'waiting'"
            )
            cnx.execute(
                "UPDATE queue_job SET graph_uuid = md5((id / 2)::text) WHERE state = 'waiting'"
                " OR id + 1 IN (SELECT id FROM queue_job WHERE state = 'waiting')"
            )
            cnx.execute("VACUUM ANALYZE queue_job")
            cnx.execute("VACUUM ANALYZE queue_job_dependency")
            count = cnx.execute("SELECT count(*) FROM queue_job").fetchone()[0]  # type: ignore[index]
        with registry.cursor() as cr:
            # the insert ran with the triggers off (the kept counts' among them)
            job_store(registry.backend).recount(cr)
            # a month of history is kept: a worker started on these rows (the dashboard
            # benchmark's drain) must not spend its time deleting the older three weeks
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["queue.config"].set_value("retention_days", "forever")
        with registry.cursor() as cr:  # a snapshot, as the maintenance worker would take
            api.Environment(cr, SUPERUSER_ID, {})["queue.maintenance"]._run_maintenance({})
        return int(count)
    finally:
        registry.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default="postgresql://127.0.0.1:5432/job_worker_bench")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--pending-percent", type=int, default=4, help="share of pending rows, 0 to 94 (4)"
    )
    parser.add_argument(
        "--runnable", action="store_true", help="pending and waiting jobs are no-ops a worker runs"
    )
    parser.add_argument(
        "--recreate", action="store_true", help="drop and create the database first"
    )
    args = parser.parse_args()
    if args.recreate:
        base, name = args.database.rsplit("/", 1)
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
    started = time.perf_counter()
    count = generate(
        args.database, args.rows, pending_percent=args.pending_percent, runnable=args.runnable
    )
    took = time.perf_counter() - started
    print(f"{count:,} job rows in {args.database} ({took:.1f} s to insert, analyze, snapshot)")


if __name__ == "__main__":
    main()
