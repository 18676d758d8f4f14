"""Read-side queries over the queue, shared by ``job-worker stats``, the dashboard,
``/metrics``, metric snapshots and alert rules.

Every query here stays cheap with millions of job rows: it reads through an
index (active states, ``(state, write_date)``, ``(state, id)``) and counts
with a cap (:func:`bounded_count`) instead of a full ``COUNT(*)``. A finished
job's ``write_date`` is the moment it finished (done, failed or cancelled), so
"finished in the last hour" is a range scan of ``(state, write_date)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..db import Cursor
from ..db.jobstore import job_store
from ..orm.fields import Datetime
from ..queue import config
from ..queue.lifecycle import JobState

#: counts of possibly huge sets stop here; shown as "100000+"
COUNT_CAP = 100_000
#: windowed counts (throughput, failures) stop here
WINDOW_CAP = 20_000
#: duration percentiles and averages use at most this many of the latest finished jobs,
#: and so does the failure rate of a window whose counts stopped at the cap
SAMPLE = 10_000
#: a pending job due for longer than this is "aged"
AGED_PENDING = timedelta(minutes=10)
#: fair keys with work shown per channel (``limits fair``, the dashboard); "+" beyond
FAIR_KEYS_SHOWN = 100
#: pending jobs counted per fair key, up to this many
FAIR_PENDING_CAP = 1000
#: fair keys with work counted per channel for ``/metrics``, up to this many
FAIR_KEYS_CAP = 1000

_DT = Datetime()


def as_datetime(value: Any) -> datetime | None:
    """A datetime column value as a naive UTC datetime (SQLite returns text)."""
    return _DT.from_column(value) if value else None


def bounded_count(
    cr: Cursor, where: str, params: Sequence[Any], cap: int = COUNT_CAP, *, order: str = ""
) -> int:
    """``COUNT(*)`` of the queue_job rows matching ``where``, stopping at ``cap``;
    ``order``: the columns of the index the count should walk (``ORDER BY`` them)."""
    order_by = f" ORDER BY {order}" if order else ""
    cr.execute(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM queue_job WHERE {where}{order_by} LIMIT %s) capped",
        [*params, cap],
    )
    return int(cr.fetchone()[0])  # type: ignore[index]


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` percentile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def depth(cr: Cursor) -> dict[tuple[str, str], int]:
    """{(channel, state): jobs} for the active states: waiting and pending from the
    kept counts (:meth:`~job_worker.db.jobstore.JobStore.queued_counts`: the backlog is
    never counted), started from their index (there are at most as many as the
    workers' executors)."""
    counts = job_store(cr.backend).queued_counts(cr)
    for channel, (jobs, _weight) in running(cr).items():
        counts[channel, JobState.STARTED.value] = jobs
    return counts


#: every channel that has a job (a loose scan of the channel index: one probe per
#: channel, however many jobs it holds) or a limit row
CHANNEL_NAMES = """
WITH RECURSIVE channels(name) AS (
    SELECT (SELECT min(channel) FROM queue_job)
  UNION ALL
    SELECT (SELECT min(channel) FROM queue_job WHERE channel > c.name)
      FROM channels c WHERE c.name IS NOT NULL
)
SELECT name FROM channels WHERE name IS NOT NULL
UNION
SELECT name FROM queue_limit
"""


def channel_names(cr: Cursor) -> list[str]:
    """Every channel with a job in any state or a ``queue.limit`` row, sorted: what a
    filter by channel offers. Nothing is counted: with 10^7 jobs it reads one index
    entry per channel."""
    cr.execute(CHANNEL_NAMES)
    return sorted(row[0] for row in cr.fetchall())


@dataclass
class Window:
    """What finished in a time window."""

    done: int = 0
    failed: int = 0
    capped: bool = False
    duration_avg: float | None = None
    duration_p95: float | None = None
    wait_avg: float | None = None
    #: where the counts stopped at the cap: the failure rate is that of the jobs that
    #: finished from this time on (the latest :data:`SAMPLE` done or failed ones)
    rate_since: datetime | None = None
    #: (done, failed) from ``rate_since`` on
    rate_counts: tuple[int, int] | None = None

    @property
    def failure_rate(self) -> float | None:
        done, failed = self.rate_counts or (self.done, self.failed)
        return failed / (done + failed) if done + failed else None


def window(
    cr: Cursor,
    since: datetime,
    until: datetime | None = None,
    channel: str | None = None,
    *,
    user_id: int | None = None,
    sample: bool = True,
) -> Window:
    """Done and failed counts in [since, until) (of one user's jobs: ``user_id``), each
    counted up to :data:`WINDOW_CAP`, with (``sample``) duration p95/average and the
    average wait (due -> start) over the latest :data:`SAMPLE` done jobs. A window
    whose counts stopped at the cap takes its failure rate over the latest jobs."""
    cond = "write_date >= %s"
    params: list[Any] = [since]
    if until is not None:
        cond += " AND write_date < %s"
        params.append(until)
    for column, value in (("channel", channel), ("user_id", user_id)):
        if value is not None:
            cond += f" AND {column} = %s"
            params.append(value)
    result = Window()
    for state in (JobState.DONE, JobState.FAILED):
        count = bounded_count(cr, f"state = '{state}' AND {cond}", params, WINDOW_CAP)
        result.capped = result.capped or count >= WINDOW_CAP
        setattr(result, state, count)
    latest_done = None  # the finish of the SAMPLE-th latest done job, when the sample has it
    if result.done and sample:
        cr.execute(
            "SELECT duration, started_at, scheduled_at, write_date FROM queue_job"
            f" WHERE state = 'done' AND {cond} ORDER BY write_date DESC LIMIT %s",
            [*params, SAMPLE],
        )
        rows = cr.fetchall()
        durations = [float(r[0]) for r in rows if r[0] is not None]
        waits = []
        for _duration, started, scheduled, _finished in rows:
            started, scheduled = as_datetime(started), as_datetime(scheduled)
            if started and scheduled:
                waits.append(max(0.0, (started - scheduled).total_seconds()))
        result.duration_p95 = percentile(durations, 0.95)
        result.duration_avg = sum(durations) / len(durations) if durations else None
        result.wait_avg = sum(waits) / len(waits) if waits else None
        if len(rows) == SAMPLE:
            latest_done = as_datetime(rows[-1][3])
    if result.capped:
        _rate_of_latest(cr, result, cond, params, latest_done)
    return result


def _rate_of_latest(
    cr: Cursor, result: Window, cond: str, params: list[Any], latest_done: datetime | None
) -> None:
    """The failure rate of a capped window, over the jobs that finished since the
    :data:`SAMPLE`-th latest done one (or failed one, whichever is later): both counts
    from then on stay small, however many jobs the window holds. ``latest_done``: that
    done job's finish, when the caller read it already (the durations' sample)."""
    starts: list[datetime | None] = [] if latest_done is None else [latest_done]
    for state in (JobState.DONE, JobState.FAILED):
        if state == JobState.DONE and latest_done is not None:
            continue
        cr.execute(
            f"SELECT write_date FROM queue_job WHERE state = '{state}' AND {cond}"
            " ORDER BY write_date DESC LIMIT 1 OFFSET %s",
            [*params, SAMPLE - 1],
        )
        row = cr.fetchone()
        if row is not None:
            starts.append(as_datetime(row[0]))
    if not starts:
        return
    result.rate_since = max(start for start in starts if start is not None)
    counts = [
        bounded_count(
            cr, f"state = '{state}' AND {cond} AND write_date >= %s", [*params, result.rate_since]
        )
        for state in (JobState.DONE, JobState.FAILED)
    ]
    result.rate_counts = (counts[0], counts[1])


def top_failures(
    cr: Cursor, since: datetime, limit: int = 5, *, user_id: int | None = None
) -> list[tuple[str, int]]:
    """The most frequent exception names among the jobs failed since ``since`` (the
    latest :data:`SAMPLE` of them; of one user's jobs: ``user_id``)."""
    mine, mine_params = (" AND user_id = %s", [user_id]) if user_id is not None else ("", [])
    cr.execute(
        "SELECT COALESCE(exc_name, '?'), COUNT(*) FROM (SELECT exc_name FROM queue_job"
        f" WHERE state = 'failed' AND write_date >= %s{mine} ORDER BY write_date DESC LIMIT %s)"
        " recent GROUP BY exc_name ORDER BY COUNT(*) DESC, 1 LIMIT %s",
        [since, *mine_params, SAMPLE, limit],
    )
    return [(name, int(count)) for name, count in cr.fetchall()]


def _stale_seconds(cr: Cursor, stale_seconds: float | None) -> float:
    """``stale_seconds``, or the cluster setting when None."""
    return config.read(cr).stale_seconds if stale_seconds is None else stale_seconds


def workers(
    cr: Cursor,
    now: datetime,
    stale_seconds: float | None = None,
    keep: timedelta = timedelta(days=1),
) -> list[dict[str, Any]]:
    """Workers seen within ``keep``: alive or not (a heartbeat within the stale window,
    the cluster setting unless given), heartbeat age, jobs running."""
    stale_seconds = _stale_seconds(cr, stale_seconds)
    cr.execute(
        "SELECT worker_id, hostname, pid, concurrency, channels, started_at, heartbeat, stopped_at, version"
        " FROM queue_worker WHERE heartbeat >= %s OR stopped_at IS NULL ORDER BY heartbeat DESC",
        [now - keep],
    )
    rows = cr.dictfetchall()
    cr.execute(
        "SELECT worker_id, COUNT(*) FROM queue_job WHERE state = 'started' GROUP BY worker_id"
    )
    running = {worker_id: int(count) for worker_id, count in cr.fetchall()}
    for row in rows:
        for key in ("started_at", "heartbeat", "stopped_at"):
            row[key] = as_datetime(row[key])
        age = (now - row["heartbeat"]).total_seconds() if row["heartbeat"] else None
        row["heartbeat_age"] = age
        row["alive"] = row["stopped_at"] is None and age is not None and age <= stale_seconds
        row["running"] = running.get(row["worker_id"], 0)
    return rows


def stale_workers(cr: Cursor, now: datetime, stale_seconds: float | None = None) -> int:
    """Workers not stopped cleanly whose last heartbeat is older than the stale
    window (but within a day: older ones are long gone)."""
    stale_seconds = _stale_seconds(cr, stale_seconds)
    cr.execute(
        "SELECT COUNT(*) FROM queue_worker WHERE stopped_at IS NULL AND heartbeat < %s AND heartbeat >= %s",
        [now - timedelta(seconds=stale_seconds), now - timedelta(days=1)],
    )
    return int(cr.fetchone()[0])  # type: ignore[index]


def live_worker_count(cr: Cursor, now: datetime, stale_seconds: float | None = None) -> int:
    """Workers not stopped with a heartbeat within the stale window."""
    stale_seconds = _stale_seconds(cr, stale_seconds)
    cr.execute(
        "SELECT COUNT(*) FROM queue_worker WHERE stopped_at IS NULL AND heartbeat >= %s",
        [now - timedelta(seconds=stale_seconds)],
    )
    return int(cr.fetchone()[0])  # type: ignore[index]


def stuck_where(now: datetime, stale_seconds: float) -> tuple[str, list[Any]]:
    """Started jobs whose heartbeat is older than the stale window."""
    return (
        "state = 'started' AND (heartbeat IS NULL OR heartbeat < %s)",
        [now - timedelta(seconds=stale_seconds)],
    )


def aged_where(now: datetime) -> tuple[str, list[Any]]:
    """Pending jobs due for longer than :data:`AGED_PENDING`."""
    return "state = 'pending' AND scheduled_at < %s", [now - AGED_PENDING]


def exhausted_where() -> tuple[str, list[Any]]:
    """Failed jobs that spent their retries (``max_retries`` > 0 and exceeded)."""
    return "state = 'failed' AND max_retries > 0 AND attempts > max_retries", []


def channel_rows(cr: Cursor, default_limit: int | None = None) -> list[dict[str, Any]]:
    """Every channel with a limit, with active jobs or paused by a job's backoff: limits
    (a channel without a row has the default limit, the cluster setting unless given),
    depth, utilisation, the depth bound (``max_depth``, 0 = unbounded; ``depth`` =
    waiting + pending; ``depth_policy``; ``skipped``: enqueues the skip policy dropped),
    the weights of the started jobs (``running_weight``, what the limit counts, and
    what ``utilisation`` divides), the rate windows (``rates``) and the backoff in force (``backoff_until``,
    ``backoff_reason``, ``backoff_job_id``, ``backoff_seconds`` left by the database's
    clock; None and 0.0 when none)."""
    if default_limit is None:
        default_limit = config.read(cr).default_limit
    store = job_store(cr.backend)
    counts = store.queued_counts(cr)
    started = running(cr)
    cr.execute(
        'SELECT id, name, "limit", rate_limit, rates, max_depth, depth_policy, skipped'
        " FROM queue_limit ORDER BY name"
    )
    limits = {row[1]: (row[0], *row[2:]) for row in cr.fetchall()}
    clock = store.now(cr)
    backoffs = store.channel_backoffs(cr, clock)
    names = sorted(
        {channel for channel, _state in counts} | set(started) | set(limits) | set(backoffs)
    )
    rows = []
    for name in names:
        backoff = backoffs.get(name)
        limit_id, limit, rate, rates, max_depth, policy, skipped = limits.get(
            name, (None, default_limit, 0.0, None, 0, "raise", 0)
        )
        jobs, weight = started.get(name, (0, 0))
        waiting = counts.get((name, "waiting"), 0)
        pending = counts.get((name, "pending"), 0)
        rows.append(
            {
                "name": name,
                "limit_id": limit_id,
                "limit": int(limit),
                "rate_limit": float(rate or 0.0),
                "rates": rates or "",
                "configured": limit_id is not None,
                "waiting": waiting,
                "pending": pending,
                "running": jobs,
                # weighted capacity (PRODUCT.md 12): the limit counts these weights
                "running_weight": weight,
                "utilisation": (weight / limit) if limit else None,
                # bounded depth (PRODUCT.md 12): depth = waiting + pending; 0 = unbounded
                "max_depth": int(max_depth or 0),
                "depth": waiting + pending,
                "depth_policy": policy or "raise",
                "skipped": int(skipped or 0),
                "backoff_until": backoff.until if backoff else None,
                "backoff_reason": backoff.reason if backoff else None,
                "backoff_job_id": backoff.job_id if backoff else None,
                "backoff_seconds": (backoff.until - clock).total_seconds() if backoff else 0.0,
            }
        )
    return rows


def running(cr: Cursor) -> dict[str, tuple[int, int]]:
    """{channel: (started jobs, their weights)} (the weights are what its limit counts)."""
    cr.execute(
        "SELECT channel, COUNT(*), SUM(weight) FROM queue_job WHERE state = 'started'"
        " GROUP BY channel"
    )
    return {channel: (int(jobs), int(weight or 0)) for channel, jobs, weight in cr.fetchall()}


def keyed(cr: Cursor, channel: str) -> bool:
    """Whether ``channel`` has pending jobs with a fair key (its claims take turns
    between keys): one index probe."""
    cr.execute(
        "SELECT 1 FROM queue_job WHERE state = 'pending' AND channel = %s AND fair_key <> ''"
        " LIMIT 1",
        [channel],
    )
    return cr.fetchone() is not None


def fair_key_count(cr: Cursor, channel: str, cap: int = FAIR_KEYS_CAP) -> int:
    """Fair keys (not counting jobs without a key) with pending jobs in ``channel``,
    counted up to ``cap`` (a walk of the pending index, one probe a key)."""
    pairs = job_store(cr.backend).fair_keys(cr, channel, pairs=cap)
    return min(len({key for _priority, key, _pending in pairs if key}), cap)


@dataclass
class FairKeys:
    """A channel's fair share now: its keys with work, the weights managers gave keys,
    and which key had the channel's last turn."""

    channel: str
    #: key -> pending jobs (counted up to :data:`FAIR_PENDING_CAP`); '' = jobs without a
    #: key; the first :data:`FAIR_KEYS_SHOWN` keys by (best priority, key)
    keys: dict[str, int]
    #: whether there are keys with work beyond those
    more: bool
    #: key -> weight (turns per round), for the keys that have more than 1
    weights: dict[str, int]
    #: the key that had the channel's last turn (None: no turn yet), and the jobs it has
    #: started in that turn
    cursor: str | None
    turn: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "keys": [
                {"key": key, "pending": pending, "capped": pending >= FAIR_PENDING_CAP}
                for key, pending in self.keys.items()
            ],
            "more_keys": self.more,
            "weights": self.weights,
            "last_turn": self.cursor,
            "turn": self.turn,
        }


def fair_keys(
    cr: Cursor, channel: str, shown: int = FAIR_KEYS_SHOWN, cap: int = FAIR_PENDING_CAP
) -> FairKeys:
    """The fair share of ``channel``: bounded (``shown`` keys at most, each counted up to
    ``cap`` pending jobs), whatever the number of jobs waiting."""
    pairs = job_store(cr.backend).fair_keys(cr, channel, pairs=shown + 1, count=cap)
    keys: dict[str, int] = {}
    for _priority, key, pending in pairs[:shown]:
        keys[key] = min(keys.get(key, 0) + pending, cap)
    cr.execute(
        "SELECT fair_key, weight FROM queue_fair_key WHERE channel = %s ORDER BY fair_key",
        [channel],
    )
    weights = {key: int(weight) for key, weight in cr.fetchall()}
    cr.execute("SELECT fair_cursor, fair_turn FROM queue_channel WHERE name = %s", [channel])
    row = cr.fetchone()
    cursor, turn = (row[0], int(row[1] or 0)) if row else (None, 0)
    return FairKeys(channel, keys, len(pairs) > shown, weights, cursor, turn)


def now() -> datetime:
    return Datetime.now()
