"""queue.metric.snapshot and queue.metric.counter: the queue's history.

Every 5 minutes (once the interval is over, plus a margin for transactions
still committing) the maintenance holder writes one snapshot row per channel
and one for all channels (``channel = "*"``): jobs done, failed and started
in the interval, duration average and p95, average wait from due to start,
and the depth at that moment. Hourly rows are rolled up from 5-minute rows and
daily rows from hourly rows; each period has its own retention.

The same pass adds the interval's counts to ``queue.metric.counter``, the
monotonic totals behind the Prometheus counters and histogram; ``/metrics``
adds the live tail since the last snapshot (:func:`interval_counts`, bounded).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ...db import Cursor
from ...orm import fields, models
from ...queue.lifecycle import JobState
from .. import stats

PERIODS = {"5min": timedelta(minutes=5), "hour": timedelta(hours=1), "day": timedelta(days=1)}
#: rows of each period older than this many days are deleted
RETENTION_DAYS = {"5min": 2, "hour": 35, "day": 400}
#: an interval is snapshotted this long after it ended (transactions finishing late)
MARGIN = timedelta(seconds=60)
#: at most this many missed 5-minute intervals get their own snapshot row after a pause
CATCH_UP = 288
#: upper bounds (seconds) of the duration histogram
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
ALL = "*"
#: at most this many 5-minute intervals with finished jobs are counted live for the
#: charts (the latest; normally the current one, and the one before while its
#: snapshot waits for the margin)
LIVE_BUCKETS = 12


def floor_time(moment: datetime, period: str) -> datetime:
    if period == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(minute=moment.minute - moment.minute % 5, second=0, microsecond=0)


class MetricSnapshot(models.Model):
    _name = "queue.metric.snapshot"
    _description = "Queue metric snapshot"
    _order = "bucket desc, channel"
    _indexes = [
        models.Index("queue_metric_snapshot_key", ("period", "channel", "bucket"), unique=True),
    ]

    period = fields.Selection(
        [("5min", "5 minutes"), ("hour", "Hour"), ("day", "Day")], required=True
    )
    bucket = fields.Datetime(required=True, help="Start of the interval (UTC).")
    channel = fields.Char(required=True, help='A channel, or "*" for all channels.')
    done_count = fields.Integer(default=0)
    failed_count = fields.Integer(default=0)
    started_count = fields.Integer(default=0)
    duration_avg = fields.Float()
    duration_p95 = fields.Float(help="Rolled-up rows keep the highest p95 of their intervals.")
    wait_avg = fields.Float(help="Average seconds from due to start.")
    pending_count = fields.Integer(default=0, help="Depth when the snapshot was taken.")
    waiting_count = fields.Integer(default=0)
    running_count = fields.Integer(default=0)
    workers_alive = fields.Integer(default=0)

    # -- taking snapshots ---------------------------------------------------------------

    def _watermark(self) -> datetime | None:
        """End of the latest 5-minute interval snapshotted (where live counting starts)."""
        cr = self.env.cr
        cr.execute("SELECT MAX(bucket) FROM queue_metric_snapshot WHERE period = '5min'")
        latest = stats.as_datetime(cr.fetchone()[0])  # type: ignore[index]
        return latest + PERIODS["5min"] if latest else None

    def _take_snapshots(self, now: datetime) -> int:
        """Snapshot every finished 5-minute interval not snapshotted yet (the
        latest :data:`CATCH_UP` of them); returns the rows written."""
        last_end = floor_time(now - MARGIN, "5min")
        watermark = self._watermark()
        if watermark is None:
            start = last_end - PERIODS["5min"]
        elif watermark >= last_end:
            return 0
        else:
            start = watermark
        cr = self.env.cr
        # counters cover the whole gap, even where rows are not written
        self.env["queue.metric.counter"]._add_interval(start, last_end)
        first = max(start, last_end - CATCH_UP * PERIODS["5min"])
        depth = stats.depth(cr)
        alive = stats.live_worker_count(cr, now)
        written = 0
        bucket = first
        while bucket < last_end:
            latest = bucket + PERIODS["5min"] == last_end
            written += self._write_bucket(bucket, depth if latest else {}, alive if latest else 0)
            bucket += PERIODS["5min"]
        return written

    def _write_bucket(self, bucket: datetime, depth: dict[tuple[str, str], int], alive: int) -> int:
        cr = self.env.cr
        end = bucket + PERIODS["5min"]
        cr.execute(
            "SELECT DISTINCT channel FROM queue_job WHERE state IN ('done', 'failed')"
            " AND write_date >= %s AND write_date < %s",
            [bucket, end],
        )
        channels = {row[0] for row in cr.fetchall()} | {channel for channel, _state in depth}
        rows = []
        for channel in [ALL, *sorted(channels)]:
            only = None if channel == ALL else channel
            window = stats.window(cr, bucket, end, only)

            def total(state: str, only: str | None = only) -> int:
                return sum(
                    n for (c, s), n in depth.items() if s == state and (only is None or c == only)
                )

            rows.append(
                {
                    "period": "5min",
                    "bucket": bucket,
                    "channel": channel,
                    "done_count": window.done,
                    "failed_count": window.failed,
                    "started_count": _started_between(cr, bucket, end, only),
                    "duration_avg": window.duration_avg,
                    "duration_p95": window.duration_p95,
                    "wait_avg": window.wait_avg,
                    "pending_count": total("pending"),
                    "waiting_count": total("waiting"),
                    "running_count": total("started"),
                    "workers_alive": alive if channel == ALL else 0,
                }
            )
        self.create(rows)
        return len(rows)

    # -- roll-ups and retention -----------------------------------------------------------

    def _roll_up(self, now: datetime) -> int:
        """Hourly rows from 5-minute rows, daily rows from hourly rows, for every
        finished hour/day not rolled up yet; returns the rows written."""
        written = 0
        for period, source in (("hour", "5min"), ("day", "hour")):
            cr = self.env.cr
            cr.execute("SELECT MAX(bucket) FROM queue_metric_snapshot WHERE period = %s", [period])
            done_until = stats.as_datetime(cr.fetchone()[0])  # type: ignore[index]
            cr.execute("SELECT MIN(bucket) FROM queue_metric_snapshot WHERE period = %s", [source])
            first_source = stats.as_datetime(cr.fetchone()[0])  # type: ignore[index]
            if first_source is None:
                continue
            start = done_until + PERIODS[period] if done_until else floor_time(first_source, period)
            end_limit = floor_time(now - MARGIN, period)
            bucket = start
            for _ in range(64):
                if bucket + PERIODS[period] > end_limit:
                    break
                written += self._roll_up_bucket(period, source, bucket)
                bucket += PERIODS[period]
        return written

    def _roll_up_bucket(self, period: str, source: str, bucket: datetime) -> int:
        cr = self.env.cr
        cr.execute(
            "SELECT channel, done_count, failed_count, started_count, duration_avg, duration_p95, wait_avg,"
            " pending_count, waiting_count, running_count, workers_alive FROM queue_metric_snapshot"
            " WHERE period = %s AND bucket >= %s AND bucket < %s ORDER BY bucket",
            [source, bucket, bucket + PERIODS[period]],
        )
        merged: dict[str, dict[str, Any]] = {}
        for row in cr.dictfetchall():
            out = merged.setdefault(
                row["channel"],
                {
                    "period": period,
                    "bucket": bucket,
                    "channel": row["channel"],
                    "done_count": 0,
                    "failed_count": 0,
                    "started_count": 0,
                    "duration_p95": None,
                    "_dur": 0.0,
                    "_dur_n": 0,
                    "_wait": 0.0,
                    "_wait_n": 0,
                },
            )
            for key in ("done_count", "failed_count", "started_count"):
                out[key] += row[key] or 0
            for key in ("pending_count", "waiting_count", "running_count", "workers_alive"):
                out[key] = row[key] or 0  # depth: the latest value of the period
            if row["duration_p95"] is not None:
                out["duration_p95"] = max(out["duration_p95"] or 0.0, row["duration_p95"])
            if row["duration_avg"] is not None and row["done_count"]:
                out["_dur"] += row["duration_avg"] * row["done_count"]
                out["_dur_n"] += row["done_count"]
            if row["wait_avg"] is not None and row["done_count"]:
                out["_wait"] += row["wait_avg"] * row["done_count"]
                out["_wait_n"] += row["done_count"]
        rows = []
        for out in merged.values():
            out["duration_avg"] = out["_dur"] / out["_dur_n"] if out["_dur_n"] else None
            out["wait_avg"] = out["_wait"] / out["_wait_n"] if out["_wait_n"] else None
            rows.append({k: v for k, v in out.items() if not k.startswith("_")})
        if not rows:  # nothing was recorded: mark the period as rolled up anyway
            rows = [{"period": period, "bucket": bucket, "channel": ALL}]
        self.create(rows)
        return len(rows)

    def _prune(self, now: datetime, retention: dict[str, float] | None = None) -> int:
        """Delete rows past their period's retention; returns the rows deleted."""
        deleted = 0
        for period, days in {**RETENTION_DAYS, **(retention or {})}.items():
            if not days:
                continue
            self.env.cr.execute(
                "DELETE FROM queue_metric_snapshot WHERE period = %s AND bucket < %s",
                [period, now - timedelta(days=days)],
            )
            deleted += max(self.env.cr.rowcount, 0)
        if deleted:
            self.invalidate_model()
        return deleted

    def _series(self, period: str, since: datetime, channel: str = ALL) -> list[dict[str, Any]]:
        """Snapshot rows of ``period`` since ``since`` for one channel, oldest first."""
        self.env.cr.execute(
            "SELECT bucket, done_count, failed_count, started_count, duration_avg, duration_p95, wait_avg,"
            " pending_count, running_count FROM queue_metric_snapshot"
            " WHERE period = %s AND channel = %s AND bucket >= %s ORDER BY bucket",
            [period, channel, since],
        )
        rows = self.env.cr.dictfetchall()
        for row in rows:
            row["bucket"] = stats.as_datetime(row["bucket"])
        return rows

    def _live_series(
        self, now: datetime, since: datetime, channel: str = ALL
    ) -> list[dict[str, Any]]:
        """The 5-minute intervals since ``since`` not snapshotted yet (the current one;
        all of them while no worker takes snapshots, after a demo say), counted live
        from the jobs, in the shape of :meth:`_series` rows with ``live`` set: a chart
        shows work done minutes ago, not only once the next snapshot is written.

        Intervals where nothing finished are skipped by one index probe per state and
        cost no count; at most :data:`LIVE_BUCKETS` intervals with work, the latest,
        are counted (each a bounded count, :func:`stats.window`)."""
        cr = self.env.cr
        current = floor_time(now, "5min")
        start = max(self._watermark() or floor_time(since, "5min"), floor_time(since, "5min"))
        only = None if channel == ALL else channel
        busy: list[datetime] = []  # intervals where jobs finished, latest first
        end = current + PERIODS["5min"]
        while end > start and len(busy) < LIVE_BUCKETS:
            last = _last_finished(cr, start, end, only)
            if last is None:
                break
            busy.append(floor_time(last, "5min"))
            end = busy[-1]
        if len(busy) == LIVE_BUCKETS:  # older intervals with work are left out
            start = busy[-1]
        rows = []
        bucket = start
        while bucket <= current:
            row: dict[str, Any] = {
                "bucket": bucket,
                "done_count": 0,
                "failed_count": 0,
                "duration_avg": None,
                "duration_p95": None,
                "wait_avg": None,
                "pending_count": None,
                "running_count": None,
                "live": True,
            }
            if bucket in busy:
                window = stats.window(cr, bucket, bucket + PERIODS["5min"], only)
                row.update(
                    done_count=window.done,
                    failed_count=window.failed,
                    duration_avg=window.duration_avg,
                    duration_p95=window.duration_p95,
                    wait_avg=window.wait_avg,
                )
            rows.append(row)
            bucket += PERIODS["5min"]
        return rows


