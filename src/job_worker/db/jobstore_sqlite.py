"""The job store on SQLite: every statement that changes a job's state, whole.

SQLite has one writer at a time and no ``SKIP LOCKED``, ``NOTIFY`` or
advisory locks, which makes some things simpler and some different:

- A claim runs under ``BEGIN IMMEDIATE``: it holds the database's write lock,
  so no other claimer can interleave and the channel counts are exact.
- A job's transaction does *not* start with ``BEGIN IMMEDIATE`` (that would
  hold the single write lock for the whole run of the job, so a job that
  sleeps would stop every other writer). Its reads run outside a transaction,
  each seeing the latest commit (like PostgreSQL's READ COMMITTED), and its
  first write opens ``BEGIN IMMEDIATE``: from then until the commit the job
  holds the write lock. Whether a statement writes is what its caller says
  (``cr.execute(..., write=...)``; this module's statements always say), else
  the one rule of :func:`statement_writes`. A job that writes early and then works for long blocks
  other writers for that long; the supervisor's own statements use a short
  busy timeout and retry later, so its timers and signals keep working.
- An executor's effects die with its process (the OS drops its locks and the
  uncommitted WAL frames are ignored), so a killed child is gone for sure.
  For a whole worker that stopped heart-beating, the pid recorded in
  ``queue_worker`` on this host must be dead too: one file, one host.
- Times: the host's clock is the database's (:func:`clock`), one file on one host.
- Wake-ups: idle workers poll ``PRAGMA data_version`` (it changes when another
  connection commits) every few milliseconds and claim only then or when a
  scheduled job becomes due; jobs enqueued by this very process wake it at
  once (:func:`~.jobstore.fire_local_enqueue`).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from ..orm.fields import INT_MAX, INT_MIN, Datetime
from .jobstore import (
    CLAIM_COLUMNS,
    Candidate,
    ChannelBackoffState,
    ClaimedJob,
    FailingJob,
    FairRow,
    FinishedRow,
    JobStore,
    Listener,
    Session,
    StaleJob,
    _as_datetime,
    fire_local_enqueue,
    off_local_enqueue,
    on_local_enqueue,
)
from .sqlite import SqliteCursor

if TYPE_CHECKING:
    from .cursor import Cursor
    from .sqlite import SqliteBackend


def clock() -> datetime:
    """The queue's one clock on SQLite (naive UTC): one file on one host, so the host's
    clock is the database's. Every time the store writes comes from here."""
    return Datetime.now()


# Ids and states are given as one JSON text each (`json_each`): no limit on the count.

# -- name: channel_state
# Every channel that has pending jobs (a loose index scan: one index probe per
# channel, however many jobs wait), with its limit row, the weight of its jobs
# started right now, whether it has pending jobs with a fair key, the key that had
# its last turn and the jobs it has had in that turn. Without statistics SQLite's planner prefers any
# (state, ...) index for "state = 'pending'" and then scans every pending job:
# the partial index is named.
CHANNEL_STATE = """
WITH RECURSIVE channels(name) AS (
    SELECT (SELECT min(channel) FROM queue_job INDEXED BY queue_job_pending
             WHERE state = 'pending')
  UNION ALL
    SELECT (SELECT min(channel) FROM queue_job INDEXED BY queue_job_pending
             WHERE state = 'pending' AND channel > c.name)
      FROM channels c WHERE c.name IS NOT NULL
)
SELECT c.name, l."limit", l.rate_limit, l.rates,
       (SELECT coalesce(sum(r.weight), 0) FROM queue_job r
         WHERE r.state = 'started' AND r.channel = c.name),
       (SELECT min(f.fair_key) FROM queue_job f INDEXED BY queue_job_pending_keyed
         WHERE f.state = 'pending' AND f.channel = c.name AND f.fair_key <> '') IS NOT NULL,
       ch.fair_cursor, ch.fair_turn, ch.backoff_until
  FROM channels c LEFT JOIN queue_limit l ON l.name = c.name
       LEFT JOIN queue_channel ch ON ch.name = c.name
 WHERE c.name IS NOT NULL
"""

# -- name: next_scheduled
# When the next pending job that is not due yet becomes due (the claim adds a
# condition on the channels it asks about).
NEXT_SCHEDULED = """
SELECT min(scheduled_at) FROM queue_job INDEXED BY queue_job_pending_due
 WHERE state = 'pending' AND scheduled_at > %s
"""

# -- name: next_level
# The best priority at or above a floor with pending jobs in a channel (one probe).
NEXT_LEVEL = """
SELECT min(priority) FROM queue_job INDEXED BY queue_job_pending
 WHERE state = 'pending' AND channel = %s AND priority >= %s
"""

# -- name: take_level
# The best due jobs without a fair key of one channel at one priority: an index range
# scan in the order of service. (Across priorities SQLite cannot see that the key ''
# keeps the index in that order, and would sort every pending job of the channel:
# the claim walks the channel's priorities instead, one probe each.)
TAKE_LEVEL = """
SELECT id, priority, scheduled_at, weight FROM queue_job INDEXED BY queue_job_pending
 WHERE state = 'pending' AND channel = %s AND priority = %s AND fair_key = ''
   AND scheduled_at <= %s
 ORDER BY scheduled_at, id LIMIT %s
"""

