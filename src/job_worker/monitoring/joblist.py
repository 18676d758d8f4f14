"""The job list of ``job-worker jobs list`` and the dashboard: filters and keyset pagination.

Pages are keyed on the job id (newest first): ``before=ID`` gives the next
(older) page, ``after=ID`` the previous (newer) one. A page never counts the
whole result; it reads one row more than it shows to know whether another
page follows. Filters map to indexed columns (state, user, channel, graph,
``(state, write_date)`` for "finished within").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from ..db import Cursor
from ..orm.fields import INT_MAX
from ..queue import config
from ..queue.lifecycle import ALL, TERMINAL, sql_in
from . import stats

COLUMNS = (
    "id",
    "uuid",
    "name",
    "model_name",
    "method_name",
    "state",
    "channel",
    "priority",
    "attempts",
    "max_retries",
    "create_date",
    "scheduled_at",
    "started_at",
    "completed_at",
    "cancelled_at",
    "duration",
    "exc_name",
    "exc_message",
    "user_id",
    "worker_id",
    "graph_uuid",
    "cron_id",
    "cron_occurrence",
)
_DATETIMES = (
    "create_date",
    "scheduled_at",
    "started_at",
    "completed_at",
    "cancelled_at",
    "cron_occurrence",
)
_UUID = re.compile(r"^[0-9a-fA-F-]{32,36}$")
_WITHIN = re.compile(r"^([0-9]{1,9})([mhd])$")
MAX_PAGE = 500
#: the longest "finished within" span
MAX_WITHIN = timedelta(days=36_500)


def parse_within(text: str | None) -> timedelta | None:
    """``"15m"``, ``"1h"``, ``"7d"`` -> timedelta; empty -> None."""
    if not text:
        return None
    match = _WITHIN.match(text.strip())
    if not match:
        raise ValueError(f"a time span looks like 15m, 1h or 7d, got {text!r}")
    amount, unit = int(match.group(1)), match.group(2)
    unit_name = {"m": "minutes", "h": "hours", "d": "days"}[unit]
    if amount > MAX_WITHIN // timedelta(**{unit_name: 1}):
        raise ValueError(f"a time span of at most {MAX_WITHIN.days}d, got {text!r}")
    return timedelta(**{unit_name: amount})


@dataclass
class JobFilter:
    """What to show; every field is optional. ``user_id`` restricts to one user's jobs."""

    state: str | None = None
    channel: str | None = None
    model: str | None = None
    method: str | None = None
    user_id: int | None = None
    exc_name: str | None = None
    graph: str | None = None
    cron: int | str | None = None  # the jobs of this periodic job (queue.cron id)
    q: str | None = None
    finished: str | None = None  # finished within: "1h", "24h", ...
    stuck: bool = False
    aged: bool = False
    exhausted: bool = False

    def __post_init__(self) -> None:
        if self.state and self.state not in ALL:
            raise ValueError(f"state must be one of {', '.join(ALL)}, got {self.state!r}")
        parse_within(self.finished)
        if isinstance(self.cron, str):
            if not (self.cron.isascii() and self.cron.isdigit()):
                raise ValueError(f"cron must be a periodic job's id, got {self.cron!r}")
            self.cron = int(self.cron)

    def as_params(self) -> dict[str, str]:
        """The filter as query-string parameters (for links)."""
        out: dict[str, str] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value in (None, "", False):
                continue
            out[item.name] = "1" if value is True else str(value)
        return out

    def where(self, cr: Cursor, now: datetime) -> tuple[str, list[Any]]:
        conds: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("state", self.state),
            ("channel", self.channel),
            ("model_name", self.model),
            ("method_name", self.method),
            ("user_id", self.user_id),
            ("exc_name", self.exc_name),
            ("graph_uuid", self.graph),
            ("cron_id", self.cron),
        ):
            if value not in (None, ""):
                conds.append(f"{column} = %s")
                params.append(value)
        within = parse_within(self.finished)
        if within is not None:
            if not self.state:
                conds.append(sql_in(TERMINAL))
            conds.append("write_date >= %s")
            params.append(now - within)
        for flag, condition in (
            ("stuck", lambda: stats.stuck_where(now, config.read(cr).stale_seconds)),
            ("aged", lambda: stats.aged_where(now)),
            ("exhausted", stats.exhausted_where),
        ):
            if getattr(self, flag):
                sql, extra = condition()
                conds.append(sql)
                params.extend(extra)
        query = (self.q or "").strip()
        if query:
            if query.isascii() and query.isdigit() and int(query) <= INT_MAX:
                conds.append("id = %s")
                params.append(int(query))
            elif _UUID.match(query):
                conds.append("uuid = %s")
                params.append(query.lower())
            else:
                like = f"%{query.replace('%', '').replace('_', '')}%"
                ors = [
                    cr.backend.ilike(c) for c in ("name", "model_name", "method_name", "exc_name")
                ]
                conds.append("(" + " OR ".join(ors) + ")")
                params.extend([like] * len(ors))
        return (" AND ".join(conds) or "1 = 1"), params


@dataclass
class Page:
    rows: list[dict[str, Any]]
    #: pass as ``before`` for the next (older) page; None on the last page
    next_before: int | None
    #: pass as ``after`` for the previous (newer) page; None on the first page
    prev_after: int | None


def list_jobs(
    cr: Cursor,
    flt: JobFilter,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = 50,
    now: datetime | None = None,
) -> Page:
    """One page of jobs matching ``flt``, newest first."""
    limit = max(1, min(int(limit), MAX_PAGE))
    now = now or stats.now()
    where, params = flt.where(cr, now)
    backwards = after is not None and before is None
    if before is not None:
        where += " AND id < %s"
        params.append(before)
    elif backwards:
        where += " AND id > %s"
        params.append(after)
    order = "ASC" if backwards else "DESC"
    cr.execute(
        f"SELECT {', '.join(COLUMNS)} FROM queue_job WHERE {where} ORDER BY id {order} LIMIT %s",
        [*params, limit + 1],
    )
    rows = cr.dictfetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    for row in rows:
        for key in _DATETIMES:
            row[key] = stats.as_datetime(row[key])
    if not rows:
        return Page([], None, None)
    if backwards:
        return Page(rows, rows[-1]["id"], rows[0]["id"] if more else None)
    return Page(
        rows, rows[-1]["id"] if more else None, rows[0]["id"] if before is not None else None
    )
