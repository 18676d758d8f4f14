"""The health of the queue in ten figures, each with its thresholds.

Shown as cards on the dashboard's overview and by ``job-worker stats``. Each
KPI names the job-list filter that shows the jobs behind it. Every figure is
read live through indexes, with capped counts (see :mod:`.stats`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..db import Cursor
from ..queue import config
from . import stats

#: key -> (warning, critical, direction): "above" warns when value >= warning
THRESHOLDS: dict[str, tuple[float, float, str]] = {
    "queue_depth": (1_000, 10_000, "above"),
    "active_workers": (1, 1, "below"),  # no worker at all is critical
    "failed_jobs": (1, 100, "above"),
    "failure_rate_1h": (0.05, 0.20, "above"),
    "p95_duration_1h": (60.0, 300.0, "above"),
    "stuck_jobs": (1, 5, "above"),
    "aged_pending": (1, 100, "above"),
    "retry_exhausted": (1, 20, "above"),
}


#: a KPI's count stops here (shown "1,000+"), or at its critical threshold when that is
#: higher (queue depth: "10,000+"): at or above its thresholds, so the level is exact, and
#: each count reads that many index entries at most (the channels page has the exact
#: backlog, from the kept counts; the job lists show every job)
KPI_CAP = 1_000


def cap(key: str, thresholds: dict[str, tuple[float, float, str]] | None = None) -> int:
    """Where the count of KPI ``key`` stops (see :data:`KPI_CAP`), under ``thresholds``
    (the default ones unless given)."""
    warning, critical, _direction = (thresholds or THRESHOLDS).get(key, THRESHOLDS[key])
    return max(KPI_CAP, math.ceil(warning), math.ceil(critical))


@dataclass
class Kpi:
    key: str
    label: str
    value: Any
    display: str
    level: str = "info"  # ok, warn, crit, info (no threshold)
    link: dict[str, str] = field(default_factory=dict)  # job-list filter, or {"page": ...}
    hint: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "value": self.value,
            "display": self.display,
            "level": self.level,
            "link": self.link,
            "hint": self.hint,
        }


def level(
    key: str, value: float | None, thresholds: dict[str, tuple[float, float, str]] | None = None
) -> str:
    """ok/warn/crit of ``value`` against the thresholds of ``key`` (info without any)."""
    limits = (thresholds or THRESHOLDS).get(key)
    if limits is None or value is None:
        return "info"
    warn, crit, direction = limits
    if direction == "below":
        return "crit" if value < crit else "warn" if value < warn else "ok"
    return "crit" if value >= crit else "warn" if value >= warn else "ok"


def _count(value: int, cap: int) -> str:
    return f"{cap:,}+" if value >= cap else f"{value:,}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.001:
        return "< 1 ms"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def _rate_hint(win: stats.Window) -> str:
    if win.rate_counts is None:
        return f"{win.failed:,} failed / {win.done + win.failed:,} finished"
    done, failed = win.rate_counts
    return (
        f"{failed:,} failed / {done + failed:,} finished, the latest"
        f" (the hour holds over {stats.WINDOW_CAP:,})"
    )


def compute(
    cr: Cursor,
    now: datetime | None = None,
    *,
    user_id: int | None = None,
    thresholds: dict[str, tuple[float, float, str]] | None = None,
    failures: list[tuple[str, int]] | None = None,
) -> list[Kpi]:
    """The ten KPIs, over every job or (``user_id``) over one user's jobs.
    ``failures``: :func:`~.stats.top_failures` of the last 24 hours, when the caller
    has it already (its first is the top failure type).

    Live workers and stuck jobs are judged by the ``stale_seconds`` cluster setting.
    """
    now = now or stats.now()
    stale = config.read(cr).stale_seconds
    mine, mine_params = (" AND user_id = %s", [user_id]) if user_id is not None else ("", [])
    hour = now - timedelta(hours=1)
    day = now - timedelta(days=1)

    def count(key: str, where: str, params: list[Any]) -> int:
        # a user's count walks the user's own jobs: told it may stop at the cap, the planner
        # would rather walk an index of everyone's (pending by due time) and filter, which
        # reads all of them for a user with few such jobs or none
        return stats.bounded_count(
            cr,
            where + mine,
            [*params, *mine_params],
            cap(key, thresholds),
            order="user_id, state, id" if user_id is not None else "",
        )

    def kpi(
        key: str,
        label: str,
        value: Any,
        display: str,
        link: dict[str, str],
        hint: str,
        measured: float | None = None,
    ) -> Kpi:
        return Kpi(
            key,
            label,
            value,
            display,
            level(key, measured if measured is not None else value, thresholds),
            link,
            hint,
        )

    depth = count("queue_depth", "state = 'pending' AND scheduled_at <= %s", [now])
    workers = stats.live_worker_count(cr, now, stale)
    failed = count("failed_jobs", "state = 'failed'", [])
    # a user's window: counts only (its own jobs' durations are not sampled)
    win = stats.window(cr, hour, user_id=user_id, sample=user_id is None)
    rate = win.failure_rate
    stuck = count("stuck_jobs", *stats.stuck_where(now, stale))
    aged = count("aged_pending", *stats.aged_where(now))
    exhausted = count("retry_exhausted", *stats.exhausted_where())
    if failures is None:
        failures = stats.top_failures(cr, day, 1, user_id=user_id)
    top = failures[0] if failures else None
    win_cap = stats.WINDOW_CAP
    return [
        kpi(
            "queue_depth",
            "Queue depth",
            depth,
            _count(depth, cap("queue_depth", thresholds)),
            {"state": "pending"},
            "pending jobs due now",
        ),
        kpi(
            "active_workers",
            "Active workers",
            workers,
            str(workers),
            {"page": "workers"},
            f"heartbeat within {stale:g} s",
        ),
        kpi(
            "failed_jobs",
            "Failed jobs",
            failed,
            _count(failed, cap("failed_jobs", thresholds)),
            {"state": "failed"},
            "failed and not requeued",
        ),
        kpi(
            "failure_rate_1h",
            "Failure rate 1 h",
            rate,
            "-" if rate is None else f"{rate:.1%}",
            {"state": "failed", "finished": "1h"},
            _rate_hint(win),
        ),
        kpi(
            "throughput_1h",
            "Throughput 1 h",
            win.done,
            _count(win.done, win_cap),
            {"state": "done", "finished": "1h"},
            "jobs done in the last hour",
        ),
        kpi(
            "p95_duration_1h",
            "p95 duration 1 h",
            win.duration_p95,
            _seconds(win.duration_p95),
            {"state": "done", "finished": "1h"},
            f"over the latest {stats.SAMPLE:,} done jobs at most",
        ),
        kpi(
            "stuck_jobs",
            "Stuck jobs",
            stuck,
            _count(stuck, cap("stuck_jobs", thresholds)),
            {"stuck": "1"},
            f"started, no heartbeat for {stale:g} s",
        ),
        kpi(
            "aged_pending",
            "Aged pending",
            aged,
            _count(aged, cap("aged_pending", thresholds)),
            {"aged": "1"},
            f"due for more than {stats.AGED_PENDING.seconds // 60} min",
        ),
        kpi(
            "retry_exhausted",
            "Retry exhausted",
            exhausted,
            _count(exhausted, cap("retry_exhausted", thresholds)),
            {"exhausted": "1"},
            "failed after spending their retries",
        ),
        Kpi(
            "top_failure",
            "Top failure type 24 h",
            top[0] if top else None,
            (top[0].rsplit(".", 1)[-1] if top else "none"),
            "warn" if top else "ok",
            {"state": "failed", "exc_name": top[0], "finished": "24h"}
            if top
            else {"state": "failed"},
            f"{top[1]:,} job(s): {top[0]}" if top else "no failure in 24 h",
        ),
    ]
