"""The worker's operations on PostgreSQL.

- Claimers serialise on a transaction advisory lock, then read the channel
  state in a *new statement*: under READ COMMITTED that statement's snapshot
  includes every claim committed by the previous holder, so the running counts
  are exact. The claim commits asynchronously: losing it in a crash only puts
  the job back to pending, and any later commit that depends on it (the job's
  own, synchronous) flushes it first.
- A job's transaction holds a transaction advisory lock on the job id for its
  whole life. Reclaiming a job first takes that lock with ``try``: it succeeds
  only when the executor's transaction is over (committed, rolled back, or its
  session gone), so an executor that may still commit is never overtaken.
- ``LISTEN job_worker`` wakes idle workers; the payload is the schema of the
  queue, so schemas sharing one database do not wake each other.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

import psycopg

from .jobstore import (
    CHANNEL_STATE,
    CLAIM_COLUMNS,
    ChannelPlan,
    ClaimedJob,
    JobStore,
    Listener,
    Session,
)
from .postgres import PostgresCursor, connection_options

if TYPE_CHECKING:
    from .cursor import Cursor
    from .postgres import PostgresBackend

_logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "job_worker"
#: second key of the advisory locks taken on behalf of the whole queue (first key: the schema)
CLAIM_LOCK = 0
MAINTENANCE_LOCK = -1

# -- name: session_settings
# Every session of the worker: a backend whose client died mid-query notices
# within a second.
SESSION_SETTINGS = "SET client_connection_check_interval = 1000"

# -- name: role_settings
# The worker's own sessions (not the executors', where jobs run their own queries)
# never compile their statements to machine code: each is short (milliseconds at
# most), JIT compiling one costs far more (~100 ms), and a prepared generic plan
# whose estimated cost passes jit_above_cost is compiled again at every execution.
# The supervisor never waits long on a row another transaction holds: it retries on
# its next turn instead of freezing its event loop.
ROLE_SETTINGS = {
    "supervisor": ("SET jit = off", "SET lock_timeout = 2000"),
    "maintenance": ("SET jit = off",),
}

# -- name: now
NOW = "SELECT timezone('UTC', statement_timestamp())"

# -- name: lock_claims
# Claims commit without waiting for the disk (see the module docstring). Their
# statements use generic plans: a custom plan would be made again at every claim,
# and planning `scheduled_at <= now` probes the ends of the index, which are full
# of the dead row versions a fast drain leaves behind.
LOCK_CLAIMS = """
SELECT set_config('synchronous_commit', 'off', true),
       set_config('plan_cache_mode', 'force_generic_plan', true),
       pg_advisory_xact_lock(hashtext(current_schema() || '.queue_job'), %s)
"""

# -- name: channel_state_at
# The shared channel state query, and the clock read after its snapshot: one row
# with the clock alone when no channel has pending jobs.
CHANNEL_STATE_AT = f"""
SELECT s.*, c.now FROM (SELECT timezone('UTC', clock_timestamp()) AS now) c
  LEFT JOIN ({CHANNEL_STATE.strip()}) s ON true
"""

# -- name: take
# The best due jobs of each channel with room, at most `free` per channel, then
# the best `wanted` of those, marked started. SKIP LOCKED passes over jobs that
# another transaction is changing (a cancel, a requeue).
#
# The plan is generic (see lock_claims), made without the parameters' values. Left
# to guess, the planner would count 100 channels (any function's default) of 10 % of
# their due jobs each (a LIMIT it cannot evaluate): an estimate that grows with the
# backlog (1.3 M for 400,000 pending jobs, for a claim that reads a few index pages).
# Two constants written into the text bound it by the claim's real work, without
# ever cutting: {channels}, a power of two at least the channels in the plan, and
# {rows}, a power of two at least the most jobs one channel may give. A channel's
# jobs come up one at a time through the lock to `LIMIT plan.free`, which stops
# the index scan, and the locking, at `free` jobs (no ORDER BY at that level: it
# would sort, and so lock, all {rows} first; the level below gives them in order).
TAKE = f"""
WITH plan AS (
    SELECT * FROM json_to_recordset(%s::json) AS p(channel text, free int) LIMIT {{channels}}
), candidates AS (
    SELECT j.id, j.priority, j.scheduled_at
      FROM plan, LATERAL (
        SELECT * FROM (
            SELECT id, priority, scheduled_at FROM queue_job
             WHERE state = 'pending' AND channel = plan.channel AND scheduled_at <= %s
             ORDER BY priority, scheduled_at, id
             LIMIT {{rows}}
             FOR UPDATE SKIP LOCKED) best
         LIMIT plan.free) j
), picked AS (
    SELECT id FROM candidates ORDER BY priority, scheduled_at, id LIMIT %s
)
UPDATE queue_job j
   SET state = 'started', worker_id = %s, started_at = %s, heartbeat = %s, write_date = %s
  FROM picked
 WHERE j.id = picked.id
