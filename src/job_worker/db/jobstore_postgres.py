"""The job store on PostgreSQL: every statement that changes a job's state, whole.

- Times written into a row are the database's clock, read in the statement
  (``timezone('UTC', statement_timestamp())``): workers on several hosts never mix
  their clocks in one row.

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
import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

import psycopg

from .jobstore import (
    _JSON_COLUMNS,
    CLAIM_COLUMNS,
    Candidate,
    ChannelBackoffState,
    ChannelPlan,
    Claim,
    ClaimedJob,
    FailingJob,
    FairRow,
    FinishedRow,
    HandOff,
    JobStore,
    Listener,
    Session,
    exhausted,
    fair_turns,
)
from .postgres import NO_AUTO_PREPARE, PostgresCursor, connection_options

if TYPE_CHECKING:
    from .cursor import Cursor
    from .postgres import PostgresBackend

_logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "job_worker"
#: the channel of the notices that periodic jobs changed (they wake no claim)
CRONS_CHANNEL = "job_worker_crons"
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
# The one clock of the queue: the database's, in UTC (columns are naive UTC). Statements
# that write a time read it themselves, as timezone('UTC', statement_timestamp()).
NOW = "SELECT timezone('UTC', statement_timestamp())"

# -- name: channel_state
# Every channel that has pending jobs (a loose index scan: one index probe per
# channel, however many jobs wait), with its limit row, the weight of its jobs
# started right now, whether it has pending jobs with a fair key, the key that had
# its last turn and the jobs it has had in that turn.
CHANNEL_STATE = """
WITH RECURSIVE channels(name) AS (
    SELECT (SELECT min(channel) FROM queue_job WHERE state = 'pending')
  UNION ALL
    SELECT (SELECT min(channel) FROM queue_job WHERE state = 'pending' AND channel > c.name)
      FROM channels c WHERE c.name IS NOT NULL
)
SELECT c.name, l."limit", l.rate_limit, l.rates,
       (SELECT coalesce(sum(r.weight), 0) FROM queue_job r
         WHERE r.state = 'started' AND r.channel = c.name),
       (SELECT min(f.fair_key) FROM queue_job f
         WHERE f.state = 'pending' AND f.channel = c.name AND f.fair_key <> '') IS NOT NULL,
       ch.fair_cursor, ch.fair_turn, ch.backoff_until
  FROM channels c LEFT JOIN queue_limit l ON l.name = c.name
       LEFT JOIN queue_channel ch ON ch.name = c.name
 WHERE c.name IS NOT NULL
"""

# -- name: next_scheduled
# When the next pending job that is not due yet becomes due (the claim adds a
# condition on the channels it asks about).
NEXT_SCHEDULED = (
    "SELECT min(scheduled_at) FROM queue_job WHERE state = 'pending' AND scheduled_at > %s"
)

# -- name: window_usage
# The starts of a channel in the window that ends now, at most the window's count of
# them (an index range scan of that many entries at most), and the oldest of those.
WINDOW_USAGE = """
SELECT count(*), min(started_at) FROM (
    SELECT started_at FROM queue_channel_start WHERE channel = %s AND started_at > %s
     ORDER BY started_at DESC LIMIT %s) recent
"""

# -- name: log_starts
# `count` starts of a channel at `now`, in its start log.
LOG_STARTS = """
INSERT INTO queue_channel_start (channel, started_at)
SELECT %s, %s FROM generate_series(1, %s)
"""

# -- name: forget_starts
# Starts that have left the channel's longest window.
FORGET_STARTS = "DELETE FROM queue_channel_start WHERE channel = %s AND started_at <= %s"

# -- name: forget_old_starts
# The maintenance's sweep of the start log: starts older than the longest window.
FORGET_OLD_STARTS = "DELETE FROM queue_channel_start WHERE started_at < %s"

# -- name: check_jobs
# Run after the jobs' locks, in a statement of its own: it sees a reclaim that committed
# before we got them. (The caller adds the condition on the ids; the worker's begin uses
# check_jobs_in.)
CHECK_JOBS = "SELECT id FROM queue_job WHERE state = 'started' AND worker_id = %s"
CHECK_JOBS_IN = f"{CHECK_JOBS} AND id = ANY(%s::integer[])"

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

# -- name: generic_plans
# The rest of the transaction runs the generic plans of its prepared statements. Sent
# before the end of an executor's batch (its finish and hand-off), after the jobs' own
# code: left to choose, the planner made the hand-off's custom plan again at every
# execution (its generic plan looks dearer: it cannot know that one job finished), about
# 1 ms of planning for a statement that runs in 0.2 ms.
GENERIC_PLANS = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"

# -- name: channel_state_at
# The shared channel state query, and the clock read after its snapshot: one row
# with the clock alone when no channel has pending jobs.
CHANNEL_STATE_AT = f"""
SELECT s.*, c.now FROM (SELECT timezone('UTC', clock_timestamp()) AS now) c
  LEFT JOIN ({CHANNEL_STATE.strip()}) s ON true