# -- name: fair_level
# The best due priority of a channel at or above a floor.
FAIR_LEVEL = """
SELECT priority FROM queue_job INDEXED BY queue_job_pending
 WHERE state = 'pending' AND channel = %s AND priority >= %s AND scheduled_at <= %s
 ORDER BY priority LIMIT 1
"""

# -- name: next_fair_key
# The first key after a key with pending jobs at a priority (one index probe).
NEXT_FAIR_KEY = """
SELECT min(fair_key) FROM queue_job INDEXED BY queue_job_pending
 WHERE state = 'pending' AND channel = %s AND priority = %s AND fair_key > %s
"""

# -- name: fair_key_from
# The first key from a key on, itself included.
FAIR_KEY_FROM = """
SELECT min(fair_key) FROM queue_job INDEXED BY queue_job_pending
 WHERE state = 'pending' AND channel = %s AND priority = %s AND fair_key >= %s
"""

# -- name: fair_key_jobs
# The first due jobs of one key at one priority.
FAIR_KEY_JOBS = """
SELECT id, scheduled_at, weight FROM queue_job INDEXED BY queue_job_pending
 WHERE state = 'pending' AND channel = %s AND priority = %s AND fair_key = %s
   AND scheduled_at <= %s
 ORDER BY scheduled_at, id LIMIT %s
"""

# -- name: fair_key_weight
FAIR_KEY_WEIGHT = "SELECT weight FROM queue_fair_key WHERE channel = %s AND fair_key = %s"

# -- name: set_fair_cursor
SET_FAIR_CURSOR = """
INSERT INTO queue_channel (name, fair_cursor, fair_turn) VALUES (%s, %s, %s)
ON CONFLICT (name) DO UPDATE SET fair_cursor = excluded.fair_cursor, fair_turn = excluded.fair_turn
"""

# -- name: mark_started
MARK_STARTED = f"""
UPDATE queue_job SET state = 'started', worker_id = %s, started_at = %s, heartbeat = %s,
       write_date = %s
 WHERE id IN (SELECT value FROM json_each(%s)) AND state = 'pending'
RETURNING {", ".join(CLAIM_COLUMNS)}
"""

# -- name: window_usage
# The starts of a channel in the window that ends now, at most the window's count of
# them, and the oldest of those.
WINDOW_USAGE = """
SELECT count(*), min(started_at) FROM (
    SELECT started_at FROM queue_channel_start WHERE channel = %s AND started_at > %s
     ORDER BY started_at DESC LIMIT %s)
"""

# -- name: log_starts
# `count` starts of a channel at `now`, in its start log.
LOG_STARTS = """
INSERT INTO queue_channel_start (channel, started_at)
SELECT %s, %s FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s)
                    SELECT i FROM n)
"""

# -- name: forget_starts
# Starts that have left the channel's longest window.
FORGET_STARTS = "DELETE FROM queue_channel_start WHERE channel = %s AND started_at <= %s"

# -- name: forget_old_starts
# The maintenance's sweep of the start log: starts older than the longest window.
FORGET_OLD_STARTS = "DELETE FROM queue_channel_start WHERE started_at < %s"

# -- name: check_jobs
# (The caller adds the condition on the ids.)
CHECK_JOBS = "SELECT id FROM queue_job WHERE state = 'started' AND worker_id = %s"

# -- name: heartbeat_worker
HEARTBEAT_WORKER = "UPDATE queue_worker SET heartbeat = %s WHERE worker_id = %s"

# -- name: heartbeat_jobs
HEARTBEAT_JOBS = "UPDATE queue_job SET heartbeat = %s WHERE state = 'started' AND worker_id = %s"

# -- name: register_worker
REGISTER_WORKER = """
INSERT INTO queue_worker (worker_id, hostname, pid, concurrency, channels, heartbeat_interval,
                          version, started_at, heartbeat, create_date, write_date)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""

# -- name: stop_worker
STOP_WORKER = "UPDATE queue_worker SET stopped_at = %s, heartbeat = %s WHERE worker_id = %s"

# -- name: stale_candidates
# Started jobs whose heartbeat stopped: their worker died, or lost the database
# for longer than the stale window.
STALE_CANDIDATES = """
SELECT j.id, j.worker_id, w.hostname, w.pid
  FROM queue_job j LEFT JOIN queue_worker w ON w.worker_id = j.worker_id
 WHERE j.state = 'started' AND (j.heartbeat IS NULL OR j.heartbeat < %s)
 ORDER BY j.id LIMIT %s
"""

# -- State changes of a job. Each names the state it expects; those of a started job
# also its worker when given one: `(%s IS NULL OR worker_id = %s)`, the worker id
# twice, NULL for no guard (run_now, a reclaim of a job that had no worker).

# -- name: start
# pending -> started, for run_now() (the worker's claim is `mark_started`).
START = """
UPDATE queue_job SET state = 'started', worker_id = %s, started_at = %s, heartbeat = %s,
       write_date = %s
 WHERE id = %s AND state = 'pending'
"""

# -- name: finish
# started -> done, with the result (JSON text) and the duration.
FINISH = """
UPDATE queue_job SET state = 'done', result = %s, duration = %s, completed_at = %s,
       write_date = %s
 WHERE id = %s AND state = 'started' AND (%s IS NULL OR worker_id = %s)