RETURNING {
    ", ".join(
        f"j.{c}::text" if c in ("record_ids", "args", "kwargs", "context") else f"j.{c}"
        for c in CLAIM_COLUMNS
    )
}
"""


def _take_sql(channels: int, rows: int) -> str:
    """TAKE for a plan of ``channels`` channels giving at most ``rows`` jobs each, both
    rounded up to a power of two: a few statements, each prepared once."""
    return _take_text(_power_of_two(channels), _power_of_two(rows))


@lru_cache(maxsize=64)
def _take_text(channels: int, rows: int) -> str:
    return TAKE.format(channels=channels, rows=rows)


def _power_of_two(count: int) -> int:
    return 1 << max(count - 1, 0).bit_length()


# -- name: heartbeat_jobs
# A job whose row its executor is writing (marking a batch done) is passed over: its
# executor lives, and waiting for that row while holding another job's row would
# deadlock with the executor, which locks the rows of its batch in its own order.
HEARTBEAT_JOBS = """
UPDATE queue_job SET heartbeat = %s
 WHERE id IN (SELECT id FROM queue_job WHERE state = 'started' AND worker_id = %s
              FOR UPDATE SKIP LOCKED)
"""

# -- name: lock_jobs
# Held by the jobs' transaction until it ends (see the module docstring).
LOCK_JOBS = """
SELECT count(pg_advisory_xact_lock(hashtext(current_schema() || '.queue_job.run'), id))
  FROM unnest(%s::integer[]) AS id
