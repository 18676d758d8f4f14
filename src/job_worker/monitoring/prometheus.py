"""Prometheus metrics read from the database at each scrape.

A custom collector (no process-global state): every scrape opens one
read-only transaction and reports, with names prefixed ``job_worker_``:

- ``job_worker_jobs{channel,state}``: jobs waiting, pending and started;
- ``job_worker_jobs_running{channel}`` and ``job_worker_channel_limit{channel}``;
- ``job_worker_channel_running_weight{channel}``: the weights of the started jobs (what
  the limit counts);
- ``job_worker_channel_rate_window_starts{channel,window}``: the starts in each rate
  window of the channel ending now (counted up to the window's count, as the claim
  does; a ``rate_limit`` R is the window ``1/(1/R)s``);
- ``job_worker_channel_fair_keys{channel}``: fair keys with pending jobs (counted up to
  1000, one index probe a key; 0 when the channel has no pending job with a key);
- ``job_worker_channel_max_depth{channel}`` (0 = unbounded) and the counter
  ``job_worker_channel_skipped_total{channel}``: enqueues a full channel of policy
  ``skip`` dropped (kept on the ``queue.limit`` row, so every process's skips count);
- ``job_worker_channel_backoff_seconds{channel}``: seconds left of the pause a job's
  ``ChannelBackoff`` put on the channel (0 when none), and the counter
  ``job_worker_channel_backoffs_total{channel}`` of the backoffs its jobs signalled
  (kept on the ``queue.channel`` rows, so every worker's backoffs count);
- ``job_worker_jobs_started_total``, ``job_worker_jobs_done_total``,
  ``job_worker_jobs_failed_total`` ``{channel}``: counters kept by the metric
  snapshots (:mod:`.models.snapshot`) plus the live tail since the last one;
- ``job_worker_job_duration_seconds``: histogram of done jobs' durations;
- ``job_worker_workers_alive`` and ``job_worker_worker_heartbeat_age_seconds{worker}``;
- ``job_worker_cron_lag_seconds{cron_id,cron}``: how late each active periodic job's
  due occurrence is (0 when none is due), and the counters
  ``job_worker_cron_jobs_enqueued_total`` and ``job_worker_cron_occurrences_skipped_total``
  (kept on the ``queue.cron`` rows, so every worker's enqueues count).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from ..db.jobstore import job_store
from ..queue.lifecycle import QUEUED, JobState
from ..rates import channel_windows
from . import stats
from .models.snapshot import ALL, DURATION_BUCKETS, floor_time, interval_counts

if TYPE_CHECKING:
    from ..orm.registry import Registry


class QueueCollector(Collector):
    """Collects the queue's metrics from one database (the default limit and the stale
    window are the database's cluster settings, read at each scrape)."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        with self.registry.cursor(readonly=True) as cr:
            from ..orm.api import Environment

            env = Environment(cr, 1, {})
            now = stats.now()
            yield from self._depth(cr)
            yield from self._counters(env, now)
            yield from self._workers(cr, now)
            yield from self._crons(env, now)

    def _depth(self, cr: Any) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "job_worker_jobs", "Jobs by channel and active state.", labels=["channel", "state"]
        )
        running = GaugeMetricFamily(
            "job_worker_jobs_running", "Jobs running now, by channel.", labels=["channel"]
        )
        limits = GaugeMetricFamily(
            "job_worker_channel_limit", "Jobs a channel may run at once.", labels=["channel"]
        )
        max_depth = GaugeMetricFamily(
            "job_worker_channel_max_depth",
            "Jobs a channel may hold waiting or pending (0 = unbounded).",
            labels=["channel"],
        )
        skipped = CounterMetricFamily(
            "job_worker_channel_skipped",
            "Enqueues dropped because the channel was full (policy skip).",
            labels=["channel"],
        )
        backoff = GaugeMetricFamily(
            "job_worker_channel_backoff_seconds",
            "Seconds left of the pause a job's backoff put on the channel (0: none).",
            labels=["channel"],
        )
        rows = stats.channel_rows(cr)
        for row in rows:
            max_depth.add_metric([row["name"]], row["max_depth"])
            skipped.add_metric([row["name"]], row["skipped"])
            for state in QUEUED:
                jobs.add_metric([row["name"], state], row[state])
            jobs.add_metric([row["name"], JobState.STARTED], row["running"])
            running.add_metric([row["name"]], row["running"])
            limits.add_metric([row["name"]], row["limit"])
            backoff.add_metric([row["name"]], row["backoff_seconds"])
        yield from (jobs, running, limits, max_depth, skipped, backoff)
        yield from self._flow(cr, rows)
        backoffs = CounterMetricFamily(
            "job_worker_channel_backoffs",
            "Backoffs (ChannelBackoff) the jobs of each channel signalled.",
            labels=["channel"],
        )
        cr.execute("SELECT name, backoff_count FROM queue_channel ORDER BY name")
        for name, count in cr.fetchall():
            backoffs.add_metric([name], count or 0)
        yield backoffs

    def _flow(self, cr: Any, rows: list[dict[str, Any]]) -> Iterator[Metric]:
        """Weighted capacity, rate windows and fair share (PRODUCT.md 12), bounded: one
        query a window, one walk of at most 1000 keys a channel with keyed jobs."""
        weight = GaugeMetricFamily(
            "job_worker_channel_running_weight",
            "Weights of the jobs running now (what the channel's limit counts).",
            labels=["channel"],
        )
        starts = GaugeMetricFamily(
            "job_worker_channel_rate_window_starts",
            "Starts in each rate window of the channel ending now (up to its count).",
            labels=["channel", "window"],
        )
        fair_keys = GaugeMetricFamily(
            "job_worker_channel_fair_keys",
            f"Fair keys with pending jobs (counted up to {stats.FAIR_KEYS_CAP}).",
            labels=["channel"],
        )
        store = job_store(cr.backend)
        clock = store.now(cr)
        for row in rows:
            name = row["name"]
            weight.add_metric([name], row["running_weight"])
            windows = channel_windows(row["rates"], row["rate_limit"])
            for window, used, _oldest in store.window_usage(cr, name, windows, clock):
                starts.add_metric([name, window.text], used)
            keyed = row["pending"] and stats.keyed(cr, name)
            fair_keys.add_metric([name], stats.fair_key_count(cr, name) if keyed else 0)
        yield from (weight, starts, fair_keys)

    def _counters(self, env: Any, now: Any) -> Iterator[Metric]:
        totals = env["queue.metric.counter"]._totals()
        watermark = env["queue.metric.snapshot"]._watermark() or floor_time(now, "5min")
        for key, value in interval_counts(env.cr, watermark, None).items():
            totals[key] = totals.get(key, 0.0) + value
        helps = {
            "started": "Job starts.",
            "done": "Jobs done.",
            "failed": "Jobs failed (retries spent or failed by hand).",
        }
        for name, text in helps.items():
            family = CounterMetricFamily(f"job_worker_jobs_{name}", text, labels=["channel"])
            for (counter, channel, _le), value in sorted(totals.items()):
                if counter == name and channel != ALL:
                    family.add_metric([channel], value)
            yield family
        buckets = [
            (repr(le), totals.get(("duration_bucket", ALL, repr(le)), 0.0))
            for le in DURATION_BUCKETS
        ]
        count = totals.get(("duration_count", ALL, ""), 0.0)
        yield HistogramMetricFamily(
            "job_worker_job_duration_seconds",
            "Duration of done jobs.",
            buckets=[*buckets, ("+Inf", count)],
            sum_value=totals.get(("duration_sum", ALL, ""), 0.0),
        )

    def _workers(self, cr: Any, now: Any) -> Iterator[Metric]:
        rows = stats.workers(cr, now)
        alive = GaugeMetricFamily(
            "job_worker_workers_alive", "Workers with a heartbeat within the stale window."
        )
        alive.add_metric([], sum(1 for row in rows if row["alive"]))
        age = GaugeMetricFamily(
            "job_worker_worker_heartbeat_age_seconds",
            "Seconds since each running worker's last heartbeat.",
            labels=["worker"],
        )
        for row in rows:
            if row["stopped_at"] is None and row["heartbeat_age"] is not None:
                age.add_metric([row["worker_id"]], row["heartbeat_age"])
        yield from (alive, age)

    def _crons(self, env: Any, now: Any) -> Iterator[Metric]:
        labels = ["cron_id", "cron"]
        lag = GaugeMetricFamily(
            "job_worker_cron_lag_seconds",
            "Seconds the due occurrence of each active periodic job is late (0: none due).",
            labels=labels,
        )
        enqueued = CounterMetricFamily(
            "job_worker_cron_jobs_enqueued",
            "Jobs enqueued by each periodic job (occurrences and runs by hand).",
            labels=labels,
        )
        skipped = CounterMetricFamily(
            "job_worker_cron_occurrences_skipped",
            "Occurrences of each periodic job that made no job (missed, or overlapping).",
            labels=labels,
        )
        for cron in env["queue.cron"].search([]):
            key = [str(cron.id), cron.name]
            if cron.active:
                lag.add_metric(key, cron.lag_seconds(now))
            enqueued.add_metric(key, cron.enqueued_count)
            skipped.add_metric(key, cron.skipped_count)
        yield from (lag, enqueued, skipped)


def collector_registry(registry: Registry) -> CollectorRegistry:
    """A prometheus_client registry holding only this database's collector."""
    out = CollectorRegistry(auto_describe=False)
    out.register(QueueCollector(registry))
    return out