RETURNING has_dependents
"""

# -- name: failing_job
FAILING_JOB = """
SELECT attempts, max_retries, exc_info, started_at, has_dependents, worker_id, channel, backoffs
  FROM queue_job WHERE id = %s AND state = %s AND (%s IS NULL OR worker_id = %s)
"""

# -- name: retry
# A failed attempt, retried: pending again, due after the backoff.
RETRY = """
UPDATE queue_job SET state = 'pending', exc_name = %s, exc_message = %s, exc_info = %s,
       attempts = %s, write_date = %s, scheduled_at = %s, worker_id = NULL, heartbeat = NULL
 WHERE id = %s AND state = %s AND (%s IS NULL OR worker_id = %s)
"""

# -- name: fail
# A failed attempt, the last one: failed.
FAIL = """
UPDATE queue_job SET state = 'failed', exc_name = %s, exc_message = %s, exc_info = %s,
       attempts = %s, write_date = %s, completed_at = %s, duration = %s
 WHERE id = %s AND state = %s AND (%s IS NULL OR worker_id = %s)
"""

# -- name: return_to_pending
# started -> pending, no attempt counted (a graceful stop, jobs given but not begun).
RETURN_TO_PENDING = """
UPDATE queue_job SET state = 'pending', worker_id = NULL, heartbeat = NULL, started_at = NULL,
       write_date = %s
 WHERE id IN (SELECT value FROM json_each(%s)) AND state = 'started'
   AND (%s IS NULL OR worker_id = %s)
RETURNING id
"""

# -- name: back_off
# The job paused its channel (ChannelBackoff): pending again, attempts as they were (the
# caller passes the job's own), backoffs + 1, due as it was: the pause is the channel's,
# so lifting it lets the job run at once.
BACK_OFF = """
UPDATE queue_job SET state = 'pending', exc_name = %s, exc_message = %s, exc_info = %s,
       attempts = %s, write_date = %s, backoffs = COALESCE(backoffs, 0) + 1, worker_id = NULL,
       heartbeat = NULL
 WHERE id = %s AND state = %s AND (%s IS NULL OR worker_id = %s)
"""

# -- name: back_off_channel
# Pause a channel until a moment, by name: a pause in force that ends later is kept, with
# its reason and job (a later backoff extends, a shorter one changes nothing); the counter
# grows either way. Returns the end of the pause in force. (Times are ISO text of one
# format: they compare as text; SQLite's two-argument max() is its GREATEST, and a NULL
# there gives NULL, hence the COALESCE.)
BACK_OFF_CHANNEL = """
INSERT INTO queue_channel (name, backoff_until, backoff_reason, backoff_job_id, backoff_set_at,
                           backoff_count, create_date, write_date)
VALUES (%s, %s, %s, %s, %s, 1, %s, %s)
ON CONFLICT (name) DO UPDATE SET
    backoff_until = max(COALESCE(queue_channel.backoff_until, ''), excluded.backoff_until),
    backoff_reason = CASE WHEN queue_channel.backoff_until >= excluded.backoff_until
                          THEN queue_channel.backoff_reason ELSE excluded.backoff_reason END,
    backoff_job_id = CASE WHEN queue_channel.backoff_until >= excluded.backoff_until
                          THEN queue_channel.backoff_job_id ELSE excluded.backoff_job_id END,
    backoff_set_at = CASE WHEN queue_channel.backoff_until >= excluded.backoff_until
                          THEN queue_channel.backoff_set_at ELSE excluded.backoff_set_at END,
    backoff_count = COALESCE(queue_channel.backoff_count, 0) + 1,
    write_date = excluded.write_date
RETURNING backoff_until
"""

# -- name: channel_backoffs
# The pauses in force at a moment.
CHANNEL_BACKOFFS = """
SELECT name, backoff_until, backoff_reason, backoff_job_id, backoff_set_at
  FROM queue_channel WHERE backoff_until > %s ORDER BY name
"""

# -- name: lift_channel_backoff
# A manager ends a channel's pause now (its counter stays).
LIFT_CHANNEL_BACKOFF = """
UPDATE queue_channel SET backoff_until = NULL, backoff_reason = NULL, backoff_job_id = NULL,
       backoff_set_at = NULL, write_date = %s
 WHERE name = %s AND backoff_until > %s
"""

# -- name: exc_infos
EXC_INFOS = "SELECT id, exc_info FROM queue_job WHERE id IN (SELECT value FROM json_each(%s))"

# -- name: set_exc_info
SET_EXC_INFO = "UPDATE queue_job SET exc_info = %s WHERE id = %s"

# -- name: force_done
# Manual actions: whatever the state (the caller checked it is allowed).
FORCE_DONE = """
UPDATE queue_job SET state = 'done', completed_at = %s, write_date = %s, cascaded_from_id = NULL
 WHERE id IN (SELECT value FROM json_each(%s)) RETURNING id, has_dependents
"""

# -- name: force_failed
FORCE_FAILED = """
UPDATE queue_job SET state = 'failed', completed_at = %s, write_date = %s, cascaded_from_id = NULL,
       exc_name = COALESCE(exc_name, %s), exc_message = %s
 WHERE id IN (SELECT value FROM json_each(%s)) RETURNING id, has_dependents