"""

# -- name: executor_gone
EXECUTOR_GONE = (
    "SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.queue_job.run'), %s)"
)

# -- name: terminate_session
TERMINATE_SESSION = "SELECT pg_terminate_backend(%s)"

# -- name: elect
ELECT = "SELECT pg_try_advisory_lock(hashtext(current_schema() || '.queue_job'), %s)"

# -- name: notify
NOTIFY = f"SELECT pg_notify('{NOTIFY_CHANNEL}', current_schema())"


class PostgresJobStore(JobStore):
    dialect = "postgresql"
    backend: PostgresBackend
    heartbeat_jobs_sql = HEARTBEAT_JOBS

    def session(self, *, role: str) -> PostgresSession:
        return PostgresSession(self.backend, role)

    def now(self, cr: Cursor) -> datetime:
        cr.execute(NOW, ())
        row = cr.fetchone()
        assert row is not None
        return row[0]

    def _lock_and_read(self, cr: Cursor) -> tuple[list[Any], datetime]:
        # one round trip: the BEGIN, the lock, then the channel state in a statement of its
        # own (its snapshot is taken once the lock is held); the clock comes with the
        # state: clock_timestamp() is read while the statement runs, after its snapshot
        assert isinstance(cr, PostgresCursor)
        _lock, rows = cr.execute_together(
            [(LOCK_CLAIMS, (CLAIM_LOCK,)), (CHANNEL_STATE_AT, ())], prepared=True
        )
        return [row[:-1] for row in rows if row[0] is not None], rows[0][-1]

    def _take(
        self, cr: Cursor, plan: ChannelPlan, wanted: int, worker_id: str, now: datetime
    ) -> list[ClaimedJob]:
        cr.execute(*self._take_statement(plan, wanted, worker_id, now))
        return [ClaimedJob.from_row(row) for row in cr.fetchall()]

    def _take_and_commit(
        self, cr: Cursor, plan: ChannelPlan, wanted: int, worker_id: str, now: datetime
    ) -> tuple[list[ClaimedJob], datetime | None]:
        if not plan.free or plan.rate_limited:
            return super()._take_and_commit(cr, plan, wanted, worker_id, now)
        # one round trip: the jobs, when the channels' next job becomes due (read every
        # time, used when a channel came up short), and the commit
        assert isinstance(cr, PostgresCursor)
        take, due = cr.execute_and_commit(
            [self._take_statement(plan, wanted, worker_id, now), self._next_due(plan, now)],
            prepared=True,
        )
        return [ClaimedJob.from_row(row) for row in take], due[0][0] if due else None

    @staticmethod
    def _take_statement(
        plan: ChannelPlan, wanted: int, worker_id: str, now: datetime
    ) -> tuple[str, Sequence[Any]]:
        # the plan as one JSON text (far cheaper to send than two arrays); no channel needs
        # more candidates than the claim wants: each one is locked (FOR UPDATE)
        free = {channel: min(count, wanted) for channel, count in plan.free.items()}
        channels = json.dumps([{"channel": c, "free": count} for c, count in free.items()])
        sql = _take_sql(len(free), max(free.values()))
        return sql, (channels, now, wanted, worker_id, now, now, now)

    def _run_locks(self, job_ids: Sequence[int]) -> list[tuple[str, Sequence[Any]]]:
        return [(LOCK_JOBS, (list(job_ids),))]

    def executor_gone(self, cr: Cursor, job_id: int) -> bool:
        cr.execute(EXECUTOR_GONE, (job_id,))
        row = cr.fetchone()
        return bool(row and row[0])

    def terminate_session(self, cr: Cursor, session_id: int | None) -> None:
        if session_id:
            cr.execute(TERMINATE_SESSION, (session_id,))

    def elect(self, session: Session, name: str, holder: str, ttl: float) -> bool:
        # A session advisory lock: held for as long as the supervisor's connection lives,
        # released by PostgreSQL the moment that session ends.
        assert isinstance(session, PostgresSession)
        if name in session.held:
            return True
        with session.cursor(None) as cr:
            cr.execute(ELECT, (MAINTENANCE_LOCK,))
            row = cr.fetchone()
        if row and row[0]:
            session.held.add(name)
            return True
        return False

    def notify_at_commit(self, cr: Cursor) -> None:
        cr.precommit.add(partial(cr.execute, NOTIFY, ()), key=NOTIFY)

    def listener(self) -> PostgresListener:
        return PostgresListener(self.backend)


class PostgresSession(Session):
    """A psycopg connection of its own (not from the pool): its advisory locks and its
    death are this component's own."""

    def __init__(self, backend: PostgresBackend, role: str):
        self.backend = backend
        self.role = role
        self._cnx: psycopg.Connection | None = None
        self.held: set[str] = set()  # session advisory locks held (elections)

    def _connect(self) -> psycopg.Connection:
        if self._cnx is None or self._cnx.closed:
            self.held.clear()
            cnx = psycopg.connect(
                self.backend.url,
                **connection_options(self.backend.url),
                autocommit=True,  # the cursors send BEGIN themselves, with a statement if they can
                connect_timeout=5,
                application_name=f"job_worker {self.role}",
                # the hot statements are prepared by name (execute_together): psycopg's own
                # would make it deallocate them all at the next rollback
                prepare_threshold=None,
            )
            settings = [SESSION_SETTINGS, *ROLE_SETTINGS.get(self.role, ())]
            cnx.execute("; ".join(settings))  # no parameters: one message, one round trip
            self._cnx = cnx
            self.session_id = cnx.info.backend_pid
        return self._cnx

    def cursor(self, registry: Any, *, readonly: bool = False) -> Cursor:
        cnx = self._connect()
        cr = PostgresCursor(self.backend, cnx, self._release)
        cr.registry = registry
        return cr

    def _release(self, cnx: Any, healthy: bool) -> None:
        if not healthy or cnx.broken:
            self.close()

    @property
    def broken(self) -> bool:
        return self._cnx is None or self._cnx.broken or self._cnx.closed

    def close(self) -> None:
        cnx, self._cnx = self._cnx, None
        self.held.clear()
        self.session_id = None
        if cnx is not None:
            try:
                cnx.close()
            except Exception:  # closing a dead connection may fail: it is gone either way
                pass


class PostgresListener(Listener):
    """``LISTEN job_worker`` on a connection of its own, reopened when it breaks."""

    def __init__(self, backend: PostgresBackend):
        self.backend = backend
        self._cnx: psycopg.Connection | None = None
        self._schema = ""

    def _connect(self) -> psycopg.Connection:
        if self._cnx is None or self._cnx.closed:
            cnx = psycopg.connect(
                self.backend.url,
                **connection_options(self.backend.url),
                autocommit=True,
                connect_timeout=5,
                application_name="job_worker listener",
            )
            row = cnx.execute("SELECT current_schema()").fetchone()
            self._schema = row[0] if row else ""
            cnx.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._cnx = cnx
        return self._cnx

    def open(self) -> None:
        self._connect()

    def fileno(self) -> int | None:
        return None if self._cnx is None or self._cnx.closed else self._cnx.pgconn.socket

    def woken(self) -> bool:
        if self._cnx is None:
            return False
        pgconn = self._cnx.pgconn
        try:
            pgconn.consume_input()
        except psycopg.Error:
            self.close()
            return True  # claim: we may have missed a wake-up while the link was down
        woken = False
        while (notice := pgconn.notifies()) is not None:
            if notice.extra.decode() == self._schema:
                woken = True
        return woken

    def close(self) -> None:
        cnx, self._cnx = self._cnx, None
        if cnx is not None:
            try:
                cnx.close()
            except Exception:
                pass