"""


def _claim_columns(prefix: str, *, named: bool = False) -> str:
    """What a claim returns of a job (:data:`CLAIM_COLUMNS`, those of ``prefix``), the
    JSON columns as their text; ``named``: each under its own name."""
    return ", ".join(
        (f"{prefix}{c}::text AS {c}" if named else f"{prefix}{c}::text")
        if c in _JSON_COLUMNS
        else f"{prefix}{c}"
        for c in CLAIM_COLUMNS
    )


def _line(channel: str, now: str, take: str, free: str, *, serial: bool = False) -> str:
    """A channel's line in a claim (`take`, `claim_plain`, `hand_off`): its best due jobs
    without a fair key, in order, locked one at a time up to `take` (SKIP LOCKED passes
    over jobs another transaction is changing), cut where their weights stop fitting in
    `free` (the longest run whose weights fit: a job that does not fit stops the line).
    ``serial``: the jobs are to run one after the other in `free` (the hand-off of a
    slot's run, see `hand_off`): each must fit in it alone, and a job with a timeout
    stops the line (it runs in a transaction of its own). Each argument is SQL (a column
    of the statement, or a parameter); the statement formats `{rows}` (see `take`)."""
    fit = "max" if serial else "sum"
    timeout, timed = (", timeout", " AND NOT fitting.timed") if serial else ("", "")
    window = "OVER (ORDER BY b.priority, b.scheduled_at, b.id)"
    flags = f", bool_or(b.timeout > 0) {window} AS timed" if serial else ""
    return f"""
        SELECT * FROM (
            SELECT b.*, {fit}(b.weight) {window} AS used{flags}
              FROM (
                SELECT * FROM (
                    SELECT id, priority, scheduled_at, weight{timeout} FROM queue_job
                     WHERE state = 'pending' AND channel = {channel} AND fair_key = ''
                       AND scheduled_at <= {now}
                     ORDER BY priority, scheduled_at, id
                     LIMIT {{rows}}
                     FOR UPDATE SKIP LOCKED) best
                 LIMIT {take}) b) fitting
         WHERE fitting.used <= {free}{timed}"""


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
# jobs come up one at a time through the lock to `LIMIT plan.take`, which stops
# the index scan, and the locking, at `take` jobs (no ORDER BY at that level: it
# would sort, and so lock, all {rows} first; the level below gives them in order).
# Of those, the channel gives the longest run, in order, whose weights fit in its
# free weight (`free`): a job that does not fit stops its channel's line.
TAKE = f"""
WITH plan AS (
    SELECT * FROM json_to_recordset(%s::json) AS p(channel text, free int, take int)
     LIMIT {{channels}}
), candidates AS (
    SELECT j.id, j.priority, j.scheduled_at
      FROM plan, LATERAL ({_line("plan.channel", "%s", "plan.take", "plan.free")}) j
), picked AS (
    SELECT id FROM candidates ORDER BY priority, scheduled_at, id LIMIT %s
)
UPDATE queue_job j
   SET state = 'started', worker_id = %s, started_at = %s, heartbeat = %s, write_date = %s
  FROM picked
 WHERE j.id = picked.id
RETURNING {_claim_columns("j.")}
"""


# -- name: claim_plain
# A whole claim in one statement, for the common case: the channel state, the plan (a
# channel's free weight, unless a job's backoff pauses it), the take and the time the
# next job becomes due, read after the claim lock in one snapshot as the claim in two
# round trips reads them (`channel_state_at`, then `take`). It takes nothing when a
# channel with room has fair keys or rate windows (`ruled`): those rules are worked
# out in Python, and the caller claims again the long way. One row per job taken, or
# one row of NULL jobs; each row also carries the clock, `ruled`, the end of the first
# backoff in force, the next due time (read only when fewer than wanted were taken: it
# reads a channel's pending jobs up to the first one not due, many in a big backlog),
# and the plan as JSON triples (channel, take, free).
# Parameters: default limit, the worker's channels (NULL: all), wanted, worker id, wanted;
# {rows} is a power of two at least `wanted` (see `take`: an estimate, never a cut).
CLAIM_PLAIN = f"""
WITH RECURSIVE channels(name) AS (
    SELECT (SELECT min(channel) FROM queue_job WHERE state = 'pending')
  UNION ALL
    SELECT (SELECT min(channel) FROM queue_job WHERE state = 'pending' AND channel > c.name)
      FROM channels c WHERE c.name IS NOT NULL
), clock AS (
    SELECT timezone('UTC', clock_timestamp()) AS now
), state AS (
    SELECT c.name,
           coalesce(l."limit", %s::int) - (SELECT coalesce(sum(r.weight), 0) FROM queue_job r
                                             WHERE r.state = 'started' AND r.channel = c.name)
             AS free,
           (SELECT min(f.fair_key) FROM queue_job f
             WHERE f.state = 'pending' AND f.channel = c.name AND f.fair_key <> '') IS NOT NULL
             OR coalesce(l.rates, '') <> '' OR coalesce(l.rate_limit, 0) > 0 AS ruled,
           ch.backoff_until
      FROM channels c LEFT JOIN queue_limit l ON l.name = c.name
           LEFT JOIN queue_channel ch ON ch.name = c.name
     WHERE c.name IS NOT NULL AND (%s::text[] IS NULL OR c.name = ANY(%s::text[]))
), plan AS (
    SELECT s.name AS channel, s.free, least(s.free, %s::int)::int AS take, s.ruled
      FROM state s, clock
     WHERE s.free > 0 AND (s.backoff_until IS NULL OR s.backoff_until <= clock.now)
), summary AS (
    SELECT clock.now,
           coalesce(bool_or(plan.ruled), false) AS ruled,
           (SELECT min(s.backoff_until) FROM state s WHERE s.backoff_until > clock.now)
             AS backoff_until,
           coalesce(json_agg(json_build_array(plan.channel, plan.take, plan.free))
                      FILTER (WHERE plan.channel IS NOT NULL), '[]') AS plan
      FROM clock LEFT JOIN plan ON true
     GROUP BY clock.now
), candidates AS (
    SELECT j.id, j.priority, j.scheduled_at
      FROM plan, clock, LATERAL ({_line("plan.channel", "clock.now", "plan.take", "plan.free")}) j
     WHERE NOT (SELECT ruled FROM summary)
), picked AS (
    SELECT id FROM candidates ORDER BY priority, scheduled_at, id LIMIT %s
), taken AS (
    UPDATE queue_job j
       SET state = 'started', worker_id = %s, started_at = clock.now, heartbeat = clock.now,
           write_date = clock.now
      FROM picked, clock
     WHERE j.id = picked.id
    RETURNING {_claim_columns("j.", named=True)}
)
SELECT {", ".join(f"taken.{c}" for c in CLAIM_COLUMNS)},
       summary.now, summary.ruled, summary.backoff_until,
       CASE WHEN (SELECT count(*) FROM taken) < %s THEN
           (SELECT min(q.scheduled_at) FROM queue_job q
             WHERE q.state = 'pending' AND q.scheduled_at > summary.now
               AND q.channel IN (SELECT p.channel FROM plan p))
       END AS next_due,
       summary.plan
  FROM summary LEFT JOIN taken ON true
"""


# -- name: hand_off
# The capacity that jobs finishing in this transaction free in their channel, handed to
# the channel's next due jobs, marked started by the same worker, in the same
# transaction: a limit-bound channel drains without a claim per job. Run after the
# jobs' `finish`, in the same snapshot as any statement: the finished jobs (ids
# `finished`, all of channel `channel`) no longer count as started, and they free their
# weight. It takes at most `take` jobs, the channel's best due ones in order (the
# longest run whose weights fit: see `take`), weighing no more than what the finished
# jobs freed and no more than the channel's room as this snapshot sees it. So it never
# takes a slot it did not free (a claim running meanwhile counted the finished jobs as
# started), and takes nothing once the limit was lowered under what runs. Nothing is
# taken where a claim works a rule out in Python: a pending job with a fair key, rate
# windows, a backoff in force.
# The finished jobs are found by their ids alone, the primary key: with their state and
# channel in the WHERE clause, a plan made while the channel had few done jobs (the
# statement is prepared, its plan kept) read them through the (channel, state) index
# and filtered the ids, a walk of every done job of the channel at each hand-off.
# A slot's run (`serial`): the jobs taken run one after the other in the transaction
# that took them, each alone in the weight freed (see `_line`); that transaction hands the
# slot on (this statement, not serial) before it commits, so no other transaction ever
# sees them started: to the others the slot is still held by the jobs that freed it.
# Parameters: channel, default limit, finished ids (the jobs whose weight is freed: those
# whose start was committed), worker id, take; {rows} as in `take`; {line}: the line.
HAND_OFF = """
WITH rules AS (
    SELECT coalesce(l."limit", %(default_limit)s::int) AS lim,
           coalesce(l.rates, '') <> '' OR coalesce(l.rate_limit, 0) > 0 AS rated,
           ch.backoff_until, timezone('UTC', clock_timestamp()) AS now
      FROM (SELECT 1) one
           LEFT JOIN queue_limit l ON l.name = %(channel)s
           LEFT JOIN queue_channel ch ON ch.name = %(channel)s
), budget AS (
    SELECT rules.now,
           least((SELECT coalesce(sum(f.weight) FILTER (WHERE f.state = 'done'
                                                        AND f.channel = %(channel)s), 0)
                    FROM queue_job f WHERE f.id = ANY(%(finished)s::integer[])),
                 rules.lim - (SELECT coalesce(sum(r.weight), 0) FROM queue_job r
                               WHERE r.state = 'started' AND r.channel = %(channel)s)) AS free
      FROM rules
     WHERE NOT rules.rated AND (rules.backoff_until IS NULL OR rules.backoff_until <= rules.now)
       AND (SELECT min(k.fair_key) FROM queue_job k
             WHERE k.state = 'pending' AND k.channel = %(channel)s AND k.fair_key <> '') IS NULL
), picked AS (
    SELECT j.id
      FROM budget, LATERAL ({line}) j
)
UPDATE queue_job j
   SET state = 'started', worker_id = %(worker_id)s, started_at = budget.now,
       heartbeat = budget.now, write_date = budget.now
  FROM picked, budget
 WHERE j.id = picked.id
RETURNING {columns}
"""


def _finish_statement(
    finished: Sequence[FinishedRow], worker_id: str | None
) -> tuple[str, Sequence[Any]]:
    return FINISH, (json.dumps(finished), worker_id, worker_id)


def _id_array(job_ids: Sequence[int]) -> str:
    """``job_ids`` as the text of an integer array (psycopg's quoting of a list of ints
    costs 20 times more), for a ``%s::integer[]`` parameter."""
    return "{" + ",".join(map(str, job_ids)) + "}"


def _marked(rows: list[Any]) -> dict[int, bool]:
    """The jobs ``finish`` marked done (its rows), each with whether it has dependents."""
    return {job_id: bool(has_dependents) for job_id, has_dependents in rows}


@lru_cache(maxsize=16)
def _hand_off_sql(rows: int, serial: bool) -> str:
    line = _line("%(channel)s", "budget.now", "%(take)s", "budget.free", serial=serial)
    return HAND_OFF.format(line=line.format(rows=rows), columns=_claim_columns("j."))


@lru_cache(maxsize=16)
def _claim_plain_sql(rows: int) -> str:
    return CLAIM_PLAIN.format(rows=rows)


def _take_sql(channels: int, rows: int) -> str:
    """TAKE for a plan of ``channels`` channels giving at most ``rows`` jobs each, both
    rounded up to a power of two: a few statements, each prepared once."""
    return _take_text(_power_of_two(channels), _power_of_two(rows))


@lru_cache(maxsize=64)
def _take_text(channels: int, rows: int) -> str:
    return TAKE.format(channels=channels, rows=rows)


def _positional(sql: str, values: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """``sql`` written with ``%(name)s`` parameters, as ``%s`` ones and their values
    (the cursors take positional parameters only)."""
    return _positional_text(sql), tuple(values[name] for name in _NAMED.findall(sql))


_NAMED = re.compile(r"%\((\w+)\)s")


@lru_cache(maxsize=16)
def _positional_text(sql: str) -> str:
    return _NAMED.sub("%s", sql)


def _power_of_two(count: int) -> int:
    return 1 << max(count - 1, 0).bit_length()


# -- name: channel_line
# The best due jobs of one channel without fair keys (a claim that also serves fair
# channels merges the lines of its channels itself).
CHANNEL_LINE = """
SELECT id, priority, scheduled_at, weight FROM queue_job
 WHERE state = 'pending' AND channel = %s AND fair_key = '' AND scheduled_at <= %s
 ORDER BY priority, scheduled_at, id LIMIT %s
"""

# -- name: fair_level
# One priority level of a fair channel, in one statement: the best due priority at or
# above a floor; the keys with pending jobs there in rotation order (after the cursor,
# or from it when its turn is not over, then from the start up to it: a loose index
# scan, one probe a key, which stops once `count` keys with due jobs are found); their
# weights and their first due jobs there. Every probe is an ORDER BY ... LIMIT 1 or a
# LATERAL ... LIMIT: a nested index scan whatever the statistics say (an aggregate or a
# semi join lets a planner without statistics read every pending job of the channel).
FAIR_LEVEL = """
WITH RECURSIVE level AS (
    SELECT priority FROM queue_job
     WHERE state = 'pending' AND channel = %(channel)s AND priority >= %(floor)s
       AND scheduled_at <= %(now)s
     ORDER BY priority LIMIT 1
), after(k) AS (
    SELECT (SELECT fair_key FROM queue_job
             WHERE state = 'pending' AND channel = %(channel)s
               AND priority = (SELECT priority FROM level) AND fair_key {after} %(cursor)s
             ORDER BY fair_key LIMIT 1)
  UNION ALL
    SELECT (SELECT fair_key FROM queue_job
             WHERE state = 'pending' AND channel = %(channel)s
               AND priority = (SELECT priority FROM level) AND fair_key > p.k
             ORDER BY fair_key LIMIT 1)
      FROM after p WHERE p.k IS NOT NULL
), upto(k) AS (
    SELECT (SELECT fair_key FROM queue_job
             WHERE state = 'pending' AND channel = %(channel)s
               AND priority = (SELECT priority FROM level)
             ORDER BY fair_key LIMIT 1)
  UNION ALL
    SELECT (SELECT fair_key FROM queue_job
             WHERE state = 'pending' AND channel = %(channel)s
               AND priority = (SELECT priority FROM level) AND fair_key > p.k
             ORDER BY fair_key LIMIT 1)
      FROM upto p WHERE p.k IS NOT NULL AND p.k < %(cursor)s
), turns AS (
    SELECT keys.k, keys.lap FROM (
        SELECT k, 0 AS lap FROM after WHERE k IS NOT NULL
      UNION ALL
        SELECT k, 1 FROM upto
         WHERE k IS NOT NULL AND (k < %(cursor)s OR (k = %(cursor)s AND NOT %(inclusive)s))
    ) keys
    CROSS JOIN LATERAL (
        SELECT 1 FROM queue_job
         WHERE state = 'pending' AND channel = %(channel)s
           AND priority = (SELECT priority FROM level) AND fair_key = keys.k
           AND scheduled_at <= %(now)s
         LIMIT 1) due
     LIMIT %(count)s
)
SELECT l.priority, t.k, t.lap, coalesce(w.weight, 1), j.id, j.scheduled_at, j.weight
  FROM level l CROSS JOIN turns t
  LEFT JOIN queue_fair_key w ON w.channel = %(channel)s AND w.fair_key = t.k
  CROSS JOIN LATERAL (
    SELECT id, scheduled_at, weight FROM queue_job
     WHERE state = 'pending' AND channel = %(channel)s AND priority = l.priority
       AND fair_key = t.k AND scheduled_at <= %(now)s
     ORDER BY scheduled_at, id LIMIT %(count)s) j
"""

# -- name: fair_level_priority
# The level's priority alone, when no key at it has a due job any more (a race with a
# cancel): the claim goes on to the next level.
FAIR_LEVEL_PRIORITY = """
SELECT priority FROM queue_job
 WHERE state = 'pending' AND channel = %s AND priority >= %s AND scheduled_at <= %s
 ORDER BY priority LIMIT 1
"""

# -- name: mark_started
# The jobs a claim that serves fair channels picked, marked started. They are found by
# their ids: the state is written so that no index on pending jobs matches it (state is
# never NULL). Written `state = 'pending'`, the claim's generic plan, made while few jobs
# were pending by the statistics, went through such an index and filtered the ids: a
# read of every pending job at each claim.
MARK_STARTED = f"""
UPDATE queue_job
   SET state = 'started', worker_id = %s, started_at = %s, heartbeat = %s, write_date = %s
 WHERE id = ANY(%s::integer[]) AND coalesce(state, '') = 'pending'
RETURNING {_claim_columns("")}
"""

# -- name: set_fair_cursor
SET_FAIR_CURSOR = """
INSERT INTO queue_channel (name, fair_cursor, fair_turn) VALUES (%s, %s, %s)
ON CONFLICT (name) DO UPDATE SET fair_cursor = excluded.fair_cursor, fair_turn = excluded.fair_turn
"""

# -- name: heartbeat_worker
HEARTBEAT_WORKER = """
UPDATE queue_worker SET heartbeat = timezone('UTC', statement_timestamp()) WHERE worker_id = %s
"""

# -- name: heartbeat_jobs
# A job whose row its executor is writing (marking a batch done) is passed over: its
# executor lives, and waiting for that row while holding another job's row would
# deadlock with the executor, which locks the rows of its batch in its own order.
HEARTBEAT_JOBS = """
UPDATE queue_job SET heartbeat = timezone('UTC', statement_timestamp())
 WHERE id IN (SELECT id FROM queue_job WHERE state = 'started' AND worker_id = %s
              FOR UPDATE SKIP LOCKED)
"""

# -- name: register_worker
REGISTER_WORKER = """
INSERT INTO queue_worker (worker_id, hostname, pid, concurrency, channels, heartbeat_interval,
                          version, started_at, heartbeat, create_date, write_date)
SELECT %s, %s, %s, %s, %s, %s, %s, now, now, now, now
  FROM (SELECT timezone('UTC', statement_timestamp()) AS now) clock
"""

# -- name: stop_worker
STOP_WORKER = """
UPDATE queue_worker SET stopped_at = timezone('UTC', statement_timestamp()),
                        heartbeat = timezone('UTC', statement_timestamp())
 WHERE worker_id = %s
"""

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
# also its worker when given one: `(%s::text IS NULL OR worker_id = %s)`, the worker
# id twice, NULL for no guard (run_now, a reclaim of a job that had no worker).

# -- name: start
# pending -> started, for run_now() (the worker's claim is `take`).
START = """
UPDATE queue_job SET state = 'started', worker_id = %s,
       started_at = timezone('UTC', statement_timestamp()),
       heartbeat = timezone('UTC', statement_timestamp()),
       write_date = timezone('UTC', statement_timestamp())
 WHERE id = %s AND state = 'pending'
"""

# -- name: finish
# started -> done for the jobs of a batch, in one statement: `[id, result, duration,
# ago, serial]` for each job in a JSON array (the result as a JSON string holding the
# result's JSON text, or null: one parameter, far cheaper to quote than arrays); the rows
# marked, each with whether the job has dependents. `ago` (optional): the seconds since
# the job's code ended, so that its completion is dated when it was, not when its batch
# is written; `serial` (optional): the job was taken in this transaction, in a slot's
# run (see `hand_off`), and began when its code did (its duration before its end).
FINISH = """
UPDATE queue_job j SET state = 'done', result = f.result::jsonb, duration = f.duration,
       completed_at = f.ended,
       started_at = CASE WHEN f.serial THEN f.ended - f.duration * interval '1 second'
                         ELSE j.started_at END,
       write_date = timezone('UTC', statement_timestamp())
  FROM (SELECT (e->>0)::integer AS id, e->>1 AS result, (e->>2)::float8 AS duration,
               timezone('UTC', statement_timestamp())
                 - coalesce((e->>3)::float8, 0) * interval '1 second' AS ended,
               coalesce((e->>4)::boolean, false) AS serial
          FROM json_array_elements(%s::json) AS e) f
 WHERE j.id = f.id AND j.state = 'started' AND (%s::text IS NULL OR j.worker_id = %s)
RETURNING j.id, j.has_dependents
"""

# -- name: failing_job
# What deciding between a retry and a failure needs, and the clock it is decided at.
FAILING_JOB = """
SELECT attempts, max_retries, exc_info, started_at, has_dependents, worker_id,
       timezone('UTC', statement_timestamp()), channel, backoffs
  FROM queue_job WHERE id = %s AND state = %s AND (%s::text IS NULL OR worker_id = %s)
"""

# -- name: retry
# A failed attempt, retried: pending again, due after the backoff. The times are the
# clock failing_job read in this transaction (the attempt's header in exc_info has it).
RETRY = """
UPDATE queue_job SET state = 'pending', exc_name = %s, exc_message = %s, exc_info = %s,
       attempts = %s, write_date = %s, scheduled_at = %s, worker_id = NULL, heartbeat = NULL
 WHERE id = %s AND state = %s AND (%s::text IS NULL OR worker_id = %s)
"""

# -- name: fail
# A failed attempt, the last one: failed.
FAIL = """
UPDATE queue_job SET state = 'failed', exc_name = %s, exc_message = %s, exc_info = %s,
       attempts = %s, write_date = %s, completed_at = %s, duration = %s
 WHERE id = %s AND state = %s AND (%s::text IS NULL OR worker_id = %s)
"""

# -- name: return_to_pending
# started -> pending, no attempt counted (a graceful stop, jobs given but not begun).
RETURN_TO_PENDING = """
UPDATE queue_job SET state = 'pending', worker_id = NULL, heartbeat = NULL, started_at = NULL,
       write_date = timezone('UTC', statement_timestamp())
 WHERE id = ANY(%s::integer[]) AND state = 'started' AND (%s::text IS NULL OR worker_id = %s)
RETURNING id
"""

# -- name: back_off
# The job paused its channel (ChannelBackoff): pending again, attempts as they were (the
# caller passes the job's own), backoffs + 1, due as it was: the pause is the channel's,
# so lifting it lets the job run at once. The time is failing_job's clock.
BACK_OFF = """
UPDATE queue_job SET state = 'pending', exc_name = %s, exc_message = %s, exc_info = %s,
       attempts = %s, write_date = %s, backoffs = COALESCE(backoffs, 0) + 1, worker_id = NULL,
       heartbeat = NULL
 WHERE id = %s AND state = %s AND (%s::text IS NULL OR worker_id = %s)
"""

# -- name: back_off_channel
# Pause a channel until a moment (failing_job's clock + the seconds asked), by name: a
# pause in force that ends later is kept, with its reason and job (a later backoff
# extends, a shorter one changes nothing); the counter grows either way. Returns the
# end of the pause in force.
BACK_OFF_CHANNEL = """
INSERT INTO queue_channel (name, backoff_until, backoff_reason, backoff_job_id, backoff_set_at,
                           backoff_count, create_date, write_date)
VALUES (%s, %s, %s, %s, %s, 1, %s, %s)
ON CONFLICT (name) DO UPDATE SET
    backoff_until = GREATEST(queue_channel.backoff_until, excluded.backoff_until),
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
       backoff_set_at = NULL, write_date = timezone('UTC', statement_timestamp())
 WHERE name = %s AND backoff_until > timezone('UTC', statement_timestamp())
"""

# -- name: exc_infos
EXC_INFOS = "SELECT id, exc_info FROM queue_job WHERE id = ANY(%s::integer[])"

# -- name: set_exc_info
SET_EXC_INFO = "UPDATE queue_job SET exc_info = %s WHERE id = %s"

# -- name: force_done
# Manual actions: whatever the state (the caller checked it is allowed).
FORCE_DONE = """
UPDATE queue_job SET state = 'done', completed_at = timezone('UTC', statement_timestamp()),
       write_date = timezone('UTC', statement_timestamp()), cascaded_from_id = NULL
 WHERE id = ANY(%s::integer[]) RETURNING id, has_dependents
"""

# -- name: force_failed
FORCE_FAILED = """
UPDATE queue_job SET state = 'failed', completed_at = timezone('UTC', statement_timestamp()),
       write_date = timezone('UTC', statement_timestamp()), cascaded_from_id = NULL,
       exc_name = COALESCE(exc_name, %s), exc_message = %s
 WHERE id = ANY(%s::integer[]) RETURNING id, has_dependents
"""

# -- name: force_cancelled
FORCE_CANCELLED = """
UPDATE queue_job SET state = 'cancelled', cancelled_at = timezone('UTC', statement_timestamp()),
       write_date = timezone('UTC', statement_timestamp()), cascaded_from_id = NULL
 WHERE id = ANY(%s::integer[]) RETURNING id, has_dependents
"""

# -- name: requeue
REQUEUE = """
UPDATE queue_job SET state = 'pending', attempts = 0, exc_name = NULL, exc_message = NULL,
       exc_info = NULL, result = NULL, completed_at = NULL, cancelled_at = NULL,
       started_at = NULL, duration = NULL, worker_id = NULL, heartbeat = NULL,
       cascaded_from_id = NULL, scheduled_at = timezone('UTC', statement_timestamp()),
       write_date = timezone('UTC', statement_timestamp()), backoffs = 0
 WHERE id = ANY(%s::integer[])
"""

# -- Graph cascades (PRODUCT.md 4): the reads and writes of queue.states.evaluate.

# -- name: dependents
DEPENDENTS = "SELECT DISTINCT job_id FROM queue_job_dependency WHERE parent_id = ANY(%s::integer[])"

# -- name: lock_dependents
LOCK_DEPENDENTS = """
SELECT id FROM queue_job WHERE id = ANY(%s::integer[]) AND state = ANY(%s::text[]) ORDER BY id FOR UPDATE
"""

# -- name: edges
EDGES = """
SELECT d.job_id, d.parent_id, d.kind, p.state
  FROM queue_job_dependency d JOIN queue_job p ON p.id = d.parent_id
 WHERE d.job_id = ANY(%s::integer[]) ORDER BY d.job_id, d.parent_id
"""

# -- name: release
RELEASE = """
UPDATE queue_job SET state = 'pending', write_date = timezone('UTC', statement_timestamp())
 WHERE id = ANY(%s::integer[]) AND state = 'waiting'
"""

# -- name: wait_back
WAIT_BACK = """
UPDATE queue_job SET state = 'waiting', write_date = timezone('UTC', statement_timestamp())
 WHERE id = ANY(%s::integer[]) AND state = 'pending'
"""

# -- name: fail_dependents
# `at` is the clock the diagnosis was written with (this transaction's); the diagnosis
# comes twice: after a newline to append, alone for a job that had none.
FAIL_DEPENDENTS = """
UPDATE queue_job SET state = 'failed', exc_name = %s, exc_message = %s,
       exc_info = COALESCE(exc_info || E'\n' || %s, %s),
       completed_at = %s, write_date = %s, cascaded_from_id = %s
 WHERE id = ANY(%s::integer[]) AND state IN ('waiting', 'pending')
"""

# -- name: cancel_dependents
CANCEL_DEPENDENTS = """
UPDATE queue_job SET state = 'cancelled', cancelled_at = timezone('UTC', statement_timestamp()),
       write_date = timezone('UTC', statement_timestamp()), cascaded_from_id = %s
 WHERE id = ANY(%s::integer[]) AND state IN ('waiting', 'pending')
"""

# -- name: rewait_decided
# Dependents whose fate these parents decided (failed or cancelled with them) wait again.
REWAIT_DECIDED = """
UPDATE queue_job SET state = 'waiting', cascaded_from_id = NULL, exc_name = NULL,
       exc_message = NULL, completed_at = NULL, cancelled_at = NULL,
       write_date = timezone('UTC', statement_timestamp())
 WHERE cascaded_from_id = ANY(%s::integer[]) AND state IN ('failed', 'cancelled')
RETURNING id
"""

# -- name: rewait_released
# on_error dependents released by these parents' failure, not started yet, wait again.
REWAIT_RELEASED = """
UPDATE queue_job SET state = 'waiting', write_date = timezone('UTC', statement_timestamp())
 WHERE state = 'pending' AND id IN (SELECT d.job_id FROM queue_job_dependency d
                                     WHERE d.parent_id = ANY(%s::integer[]) AND d.kind = 'error')
RETURNING id
"""

# -- name: purge
# One batch of finished jobs last changed `retention_days` ago, oldest first.
PURGE = """
DELETE FROM queue_job WHERE id IN (
    SELECT id FROM queue_job
     WHERE state IN ('done', 'failed', 'cancelled')
       AND write_date < timezone('UTC', statement_timestamp()) - %s::float8 * interval '1 day'
     ORDER BY id LIMIT %s)
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

# -- Enqueue-time channel rules (PRODUCT.md 12): weight, max_depth. -----------------

# -- name: channel_rules
# (The caller adds the condition on the channel names.)
CHANNEL_RULES = 'SELECT name, "limit", max_depth, depth_policy FROM queue_limit'

# -- name: lock_depth
# Enqueuers into one bounded channel serialise on a transaction advisory lock (key:
# the schema, then the channel's name), held to their commit; the count is a
# statement of its own, sent with the lock: under READ COMMITTED its snapshot is
# taken once the lock is held, so it sees every job the previous holder committed.
LOCK_DEPTH = (
    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.queue_job.depth'), hashtext(%s))"
)

# -- name: channel_depth
# Jobs of the channel waiting or pending (the pending ones by their partial index).
CHANNEL_DEPTH = """
SELECT (SELECT count(*) FROM queue_job WHERE state = 'pending' AND channel = %s)
     + (SELECT count(*) FROM queue_job WHERE state = 'waiting' AND channel = %s)
"""

# -- name: count_skipped
COUNT_SKIPPED = "UPDATE queue_limit SET skipped = skipped + %s WHERE name = %s"

# -- end of the enqueue-time channel rules ------------------------------------------

# -- Readers of fair share (jobs explain, limits fair, the dashboard, metrics). --------
# Read-only; each walks the pending index one probe a key and stops at its bound.

# -- name: fair_keys
# The first (priority, key) pairs with pending jobs of a channel, in the order of the
# pending index (a loose index scan: one probe a pair, stopped after `pairs` of them),
# each with its pending jobs there counted up to `count`.
FAIR_KEYS = """
WITH RECURSIVE pairs(priority, fair_key, n) AS (
    (SELECT priority, fair_key, 1 FROM queue_job
      WHERE state = 'pending' AND channel = %(channel)s
      ORDER BY priority, fair_key LIMIT 1)
  UNION ALL
    SELECT q.priority, q.fair_key, p.n + 1 FROM pairs p CROSS JOIN LATERAL (
        SELECT priority, fair_key FROM queue_job
         WHERE state = 'pending' AND channel = %(channel)s
           AND (priority, fair_key) > (p.priority, p.fair_key)
         ORDER BY priority, fair_key LIMIT 1) q
     WHERE p.n < %(pairs)s
)
SELECT p.priority, p.fair_key,
       (SELECT count(*) FROM (SELECT 1 FROM queue_job
                               WHERE state = 'pending' AND channel = %(channel)s
                                 AND priority = p.priority AND fair_key = p.fair_key
                               LIMIT %(count)s) c)
  FROM pairs p ORDER BY p.n
"""

# -- name: key_after
# Whether a fair key sorts after another in the order of the keys' column.
KEY_AFTER = "SELECT %s::text > %s::text"

# -- name: due_fair_keys
# The keys with pending jobs at one priority of a channel in a range of keys (after a
# key, or from it when asked; before a key, or to the last one when NULL), walked one
# probe a key and stopped after `walk` of them: how many have a due job there, and how
# many were walked.
DUE_FAIR_KEYS = """
WITH RECURSIVE keys(k, n) AS (
    SELECT (SELECT fair_key FROM queue_job
             WHERE state = 'pending' AND channel = %(channel)s AND priority = %(priority)s
               AND fair_key {after} %(start)s
             ORDER BY fair_key LIMIT 1), 1
  UNION ALL
    SELECT (SELECT fair_key FROM queue_job
             WHERE state = 'pending' AND channel = %(channel)s AND priority = %(priority)s
               AND fair_key > p.k
             ORDER BY fair_key LIMIT 1), p.n + 1
      FROM keys p
     WHERE p.k IS NOT NULL AND p.n < %(walk)s
       AND (%(stop)s::text IS NULL OR p.k < %(stop)s)
), walked AS (
    SELECT EXISTS (SELECT 1 FROM queue_job
                    WHERE state = 'pending' AND channel = %(channel)s
                      AND priority = %(priority)s AND fair_key = keys.k
                      AND scheduled_at <= %(now)s) AS due
      FROM keys
     WHERE k IS NOT NULL AND (%(stop)s::text IS NULL OR k < %(stop)s)
)
SELECT count(*) FILTER (WHERE due), count(*) FROM walked
"""


# -- Kept counts: waiting and pending jobs by channel (the dashboard, /metrics, stats). --
# Triggers on queue_job add one row of deltas per counted change to queue_job_count,
# in the transaction that makes the change; nothing is ever updated in place, so
# enqueuers and claimers never wait on each other's counter row (a row updated in
# place would be locked until the enqueuer's own transaction commits). A reader sums
# the rows its snapshot sees: exactly the jobs that snapshot sees. The maintenance
# folds the deltas into one row per (channel, state) every run.

# -- name: counts_table
COUNTS_TABLE = """
CREATE TABLE IF NOT EXISTS queue_job_count (
    channel VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    n BIGINT NOT NULL
)
"""

# -- name: counts_function
# One function for the three row triggers; the table is named with its schema, so a
# session with another search_path counts into the right one. (The schema name is
# quoted by format() when the function is made.)
COUNTS_FUNCTION = """
DO $do$ BEGIN EXECUTE format($f$
CREATE OR REPLACE FUNCTION %1$I.queue_job_counted() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.state IN ('waiting', 'pending') THEN
        INSERT INTO %1$I.queue_job_count (channel, state, n) VALUES (OLD.channel, OLD.state, -1);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.state IN ('waiting', 'pending') THEN
        INSERT INTO %1$I.queue_job_count (channel, state, n) VALUES (NEW.channel, NEW.state, 1);
    END IF;
    RETURN NULL;
END
$body$;
CREATE OR REPLACE FUNCTION %1$I.queue_job_counts_cleared() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    DELETE FROM %1$I.queue_job_count;
    RETURN NULL;
END
$body$
$f$, current_schema()); END $do$
"""

# -- name: counts_triggers
# The WHEN conditions are checked before any function is called: a heartbeat, a
# finished job (started -> done) or a purged one costs nothing here.
COUNTS_TRIGGERS = (
    "DROP TRIGGER IF EXISTS queue_job_counted_insert ON queue_job",
    "DROP TRIGGER IF EXISTS queue_job_counted_update ON queue_job",
    "DROP TRIGGER IF EXISTS queue_job_counted_delete ON queue_job",
    "DROP TRIGGER IF EXISTS queue_job_counts_cleared ON queue_job",
    """CREATE TRIGGER queue_job_counted_insert AFTER INSERT ON queue_job FOR EACH ROW
       WHEN (NEW.state IN ('waiting', 'pending')) EXECUTE FUNCTION queue_job_counted()""",
    """CREATE TRIGGER queue_job_counted_update AFTER UPDATE OF state, channel ON queue_job
       FOR EACH ROW WHEN ((OLD.state IS DISTINCT FROM NEW.state
                           OR OLD.channel IS DISTINCT FROM NEW.channel)
                          AND (OLD.state IN ('waiting', 'pending')
                               OR NEW.state IN ('waiting', 'pending')))
       EXECUTE FUNCTION queue_job_counted()""",
    """CREATE TRIGGER queue_job_counted_delete AFTER DELETE ON queue_job FOR EACH ROW
       WHEN (OLD.state IN ('waiting', 'pending')) EXECUTE FUNCTION queue_job_counted()""",
    """CREATE TRIGGER queue_job_counts_cleared AFTER TRUNCATE ON queue_job
       FOR EACH STATEMENT EXECUTE FUNCTION queue_job_counts_cleared()""",
)

# -- name: counts_installed
# How many of the four triggers the queue's table has.
COUNTS_INSTALLED = """
SELECT count(*) FROM pg_trigger
 WHERE tgrelid = to_regclass(quote_ident(current_schema()) || '.queue_job')
   AND tgname IN ('queue_job_counted_insert', 'queue_job_counted_update',
                  'queue_job_counted_delete', 'queue_job_counts_cleared')
"""

# -- name: recount
# The counts made again from the jobs, writers kept out meanwhile (SHARE mode lets
# readers in, and no writer until this transaction ends).
RECOUNT = (
    "LOCK TABLE queue_job IN SHARE MODE",
    "DELETE FROM queue_job_count",
    """INSERT INTO queue_job_count (channel, state, n)
       SELECT channel, state, count(*) FROM queue_job
        WHERE state IN ('waiting', 'pending') GROUP BY channel, state""",
)

# -- name: compact_counts
# Fold the deltas into one row per (channel, state), dropping those that sum to 0. A
# delta committed meanwhile is not in this statement's snapshot and stays as it is;
# two folds at once would each take distinct rows, but the second one skips its turn
# (a transaction advisory lock).
COMPACT_COUNTS_LOCK = (
    "SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.queue_job_count'), 0)"
)
COMPACT_COUNTS = """
WITH gone AS (DELETE FROM queue_job_count RETURNING channel, state, n),
     kept AS (INSERT INTO queue_job_count (channel, state, n)
              SELECT channel, state, sum(n) FROM gone
               GROUP BY channel, state HAVING sum(n) <> 0
              RETURNING 1)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM kept)
"""

# -- name: vacuum_counts
# After a fold, outside any transaction (see PostgresJobStore.fold_counts).
VACUUM_COUNTS = "VACUUM queue_job_count"

# -- name: queued_counts
QUEUED_COUNTS = """
SELECT channel, state, sum(n) FROM queue_job_count GROUP BY channel, state HAVING sum(n) <> 0
"""

# -- name: notify
NOTIFY = f"SELECT pg_notify('{NOTIFY_CHANNEL}', current_schema())"
NOTIFY_CRONS = f"SELECT pg_notify('{CRONS_CHANNEL}', current_schema())"


class PostgresJobStore(JobStore):
    backend: PostgresBackend
    queued_counts_sql = QUEUED_COUNTS
    next_scheduled_sql = NEXT_SCHEDULED
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
    channel_rules_sql = CHANNEL_RULES
    channel_depth_sql = CHANNEL_DEPTH
    count_skipped_sql = COUNT_SKIPPED
    back_off_sql = BACK_OFF
    back_off_channel_sql = BACK_OFF_CHANNEL

    #: whether the channels with room at the last claim had neither fair keys nor rate
    #: windows: the next claim then tries the claim in one statement first
    _plain = True

    def session(self, *, role: str) -> PostgresSession:
        return PostgresSession(self.backend, role)

    def _claim_at_once(
        self,
        cr: Cursor,
        worker_id: str,
        wanted: int,
        default_limit: int,
        channels: Sequence[str] | None,
    ) -> Claim | None:
        """The claim in one round trip: the BEGIN, the claim lock, ``claim_plain`` and the
        COMMIT in one message. Not tried while the last claim saw a channel with room
        with fair keys or rate windows; None (nothing taken) when this one sees one."""
        if not self._plain:
            return None
        assert isinstance(cr, PostgresCursor)
        names = list(channels) if channels else None
        _lock, rows = cr.execute_and_commit(
            [
                (LOCK_CLAIMS, (CLAIM_LOCK,)),
                (
                    _claim_plain_sql(_power_of_two(wanted)),
                    (default_limit, names, names, wanted, wanted, worker_id, wanted),
                ),
            ],
            prepared=True,
        )
        width = len(CLAIM_COLUMNS)
        now, ruled, backoff_until, next_due, plan = rows[0][width:]
        if ruled:
            self._plain = False
            return None
        jobs = [ClaimedJob.from_row(row[:width]) for row in rows if row[0] is not None]
        retry_in = None
        if backoff_until is not None:  # a job's backoff pauses a channel until then
            retry_in = max((backoff_until - now).total_seconds(), 0.0)
        taken = Counter(job.channel for job in jobs)
        takes = {channel: take for channel, take, _free in plan}
        short = len(jobs) < wanted and any(taken[channel] < take for channel, take in takes.items())
        if next_due is not None and short:
            wait = max((next_due - now).total_seconds(), 0.0)
            retry_in = wait if retry_in is None else min(retry_in, wait)
        jobs.sort(key=lambda job: (job.priority, job.scheduled_at, job.id))
        free = {channel: room for channel, _take, room in plan}
        return Claim(jobs, retry_in, exhausted(free, takes, jobs))

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
        if plan.fair:  # the lines of fair channels are made in turns, merged in Python
            return super()._take(cr, plan, wanted, worker_id, now)
        cr.execute(*self._take_statement(plan, wanted, worker_id, now))
        return [ClaimedJob.from_row(row) for row in cr.fetchall()]

    def _channel_line(self, cr: Cursor, channel: str, count: int, now: datetime) -> list[Candidate]:
        cr.execute(CHANNEL_LINE, (channel, now, count))
        return [Candidate(row[0], channel, *row[1:]) for row in cr.fetchall()]

    def _fair_level(
        self,
        cr: Cursor,
        channel: str,
        floor: int,
        cursor: tuple[str, int],
        count: int,
        now: datetime,
    ) -> tuple[int, list[FairRow]] | None:
        start, unfinished = cursor
        values = {
            "channel": channel,
            "floor": floor,
            "cursor": start,
            "inclusive": bool(unfinished),
            "now": now,
            "count": count,
        }
        # prepared: planning this statement costs more than running it; the cursor's key is
        # passed over by the index's own bound (a filter would read every job of the key)
        sql = FAIR_LEVEL.replace("{after}", ">=" if unfinished else ">")
        [rows] = cr.execute_together([_positional(sql, values)], prepared=True)
        if rows:
            return rows[0][0], [tuple(row[1:]) for row in rows]
        cr.execute(FAIR_LEVEL_PRIORITY, (channel, floor, now))
        level = cr.fetchone()
        return None if level is None else (level[0], [])

    def _mark_started(
        self, cr: Cursor, job_ids: Sequence[int], worker_id: str, now: datetime
    ) -> list[ClaimedJob]:
        cr.execute(MARK_STARTED, (worker_id, now, now, now, list(job_ids)))
        return [ClaimedJob.from_row(row) for row in cr.fetchall()]

    def _take_and_commit(
        self, cr: Cursor, plan: ChannelPlan, wanted: int, worker_id: str, now: datetime
    ) -> tuple[list[ClaimedJob], datetime | None]:
        self._plain = not plan.fair and not plan.windows
        if not plan.free or plan.windows:
            return super()._take_and_commit(cr, plan, wanted, worker_id, now)
        assert isinstance(cr, PostgresCursor)
        if plan.fair:
            # the turns are worked out first (a statement a priority level); then one round
            # trip: the jobs marked started, the channels' rotation, when the next job
            # becomes due, and the commit
            picked = self._pick(cr, plan, wanted, now)
            ids = [candidate.id for candidate in picked]
            take, *_cursors, due = cr.execute_and_commit(
                [
                    (MARK_STARTED, (worker_id, now, now, now, ids)),
                    *(
                        (SET_FAIR_CURSOR, (channel, *turn))
                        for channel, turn in fair_turns(plan, picked).items()
                    ),
                    self._next_due(plan, now),
                ],
                prepared=True,
            )
        else:
            # one round trip: the jobs, when the channels' next job becomes due (read every
            # time, used when a channel came up short), and the commit
            take, due = cr.execute_and_commit(
                [self._take_statement(plan, wanted, worker_id, now), self._next_due(plan, now)],
                prepared=True,
            )
        return [ClaimedJob.from_row(row) for row in take], due[0][0] if due else None

    @staticmethod
    def _take_statement(
        plan: ChannelPlan, wanted: int, worker_id: str, now: datetime
    ) -> tuple[str, Sequence[Any]]:
        # the plan as one JSON text (far cheaper to send than arrays); no channel needs
        # more candidates than the claim wants: each one is locked (FOR UPDATE)
        take = {channel: plan.jobs_at_most(channel, wanted) for channel in plan.free}
        channels = json.dumps(
            [{"channel": c, "free": plan.free[c], "take": count} for c, count in take.items()]
        )
        sql = _take_sql(len(take), max(take.values()))
        return sql, (channels, now, wanted, worker_id, now, now, now)

    def _run_locks(self, job_ids: Sequence[int]) -> list[tuple[str, Sequence[Any]]]:
        return [(LOCK_JOBS, (_id_array(job_ids),))]

    def _check_jobs(self, job_ids: Sequence[int], worker_id: str) -> tuple[str, Sequence[Any]]:
        return CHECK_JOBS_IN, (worker_id, _id_array(job_ids))

    def lock_depth(self, cr: Cursor, channel: str) -> int:
        # one round trip: the lock, then the count in a statement of its own
        _lock, rows = cr.execute_together(
            [(LOCK_DEPTH, (channel,)), (CHANNEL_DEPTH, (channel, channel))]
        )
        return int(rows[0][0])

    def executor_gone(self, cr: Cursor, job_id: int) -> bool:
        cr.execute(EXECUTOR_GONE, (job_id,))
        row = cr.fetchone()
        return bool(row and row[0])

    def terminate_session(self, cr: Cursor, session_id: int | None) -> None:
        if session_id:
            cr.execute(TERMINATE_SESSION, (session_id,))

    # -- state changes --------------------------------------------------------

    def start(self, cr: Cursor, job_id: int, worker_id: str | None) -> bool:
        cr.execute(START, (worker_id, job_id))
        return cr.rowcount == 1

    def finish(
        self,
        cr: Cursor,
        finished: Sequence[FinishedRow],
        worker_id: str | None,
    ) -> dict[int, bool]:
        statement = _finish_statement(finished, worker_id)
        if len(finished) == 1:  # run_now() too: on a connection psycopg may prepare for
            cr.execute(*statement)
            return _marked(cr.fetchall())
        [rows] = cr.execute_together([statement], prepared=True)  # a worker's batch
        return _marked(rows)

    def finish_handing_off(
        self,
        cr: Cursor,
        finished: Sequence[FinishedRow],
        worker_id: str,
        hand_off: HandOff,
    ) -> tuple[dict[int, bool], list[ClaimedJob]]:
        statements = [(GENERIC_PLANS, ()), _finish_statement(finished, worker_id)]
        freeing = [row[0] for row in finished] if hand_off.freeing is None else hand_off.freeing
        values = {
            "channel": hand_off.channel,
            "default_limit": hand_off.default_limit,
            "finished": _id_array(freeing),
            "worker_id": worker_id,
            "take": hand_off.jobs,
        }
        sql = _hand_off_sql(_power_of_two(hand_off.jobs), hand_off.serial)
        statements.append(_positional(sql, values))
        _plans, rows, handed = cr.execute_together(statements, prepared=True)
        jobs = [ClaimedJob.from_row(row) for row in handed]
        jobs.sort(key=lambda job: (job.priority, job.scheduled_at, job.id))
        return _marked(rows), jobs

    def failing_job(
        self, cr: Cursor, job_id: int, expected_state: str, worker_id: str | None
    ) -> FailingJob | None:
        cr.execute(FAILING_JOB, (job_id, expected_state, worker_id, worker_id))
        row = cr.fetchone()
        return None if row is None else FailingJob(*row)

    def return_to_pending(
        self, cr: Cursor, job_ids: Sequence[int], worker_id: str | None
    ) -> list[int]:
        cr.execute(RETURN_TO_PENDING, (list(job_ids), worker_id, worker_id))
        return [row[0] for row in cr.fetchall()]

    def channel_backoffs(self, cr: Cursor, now: datetime) -> dict[str, ChannelBackoffState]:
        cr.execute(CHANNEL_BACKOFFS, (now,))
        return {name: ChannelBackoffState(*state) for name, *state in cr.fetchall()}

    def lift_channel_backoff(self, cr: Cursor, channel: str) -> bool:
        cr.execute(LIFT_CHANNEL_BACKOFF, (channel,))
        return cr.rowcount == 1

    def exc_infos(self, cr: Cursor, job_ids: Sequence[int]) -> dict[int, str | None]:
        cr.execute(EXC_INFOS, (list(job_ids),))
        return dict(cr.fetchall())

    def set_exc_info(self, cr: Cursor, job_id: int, exc_info: str) -> None:
        cr.execute(SET_EXC_INFO, (exc_info, job_id))

    def force(
        self,
        cr: Cursor,
        job_ids: Sequence[int],
        state: str,
        *,
        exc_name: str | None = None,
        exc_message: str | None = None,
    ) -> list[int]:
        ids = list(job_ids)
        if state == "done":
            cr.execute(FORCE_DONE, (ids,))
        elif state == "failed":
            cr.execute(FORCE_FAILED, (exc_name, exc_message, ids))
        elif state == "cancelled":
            cr.execute(FORCE_CANCELLED, (ids,))
        else:
            raise ValueError(f"a job is set done, failed or cancelled by hand, not {state!r}")
        return [job_id for job_id, has_dependents in cr.fetchall() if has_dependents]

    def requeue(self, cr: Cursor, job_ids: Sequence[int]) -> None:
        cr.execute(REQUEUE, (list(job_ids),))

    # -- graph cascades -------------------------------------------------------

    def dependents(self, cr: Cursor, parent_ids: Sequence[int]) -> list[int]:
        cr.execute(DEPENDENTS, (list(parent_ids),))
        return [row[0] for row in cr.fetchall()]

    def lock_dependents(
        self, cr: Cursor, job_ids: Sequence[int], states: Sequence[str]
    ) -> list[int]:
        cr.execute(LOCK_DEPENDENTS, (list(job_ids), list(states)))
        return [row[0] for row in cr.fetchall()]

    def edges(self, cr: Cursor, job_ids: Sequence[int]) -> list[tuple[int, int, str, str]]:
        cr.execute(EDGES, (list(job_ids),))
        return [(job_id, parent, kind, state) for job_id, parent, kind, state in cr.fetchall()]

    def release(self, cr: Cursor, job_ids: Sequence[int]) -> None:
        cr.execute(RELEASE, (list(job_ids),))

    def wait_back(self, cr: Cursor, job_ids: Sequence[int]) -> None:
        cr.execute(WAIT_BACK, (list(job_ids),))

    @staticmethod
    def _id_list(job_ids: Sequence[int]) -> Any:
        return list(job_ids)  # an integer[] parameter

    def cancel_dependents(self, cr: Cursor, job_ids: Sequence[int], parent_id: int) -> None:
        cr.execute(CANCEL_DEPENDENTS, (parent_id, list(job_ids)))

    def wait_again(self, cr: Cursor, parent_ids: Sequence[int]) -> list[int]:
        ids = list(parent_ids)
        decided, released = cr.execute_together(
            [(REWAIT_DECIDED, (ids,)), (REWAIT_RELEASED, (ids,))]
        )
        return [row[0] for row in (*decided, *released)]

    # -- readers of fair share ---------------------------------------------------

    def fair_keys(
        self, cr: Cursor, channel: str, *, pairs: int, count: int = 0
    ) -> list[tuple[int, str, int]]:
        if pairs <= 0:
            return []
        values = {"channel": channel, "pairs": pairs, "count": count}
        cr.execute(*_positional(FAIR_KEYS, values))
        return [(priority, key, int(pending)) for priority, key, pending in cr.fetchall()]

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
        if walk <= 0:
            return 0, True
        values = {
            "channel": channel,
            "priority": priority,
            "start": start,
            "stop": stop,
            "walk": walk,
            "now": now,
        }
        # the start key is passed over by the index's own bound, not read through
        sql = DUE_FAIR_KEYS.replace("{after}", ">=" if inclusive else ">")
        cr.execute(*_positional(sql, values))
        due, walked = cr.fetchone()  # type: ignore[misc]
        return int(due), int(walked) >= walk

    def key_after(self, cr: Cursor, key: str, other: str) -> bool:
        cr.execute(KEY_AFTER, (key, other))
        return bool(cr.fetchone()[0])  # type: ignore[index]

    # -- bookkeeping ----------------------------------------------------------

    def register_worker(self, cr: Cursor, values: dict[str, Any]) -> None:
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
            ),
        )

    def heartbeat(self, cr: Cursor, worker_id: str) -> None:
        cr.execute_together([(HEARTBEAT_WORKER, (worker_id,)), (HEARTBEAT_JOBS, (worker_id,))])

    def stop_worker(self, cr: Cursor, worker_id: str) -> None:
        cr.execute(STOP_WORKER, (worker_id,))

    def purge(self, cr: Cursor, retention_days: float, batch: int) -> int:
        if not retention_days:
            return 0
        cr.execute(PURGE, (retention_days, batch))
        return cr.rowcount

    def install_counts(self, cr: Cursor) -> bool:
        cr.execute(COUNTS_TABLE)
        cr.execute(COUNTS_FUNCTION)
        cr.execute(COUNTS_INSTALLED)
        creates = sum(1 for sql in COUNTS_TRIGGERS if sql.startswith("CREATE"))
        if int(cr.fetchone()[0]) == creates:  # type: ignore[index]
            return False
        # CREATE TRIGGER locks out writers until this transaction ends: the count below
        # sees every job any of them committed, and nothing changes after it uncounted
        for statement in COUNTS_TRIGGERS:
            cr.execute(statement)
        self.recount(cr)
        return True

    def recount(self, cr: Cursor) -> None:
        for statement in RECOUNT:
            cr.execute(statement)

    def compact_counts(self, cr: Cursor) -> int:
        """Fold the deltas into one row per (channel, state) in ``cr``'s transaction;
        the rows folded (0 when another fold holds the lock)."""
        cr.execute(COMPACT_COUNTS_LOCK, ())
        if not cr.fetchone()[0]:  # type: ignore[index]
            return 0
        cr.execute(COMPACT_COUNTS, ())
        gone, kept = cr.fetchone()  # type: ignore[misc]
        return int(gone) - int(kept)

    def fold_counts(self, session: Session) -> int:
        with session.cursor(None) as cr:
            folded = self.compact_counts(cr)
        if folded:
            # each fold leaves the rows it folded dead; without a vacuum now (autovacuum
            # may be minutes away, or off) new deltas would land on new pages and readers
            # would scan a table that only grows. A few pages: milliseconds.
            assert isinstance(session, PostgresSession)
            session.execute_outside_transaction(VACUUM_COUNTS)
        return folded

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

    def notify_at_commit(self, cr: Cursor, *, crons: bool = False) -> None:
        # periodic jobs have a channel of their own: an enqueue does not make every idle
        # worker read them again (one more round trip of its supervisor per wake-up)
        statement = NOTIFY_CRONS if crons else NOTIFY
        cr.precommit.add(partial(cr.execute, statement, ()), key=statement)

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
                **NO_AUTO_PREPARE,
            )
            settings = [SESSION_SETTINGS, *ROLE_SETTINGS.get(self.role, ())]
            cnx.execute("; ".join(settings))  # no parameters: one message, one round trip
            self._cnx = cnx
            self.session_id = cnx.info.backend_pid
        return self._cnx

    def execute_outside_transaction(self, statement: str) -> None:
        """Run a statement that cannot run in a transaction block (``VACUUM``)."""
        cnx = self._connect()
        try:
            cnx.execute(statement)
        except Exception:
            if cnx.broken:
                self.close()
            raise

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
            cnx.execute(f"LISTEN {NOTIFY_CHANNEL}; LISTEN {CRONS_CHANNEL}")
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
            self._crons_changed = True
            return True  # claim: we may have missed a wake-up while the link was down
        woken = False
        while (notice := pgconn.notifies()) is not None:
            if notice.extra.decode() != self._schema:
                continue  # another schema's queue
            if notice.relname.decode() == CRONS_CHANNEL:
                self._crons_changed = True
            else:
                woken = True
        return woken

    def close(self) -> None:
        cnx, self._cnx = self._cnx, None
        if cnx is not None:
            try:
                cnx.close()
            except Exception:
                pass