"""

# -- name: force_cancelled
FORCE_CANCELLED = """
UPDATE queue_job SET state = 'cancelled', cancelled_at = %s, write_date = %s,
       cascaded_from_id = NULL
 WHERE id IN (SELECT value FROM json_each(%s)) RETURNING id, has_dependents
"""

# -- name: requeue
REQUEUE = """
UPDATE queue_job SET state = 'pending', attempts = 0, exc_name = NULL, exc_message = NULL,
       exc_info = NULL, result = NULL, completed_at = NULL, cancelled_at = NULL,
       started_at = NULL, duration = NULL, worker_id = NULL, heartbeat = NULL,
       cascaded_from_id = NULL, scheduled_at = %s, write_date = %s, backoffs = 0
 WHERE id IN (SELECT value FROM json_each(%s))
"""

# -- Graph cascades (PRODUCT.md 4): the reads and writes of queue.states.evaluate.

# -- name: dependents
DEPENDENTS = """
SELECT DISTINCT job_id FROM queue_job_dependency
 WHERE parent_id IN (SELECT value FROM json_each(%s))
"""

# -- name: lock_dependents
# The transaction's write lock (taken before this statement) is the lock: no FOR UPDATE.
LOCK_DEPENDENTS = """
SELECT id FROM queue_job
 WHERE id IN (SELECT value FROM json_each(%s)) AND state IN (SELECT value FROM json_each(%s))
 ORDER BY id
"""

# -- name: edges
EDGES = """
SELECT d.job_id, d.parent_id, d.kind, p.state
  FROM queue_job_dependency d JOIN queue_job p ON p.id = d.parent_id
 WHERE d.job_id IN (SELECT value FROM json_each(%s)) ORDER BY d.job_id, d.parent_id
"""

# -- name: release
RELEASE = """
UPDATE queue_job SET state = 'pending', write_date = %s
 WHERE id IN (SELECT value FROM json_each(%s)) AND state = 'waiting'
"""

# -- name: wait_back
WAIT_BACK = """
UPDATE queue_job SET state = 'waiting', write_date = %s
 WHERE id IN (SELECT value FROM json_each(%s)) AND state = 'pending'
"""

# -- name: fail_dependents
# The diagnosis comes twice: after a newline to append, alone for a job that had none.
FAIL_DEPENDENTS = """
UPDATE queue_job SET state = 'failed', exc_name = %s, exc_message = %s,
       exc_info = COALESCE(exc_info || %s, %s),
       completed_at = %s, write_date = %s, cascaded_from_id = %s
 WHERE id IN (SELECT value FROM json_each(%s)) AND state IN ('waiting', 'pending')
"""

# -- name: cancel_dependents
CANCEL_DEPENDENTS = """
UPDATE queue_job SET state = 'cancelled', cancelled_at = %s, write_date = %s,
       cascaded_from_id = %s
 WHERE id IN (SELECT value FROM json_each(%s)) AND state IN ('waiting', 'pending')
"""

# -- name: rewait_decided
# Dependents whose fate these parents decided (failed or cancelled with them) wait again.
REWAIT_DECIDED = """
UPDATE queue_job SET state = 'waiting', cascaded_from_id = NULL, exc_name = NULL,
       exc_message = NULL, completed_at = NULL, cancelled_at = NULL, write_date = %s
 WHERE cascaded_from_id IN (SELECT value FROM json_each(%s))
   AND state IN ('failed', 'cancelled')
RETURNING id
"""

# -- name: rewait_released
# on_error dependents released by these parents' failure, not started yet, wait again.
REWAIT_RELEASED = """
UPDATE queue_job SET state = 'waiting', write_date = %s
 WHERE state = 'pending' AND id IN (SELECT d.job_id FROM queue_job_dependency d
                                     WHERE d.parent_id IN (SELECT value FROM json_each(%s))
                                       AND d.kind = 'error')
RETURNING id
"""

# -- name: purge
# One batch of finished jobs last changed before the cutoff, oldest first.
PURGE = """
DELETE FROM queue_job WHERE id IN (
    SELECT id FROM queue_job
     WHERE state IN ('done', 'failed', 'cancelled') AND write_date < %s
     ORDER BY id LIMIT %s)
"""

# -- Enqueue-time channel rules (PRODUCT.md 12): weight, max_depth. -----------------

# -- name: channel_rules
# (The caller adds the condition on the channel names.)
CHANNEL_RULES = 'SELECT name, "limit", max_depth, depth_policy FROM queue_limit'

# -- name: channel_depth
# Jobs of the channel waiting or pending. No lock of its own: the store runs it as a
# write (write=True), inside the transaction that holds the database's one write lock
# until it commits, so no other enqueuer can add a job between the count and the commit.
CHANNEL_DEPTH = """
SELECT (SELECT count(*) FROM queue_job INDEXED BY queue_job_pending
         WHERE state = 'pending' AND channel = %s)
     + (SELECT count(*) FROM queue_job WHERE state = 'waiting' AND channel = %s)