def _last_finished(
    cr: Cursor, since: datetime, until: datetime, channel: str | None
) -> datetime | None:
    """When the last job finished in [since, until) (None: none did): one probe of
    the ``(state, write_date)`` index per final state."""
    extra, params = (" AND channel = %s", [channel]) if channel is not None else ("", [])
    found = []
    for state in (JobState.DONE, JobState.FAILED):
        cr.execute(
            "SELECT write_date FROM queue_job WHERE state = %s AND write_date >= %s"
            f" AND write_date < %s{extra} ORDER BY write_date DESC LIMIT 1",
            [state, since, until, *params],
        )
        row = cr.fetchone()
        moment = stats.as_datetime(row[0]) if row is not None else None
        if moment is not None:
            found.append(moment)
    return max(found, default=None)


def _started_between(cr: Cursor, start: datetime, end: datetime, channel: str | None) -> int:
    extra, params = (" AND channel = %s", [channel]) if channel is not None else ("", [])
    cr.execute(
        "SELECT COUNT(*) FROM queue_job WHERE started_at >= %s AND started_at < %s AND ("
        " state = 'started' OR (state IN ('done', 'failed', 'pending') AND write_date >= %s))"
        + extra,
        [start, end, start, *params],
    )
    return int(cr.fetchone()[0])  # type: ignore[index]


class MetricCounter(models.Model):
    _name = "queue.metric.counter"
    _description = "Queue metric counter"
    _indexes = [models.Index("queue_metric_counter_key", ("name", "channel", "le"), unique=True)]

    name = fields.Char(
        required=True, help="done, failed, started, duration_count, duration_sum, duration_bucket"
    )
    channel = fields.Char(required=True, default=ALL)
    le = fields.Char(
        required=True, default="", help="Histogram bucket upper bound, for duration_bucket."
    )
    value = fields.Float(default=0.0)

    def _add_interval(self, start: datetime, end: datetime) -> None:
        """Add what finished (and started) in [start, end) to the counters."""
        for key, value in interval_counts(self.env.cr, start, end).items():
            self._increment(*key, value)

    def _increment(self, name: str, channel: str, le: str, value: float) -> None:
        if not value:
            return
        cr = self.env.cr
        cr.execute(
            "UPDATE queue_metric_counter SET value = value + %s WHERE name = %s AND channel = %s AND le = %s",
            [value, name, channel, le],
        )
        if cr.rowcount == 0:
            self.create({"name": name, "channel": channel, "le": le, "value": value})
        else:
            self.invalidate_model()

    def _totals(self) -> dict[tuple[str, str, str], float]:
        self.env.cr.execute("SELECT name, channel, le, value FROM queue_metric_counter")
        return {(n, c, le): float(v) for n, c, le, v in self.env.cr.fetchall()}