"""

# -- name: count_skipped
COUNT_SKIPPED = "UPDATE queue_limit SET skipped = skipped + %s WHERE name = %s"

# -- end of the enqueue-time channel rules ------------------------------------------

# -- Readers of fair share (jobs explain, limits fair, the dashboard, metrics). --------
# Read-only; the store walks the pending index with them one probe a key (in-process:
# a loop costs no round trip) and stops at its bound.

# -- name: next_fair_pair
# The first (priority, key) pair with pending jobs of a channel after a pair.
NEXT_FAIR_PAIR = """
SELECT priority, fair_key FROM queue_job INDEXED BY queue_job_pending
 WHERE state = 'pending' AND channel = %s AND (priority, fair_key) > (%s, %s)
 ORDER BY priority, fair_key LIMIT 1
"""

# -- name: fair_pair_pending
# The pending jobs of one key at one priority, counted up to a bound.
FAIR_PAIR_PENDING = """
SELECT count(*) FROM (SELECT 1 FROM queue_job INDEXED BY queue_job_pending
                       WHERE state = 'pending' AND channel = %s AND priority = %s
                         AND fair_key = %s LIMIT %s)
"""


# -- Counts of the backlog: waiting and pending jobs by channel (the dashboard, /metrics,
# stats). Read from the indexes: triggers keeping them in a table would write one page
# more at every commit of one writer at a time (about 40 us a job, measured), for
# counts of the sizes SQLite serves that take milliseconds.

# -- name: queued_counts
QUEUED_COUNTS = """
SELECT channel, state, COUNT(*) FROM queue_job
 WHERE state IN ('waiting', 'pending') GROUP BY channel, state
"""


# -- name: elect
ELECT = """
INSERT INTO queue_lease (name, holder, expires_at, create_date, write_date)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
                                 write_date = excluded.write_date
 WHERE queue_lease.holder = excluded.holder OR queue_lease.expires_at < %s