#: the live tail (``interval_counts`` until now) counts at most this many of its oldest
#: finished jobs of each state, and as many of its oldest starts of jobs that moved on
TAIL_CAP = 20_000


def interval_counts(
    cr: Cursor, start: datetime, end: datetime | None
) -> dict[tuple[str, str, str], float]:
    """{(counter name, channel, le): increment} for [start, end) (end None: until now).

    Until now (the live tail of ``/metrics``), each state counts its :data:`TAIL_CAP`
    oldest jobs at most (by ``write_date``), so a scrape costs the same whatever the
    throughput since the last snapshot, and the starts of jobs back in pending are left
    to the snapshot. The counters then lag behind until the next snapshot, and never go
    back: the jobs a capped tail counts are the oldest ones, which the next tail still
    counts unless a snapshot took them."""
    cond, params = "write_date >= %s", [start]
    if end is not None:
        cond += " AND write_date < %s"
        params.append(end)
    limit = "" if end is not None else f" ORDER BY write_date LIMIT {TAIL_CAP:d}"
    bucket_sums = ", ".join(
        f"SUM(CASE WHEN state = 'done' AND duration <= {le!r} THEN 1 ELSE 0 END)"
        for le in DURATION_BUCKETS
    )
    finished = " UNION ALL ".join(
        f"SELECT * FROM (SELECT channel, state, duration FROM queue_job"
        f" WHERE state = '{state}' AND {cond}{limit}) {state}_jobs"
        for state in ("done", "failed")
    )
    cr.execute(
        "SELECT channel, state, COUNT(*), SUM(CASE WHEN state = 'done' THEN duration ELSE 0 END),"
        f" SUM(CASE WHEN state = 'done' AND duration IS NOT NULL THEN 1 ELSE 0 END), {bucket_sums}"
        f" FROM ({finished}) finished GROUP BY channel, state",
        params * 2,
    )
    out: dict[tuple[str, str, str], float] = {}

    def add(key: tuple[str, str, str], value: float) -> None:
        out[key] = out.get(key, 0.0) + value

    for channel, state, count, duration_sum, timed, *buckets in cr.fetchall():
        add((state, channel, ""), int(count))
        if state == "done":
            add(("duration_count", ALL, ""), int(timed or 0))
            add(("duration_sum", ALL, ""), float(duration_sum or 0.0))
            for le, n in zip(DURATION_BUCKETS, buckets, strict=True):
                add(("duration_bucket", ALL, repr(le)), int(n or 0))
    # starts: the jobs running now, and those that started in the interval and moved on
    # (the live tail leaves out those back in pending, to be retried: finding them would
    # read every job enqueued since; the next snapshot counts them)
    started_in = "started_at >= %s" + (" AND started_at < %s" if end is not None else "")
    started_params = [start, *([end] if end is not None else [])]
    moved = ("done", "failed", "pending") if end is not None else ("done", "failed")
    moved_on = " UNION ALL ".join(
        f"SELECT * FROM (SELECT channel FROM queue_job WHERE state = '{state}'"
        f" AND write_date >= %s AND {started_in}{limit}) {state}_starts"
        for state in moved
    )
    cr.execute(
        "SELECT channel, COUNT(*) FROM ("
        f"SELECT channel FROM queue_job WHERE state = 'started' AND {started_in}"
        f" UNION ALL {moved_on}) starts GROUP BY channel",
        [*started_params, *([start, *started_params] * len(moved))],
    )
    for channel, count in cr.fetchall():
        add(("started", channel, ""), int(count))
    return out