"""

# -- name: lease_holder
LEASE_HOLDER = "SELECT holder FROM queue_lease WHERE name = %s"

DATA_VERSION = "PRAGMA data_version"

#: the first word of a statement that only reads (see :func:`statement_writes`)
_READS = re.compile(r"\s*(SELECT|VALUES)\b", re.IGNORECASE)


def statement_writes(query: str) -> bool:
    """Whether a statement that did not say (``cr.execute(..., write=...)``) is taken
    to write, on a job's cursor. The one rule: a statement reads only if its first
    word is ``SELECT`` or ``VALUES``; any other (``INSERT``, ``UPDATE``, ``DELETE``,
    ``WITH``, ``PRAGMA``, ``SAVEPOINT``...) writes. It never takes a write for a read;
    a ``WITH ... SELECT`` that only reads takes the write lock early (say
    ``write=False`` to spare it)."""
    return _READS.match(query) is None


def _ids(ids: Sequence[Any]) -> str:
    return json.dumps(list(ids))


class JobCursor(SqliteCursor):
    """A job's transaction: reads outside a transaction, ``BEGIN IMMEDIATE`` at the first
    write (see the module docstring). Whether a statement writes is what its caller
    says (``write=``: the store's own statements always say), else
    :func:`statement_writes` decides."""

    def execute(
        self, query: str, params: Sequence[Any] | None = None, *, write: bool | None = None
    ) -> JobCursor:
        if write is None:
            write = statement_writes(query)
        if write and not self._closed and not self._cnx.in_transaction:
            self._cur.execute("BEGIN IMMEDIATE")
        super().execute(query, params, write=write)
        return self

    def _before_execute(self) -> None:
        pass  # decided per statement in execute

    def _executemany(self, query: str, seq_of_params: Any) -> None:
        if not self._cnx.in_transaction:  # executemany writes: one statement, many rows
            self._cur.execute("BEGIN IMMEDIATE")
        super()._executemany(query, seq_of_params)


class SqliteJobStore(JobStore):
    queued_counts_sql = QUEUED_COUNTS
    channel_rules_sql = CHANNEL_RULES
    channel_depth_sql = CHANNEL_DEPTH
    count_skipped_sql = COUNT_SKIPPED
    backend: SqliteBackend
    next_scheduled_sql = NEXT_SCHEDULED.strip()
    window_usage_sql = WINDOW_USAGE
    set_fair_cursor_sql = SET_FAIR_CURSOR
    log_starts_sql = LOG_STARTS
    forget_starts_sql = FORGET_STARTS
    forget_old_starts_sql = FORGET_OLD_STARTS
    check_jobs_sql = CHECK_JOBS
    stale_candidates_sql = STALE_CANDIDATES
    retry_sql = RETRY
    fail_sql = FAIL
    fail_dependents_sql = FAIL_DEPENDENTS
    back_off_sql = BACK_OFF
    back_off_channel_sql = BACK_OFF_CHANNEL

    #: how long the supervisor waits for the write lock before retrying on its next turn
    supervisor_busy_timeout = 0.5

    def session(self, *, role: str) -> SqliteSession:
        return SqliteSession(self, role)

    def now(self, cr: Cursor) -> datetime:
        return clock()

    def _lock_and_read(self, cr: Cursor) -> tuple[list[Any], datetime]:
        # the first statement opens BEGIN IMMEDIATE: it holds the database's write lock
        cr.execute(CHANNEL_STATE, (), write=True)
        rows = cr.fetchall()
        return rows, clock()

    def _channel_line(self, cr: Cursor, channel: str, count: int, now: datetime) -> list[Candidate]:
        line: list[Candidate] = []
        floor = INT_MIN
        while len(line) < count:
            cr.execute(NEXT_LEVEL, (channel, floor))
            priority = cr.fetchone()[0]  # type: ignore[index]
            if priority is None:
                break
            cr.execute(TAKE_LEVEL, (channel, priority, now, count - len(line)))
            line.extend(Candidate(row[0], channel, *row[1:]) for row in cr.fetchall())
            if priority >= INT_MAX:
                break
            floor = priority + 1
        return line

    def _fair_level(
        self,
        cr: Cursor,
        channel: str,
        floor: int,
        cursor: tuple[str, int],
        count: int,
        now: datetime,
    ) -> tuple[int, list[FairRow]] | None:
        # one index probe a statement: in-process, the loop costs no round trip
        cr.execute(FAIR_LEVEL, (channel, floor, now))
        row = cr.fetchone()
        if row is None:
            return None
        priority = row[0]
        rows: list[FairRow] = []
        keys = 0
        for lap, key in self._rotation_keys(cr, channel, priority, cursor):
            cr.execute(FAIR_KEY_JOBS, (channel, priority, key, now, count))
            jobs = cr.fetchall()
            if not jobs:
                continue
            cr.execute(FAIR_KEY_WEIGHT, (channel, key))
            found = cr.fetchone()
            weight = found[0] if found else 1
            rows.extend((key, lap, weight, *job) for job in jobs)
            keys += 1
            if keys == count:
                break
        return priority, rows

    @staticmethod
    def _rotation_keys(
        cr: Cursor, channel: str, priority: int, cursor: tuple[str, int]
    ) -> Iterator[tuple[int, str]]:
        """The keys with pending jobs at ``priority``: those after the cursor's key (from
        it when its turn is not over), then from the start up to it."""
        start, unfinished = cursor
        cr.execute(FAIR_KEY_FROM if unfinished else NEXT_FAIR_KEY, (channel, priority, start))
        key = cr.fetchone()[0]  # type: ignore[index]
        while key is not None:
            yield 0, key
            cr.execute(NEXT_FAIR_KEY, (channel, priority, key))
            key = cr.fetchone()[0]  # type: ignore[index]
        cr.execute(FAIR_KEY_FROM, (channel, priority, ""))
        key = cr.fetchone()[0]  # type: ignore[index]
        while key is not None and (key < start or (key == start and not unfinished)):
            yield 1, key
            cr.execute(NEXT_FAIR_KEY, (channel, priority, key))
            key = cr.fetchone()[0]  # type: ignore[index]

    def _mark_started(
        self, cr: Cursor, job_ids: Sequence[int], worker_id: str, now: datetime
    ) -> list[ClaimedJob]:
        cr.execute(MARK_STARTED, (worker_id, now, now, now, _ids(job_ids)), write=True)
        return [ClaimedJob.from_row(row) for row in cr.fetchall()]

    def begin_jobs(self, cr: Cursor, job_ids: Sequence[int], worker_id: str) -> set[int]:
        # a read, outside the transaction: the job's first write takes the write lock
        in_sql, params = self.backend.in_ids("id", job_ids)
        cr.execute(f"{CHECK_JOBS} AND {in_sql}", (worker_id, *params), write=False)
        return {row[0] for row in cr.fetchall()}

    def executor_gone(self, cr: Cursor, job_id: int) -> bool:
        return True  # the caller saw the process die; its effects died with it

    def terminate_session(self, cr: Cursor, session_id: int | None) -> None:
        pass  # no server sessions: the killed process took its connection with it

    # -- state changes --------------------------------------------------------

    def start(self, cr: Cursor, job_id: int, worker_id: str | None) -> bool:
        now = clock()
        cr.execute(START, (worker_id, now, now, now, job_id), write=True)
        return cr.rowcount == 1

    def finish(
        self,
        cr: Cursor,
        finished: Sequence[FinishedRow],
        worker_id: str | None,
    ) -> dict[int, bool]:
        now = clock()
        marked = {}
        for job_id, result, duration, *timing in finished:  # no round trips to save on a file
            ended = now - timedelta(seconds=timing[0]) if timing else now
            cr.execute(
                FINISH, (result, duration, ended, now, job_id, worker_id, worker_id), write=True
            )
            row = cr.fetchone()
            if row is not None:
                marked[job_id] = bool(row[0])
        return marked

    def failing_job(
        self, cr: Cursor, job_id: int, expected_state: str, worker_id: str | None
    ) -> FailingJob | None:
        cr.execute(FAILING_JOB, (job_id, expected_state, worker_id, worker_id), write=False)
        row = cr.fetchone()
        if row is None:
            return None
        attempts, max_retries, exc_info, started_at, has_dependents, ran_on, channel, backoffs = row
        return FailingJob(
            attempts,
            max_retries,
            exc_info,
            _as_datetime(started_at),
            bool(has_dependents),
            ran_on,
            clock(),
            channel,
            backoffs or 0,
        )

    def return_to_pending(
        self, cr: Cursor, job_ids: Sequence[int], worker_id: str | None
    ) -> list[int]:
        cr.execute(RETURN_TO_PENDING, (clock(), _ids(job_ids), worker_id, worker_id), write=True)
        return [row[0] for row in cr.fetchall()]

    def channel_backoffs(self, cr: Cursor, now: datetime) -> dict[str, ChannelBackoffState]:
        cr.execute(CHANNEL_BACKOFFS, (now,), write=False)
        return {
            name: ChannelBackoffState(_as_datetime(until), reason, job_id, _as_datetime(set_at))
            for name, until, reason, job_id, set_at in cr.fetchall()
        }

    def lift_channel_backoff(self, cr: Cursor, channel: str) -> bool:
        now = clock()
        cr.execute(LIFT_CHANNEL_BACKOFF, (now, channel, now), write=True)
        return cr.rowcount == 1

    def exc_infos(self, cr: Cursor, job_ids: Sequence[int]) -> dict[int, str | None]:
        cr.execute(EXC_INFOS, (_ids(job_ids),), write=True)  # read to be rewritten: locked
        return dict(cr.fetchall())

    def set_exc_info(self, cr: Cursor, job_id: int, exc_info: str) -> None:
        cr.execute(SET_EXC_INFO, (exc_info, job_id), write=True)

    def force(
        self,
        cr: Cursor,
        job_ids: Sequence[int],
        state: str,
        *,
        exc_name: str | None = None,
        exc_message: str | None = None,
    ) -> list[int]:
        now = clock()
        if state == "done":
            cr.execute(FORCE_DONE, (now, now, _ids(job_ids)), write=True)
        elif state == "failed":
            cr.execute(FORCE_FAILED, (now, now, exc_name, exc_message, _ids(job_ids)), write=True)
        elif state == "cancelled":
            cr.execute(FORCE_CANCELLED, (now, now, _ids(job_ids)), write=True)
        else:
            raise ValueError(f"a job is set done, failed or cancelled by hand, not {state!r}")
        return [job_id for job_id, has_dependents in cr.fetchall() if has_dependents]

    def requeue(self, cr: Cursor, job_ids: Sequence[int]) -> None:
        now = clock()
        cr.execute(REQUEUE, (now, now, _ids(job_ids)), write=True)

    # -- graph cascades -------------------------------------------------------
    # Run in a transaction that holds the write lock: a cascade follows a state change.

    def dependents(self, cr: Cursor, parent_ids: Sequence[int]) -> list[int]:
        cr.execute(DEPENDENTS, (_ids(parent_ids),), write=True)
        return [row[0] for row in cr.fetchall()]

    def lock_dependents(
        self, cr: Cursor, job_ids: Sequence[int], states: Sequence[str]
    ) -> list[int]:
        cr.execute(LOCK_DEPENDENTS, (_ids(job_ids), json.dumps(list(states))), write=True)
        return [row[0] for row in cr.fetchall()]

    def edges(self, cr: Cursor, job_ids: Sequence[int]) -> list[tuple[int, int, str, str]]:
        cr.execute(EDGES, (_ids(job_ids),), write=True)
        return [(job_id, parent, kind, state) for job_id, parent, kind, state in cr.fetchall()]

    def release(self, cr: Cursor, job_ids: Sequence[int]) -> None:
        cr.execute(RELEASE, (clock(), _ids(job_ids)), write=True)

    def wait_back(self, cr: Cursor, job_ids: Sequence[int]) -> None:
        cr.execute(WAIT_BACK, (clock(), _ids(job_ids)), write=True)

    @staticmethod
    def _id_list(job_ids: Sequence[int]) -> Any:
        return _ids(job_ids)  # a JSON text, read with json_each

    def cancel_dependents(self, cr: Cursor, job_ids: Sequence[int], parent_id: int) -> None:
        now = clock()
        cr.execute(CANCEL_DEPENDENTS, (now, now, parent_id, _ids(job_ids)), write=True)

    def wait_again(self, cr: Cursor, parent_ids: Sequence[int]) -> list[int]:
        now, ids = clock(), _ids(parent_ids)
        cr.execute(REWAIT_DECIDED, (now, ids), write=True)
        decided = [row[0] for row in cr.fetchall()]
        cr.execute(REWAIT_RELEASED, (now, ids), write=True)
        return decided + [row[0] for row in cr.fetchall()]

    # -- readers of fair share ---------------------------------------------------

    def fair_keys(
        self, cr: Cursor, channel: str, *, pairs: int, count: int = 0
    ) -> list[tuple[int, str, int]]:
        found: list[tuple[int, str, int]] = []
        priority, key = INT_MIN - 1, ""
        while len(found) < pairs:
            cr.execute(NEXT_FAIR_PAIR, (channel, priority, key), write=False)
            row = cr.fetchone()
            if row is None:
                break
            priority, key = row
            pending = 0
            if count:
                cr.execute(FAIR_PAIR_PENDING, (channel, priority, key, count), write=False)
                pending = int(cr.fetchone()[0])  # type: ignore[index]
            found.append((priority, key, pending))
        return found

    def due_fair_keys(
        self,
        cr: Cursor,
        channel: str,
        priority: int,
        now: datetime,
        *,
        start: str,
        inclusive: bool,
        stop: str | None,
        walk: int,
    ) -> tuple[int, bool]:
        due = walked = 0
        first = FAIR_KEY_FROM if inclusive else NEXT_FAIR_KEY
        cr.execute(first, (channel, priority, start), write=False)
        key = cr.fetchone()[0]  # type: ignore[index]
        while key is not None and (stop is None or key < stop) and walked < walk:
            walked += 1
            cr.execute(FAIR_KEY_JOBS, (channel, priority, key, now, 1), write=False)
            due += cr.fetchone() is not None
            cr.execute(NEXT_FAIR_KEY, (channel, priority, key), write=False)
            key = cr.fetchone()[0]  # type: ignore[index]
        return due, walked >= walk

    def key_after(self, cr: Cursor, key: str, other: str) -> bool:
        return key > other  # the keys' column compares as BINARY: code point order

    # -- bookkeeping ----------------------------------------------------------

    def register_worker(self, cr: Cursor, values: dict[str, Any]) -> None:
        now = clock()
        cr.execute(
            REGISTER_WORKER,
            (
                values["worker_id"],
                values["hostname"],
                values["pid"],
                values["concurrency"],
                values["channels"],
                values.get("heartbeat_interval"),
                values["version"],
                now,
                now,
                now,
                now,
            ),
            write=True,
        )

    def heartbeat(self, cr: Cursor, worker_id: str) -> None:
        now = clock()
        cr.execute(HEARTBEAT_WORKER, (now, worker_id), write=True)
        cr.execute(HEARTBEAT_JOBS, (now, worker_id), write=True)

    def stop_worker(self, cr: Cursor, worker_id: str) -> None:
        now = clock()
        cr.execute(STOP_WORKER, (now, now, worker_id), write=True)

    def _stale_executor_gone(self, cr: Cursor, job: StaleJob) -> bool:
        if job.pid and job.hostname == socket.gethostname():
            try:
                os.kill(job.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False  # alive, only slow: never overtake it
        return True

    def purge(self, cr: Cursor, retention_days: float, batch: int) -> int:
        if not retention_days:
            return 0
        cutoff = clock() - timedelta(days=retention_days)
        cr.execute(PURGE, (cutoff, batch), write=True)
        return cr.rowcount

    # -- election, wake-ups -----------------------------------------------------

    def elect(self, session: Session, name: str, holder: str, ttl: float) -> bool:
        with session.cursor(None) as cr:
            now = clock()
            cr.execute(
                ELECT, (name, holder, now + timedelta(seconds=ttl), now, now, now), write=True
            )
            cr.execute(LEASE_HOLDER, (name,))
            row = cr.fetchone()
        return bool(row and row[0] == holder)

    def notify_at_commit(self, cr: Cursor, *, crons: bool = False) -> None:
        # one kind of wake-up: the listener's poll of data_version cannot tell them apart
        url = self.backend.url
        cr.postcommit.add(partial(fire_local_enqueue, url), key=("local enqueue", url))

    def listener(self) -> SqliteListener:
        return SqliteListener(self.backend)


class SqliteSession(Session):
    """A sqlite3 connection of its own. The supervisor's waits for the write lock are
    short; an executor's job transaction uses :class:`JobCursor`."""

    def __init__(self, store: SqliteJobStore, role: str):
        self.store = store
        self.backend = store.backend
        self.role = role
        self._cnx: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._cnx is None:
            cnx = self.backend.connect()  # same pragmas as every connection of the backend
            if self.role == "supervisor":
                cnx.execute(
                    f"PRAGMA busy_timeout = {int(self.store.supervisor_busy_timeout * 1000)}"
                )
            self._cnx = cnx
        return self._cnx

    def cursor(self, registry: Any, *, readonly: bool = False) -> Cursor:
        cnx = self._connect()
        cls = JobCursor if self.role == "executor" else SqliteCursor
        cr = cls(self.backend, cnx, self._release, readonly)
        cr.registry = registry
        return cr

    def _release(self, cnx: Any, healthy: bool) -> None:
        if not healthy:
            self.close()

    @property
    def broken(self) -> bool:
        return False  # a file does not go away like a server

    def close(self) -> None:
        cnx, self._cnx = self._cnx, None
        if cnx is not None:
            cnx.close()


class SqliteListener(Listener):
    """Polls ``PRAGMA data_version`` on a connection of its own; woken at once by jobs
    enqueued in this process. :meth:`close` releases its hook and its pipe."""

    poll_interval = 0.01

    def __init__(self, backend: SqliteBackend):
        self.backend = backend
        self._cnx: sqlite3.Connection | None = None
        self._version: int | None = None
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._closed = False
        on_local_enqueue(backend.url, self._poke)

    def _poke(self) -> None:
        try:
            os.write(self._write_fd, b"!")
        except (BlockingIOError, OSError):
            pass  # already poked, or closed

    def open(self) -> None:
        pass  # polling opens its connection lazily; a file is always there

    def fileno(self) -> int | None:
        return None if self._closed else self._read_fd

    def woken(self) -> bool:
        if self._closed:
            return False
        woken = False
        try:
            while os.read(self._read_fd, 512):
                woken = True
        except (BlockingIOError, OSError):
            pass
        if self._cnx is None:
            self._cnx = self.backend.connect()
        row = self._cnx.execute(DATA_VERSION).fetchone()
        version = row[0] if row else None
        if version != self._version:
            self._version = version
            woken = True
        if woken:  # any change of the file may be a change of the periodic jobs
            self._crons_changed = True
        return woken

    def close(self) -> None:
        if self._cnx is not None:
            self._cnx.close()
            self._cnx = None
        if not self._closed:
            self._closed = True
            off_local_enqueue(self.backend.url, self._poke)
            os.close(self._read_fd)
            os.close(self._write_fd)
