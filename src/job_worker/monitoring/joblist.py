"""The job list of ``job-worker jobs list`` and the dashboard: filters and keyset pagination.

Pages are keyed on the job id (newest first): ``before=ID`` gives the next
(older) page, ``after=ID`` the previous (newer) one. A page never counts the
whole result; it reads one row more than it shows to know whether another
page follows. Filters map to indexed columns (state, user, channel, graph,
``(state, write_date)`` for "finished within").

A list filtered by a window of time is ordered by that time instead, latest first,
then by id: "finished within" by when the job last changed (``write_date``, its
finish), "aged" by when it became due (``scheduled_at``). Its pages are keyed on
(time, id); ``before``/``after`` still name a job, whose time is read first. So the
page starts where the window begins in the window's own index, and never walks
through the newest jobs that are not in it (a backlog being drained is newest
and pending, and never aged).

A text search, and a filter on a column no index leads with (model, method,
exception), is bounded instead: a page looks at most :data:`SEARCH_WINDOW`
ids back from where it starts (``Page.searched`` says which), so a word that
matches nothing answers as fast as one that matches much; the next page goes
on from where it stopped. A job id (``4242`` or ``#4242``) or a uuid is an
index lookup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
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
_JOB_ID = re.compile(r"^#?([0-9]{1,10})$")
_WITHIN = re.compile(r"^([0-9]{1,9})([mhd])$")
MAX_PAGE = 500
#: a bounded search looks at this many ids at most per page (see the module's docstring)
SEARCH_WINDOW = 20_000
#: a list filtered by a window of time (finished within, aged) with fewer matches than
#: this reads them all through the window's index and sorts them (see list_jobs)
WINDOW_SORT = 20_000
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

    @property
    def window_column(self) -> str | None:
        """The time a list of a window of time is ordered by (see the module's
        docstring); None for the other filters."""
        if self.finished:
            return "write_date"
        if self.aged:
            return "scheduled_at"
        return None

    @property
    def bounded(self) -> bool:
        """Whether a page of this filter reads a window of ids rather than the whole
        table: a text search, or a filter on a column without an index of its own,
        unless a graph or a periodic job (indexed, and small) narrows it first."""
        if self.graph or self.cron is not None:
            return False
        return bool(self.model or self.method or self.exc_name or self._text())

    def _text(self) -> str | None:
        """The search text, when it is not a job id or a uuid."""
        query = (self.q or "").strip()
        if not query or _UUID.match(query):
            return None
        found = _JOB_ID.match(query)
        if found and int(found.group(1)) <= INT_MAX:
            return None
        return query

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
        job_id = _JOB_ID.match(query)
        if query:
            if job_id and int(job_id.group(1)) <= INT_MAX:
                conds.append("id = %s")
                params.append(int(job_id.group(1)))
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
    #: a bounded search: the lowest and highest job id it looked at; None when the
    #: page read as far as it needed
    searched: tuple[int, int] | None = None


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
    backwards = after is not None and before is None
    if flt.bounded:
        where, params = flt.where(cr, now)
        return _bounded_page(cr, where, params, before, after, limit)
    if flt.window_column:
        return _window_page(cr, flt, flt.window_column, before, after, limit, now)
    where, params = flt.where(cr, now)
    if before is not None:
        where += " AND id < %s"
        params.append(before)
    elif backwards:
        where += " AND id > %s"
        params.append(after)
    ids = _ids(cr, where, params, "ASC" if backwards else "DESC", limit + 1)
    return _page(cr, ids, limit, backwards, before is not None)


def _page(cr: Cursor, ids: list[int], limit: int, backwards: bool, paged: bool) -> Page:
    """The page of ``ids`` (``limit`` + 1 of them when more follow), in the order they
    were read: backwards (``after``) oldest first, else newest first; ``paged``: the
    page does not start at the newest job."""
    more = len(ids) > limit
    shown = ids[:limit]
    if backwards:
        shown.reverse()
    rows = _rows(cr, shown)
    if not rows:
        return Page([], None, None)
    if backwards:
        return Page(rows, rows[-1]["id"], rows[0]["id"] if more else None)
    return Page(rows, rows[-1]["id"] if more else None, rows[0]["id"] if paged else None)


def _ids(cr: Cursor, where: str, params: list[Any], order: str, count: int) -> list[int]:
    """The first ``count`` ids matching ``where``, in ``order``.

    Only ids are asked for: an index that holds the filter's columns and the id
    (``(state, id)``, ``(user_id, id)``, ``(user_id, state, id)``) answers in its order.
    Asked for whole rows, the planner may walk the primary key instead and filter,
    which reads every newer row first (a user whose jobs are not among the newest)."""
    cr.execute(
        f"SELECT id FROM queue_job WHERE {where} ORDER BY id {order} LIMIT %s", [*params, count]
    )
    return [row[0] for row in cr.fetchall()]


def _window_page(
    cr: Cursor,
    flt: JobFilter,
    column: str,
    before: int | None,
    after: int | None,
    limit: int,
    now: datetime,
) -> Page:
    """A page of a list of a window of time, ordered by (``column``, id), latest first.

    ``before``/``after`` name the job the page goes on from: its time is read first
    (a job deleted since ends the list there). "Finished within" in any finished
    state reads each state's jobs apart (each its own range of ``(state, write_date)``)
    and merges them."""
    backwards = after is not None and before is None
    anchor_id = after if backwards else before
    anchor: tuple[Any, int] | None = None
    if anchor_id is not None:
        cr.execute(f"SELECT {column} FROM queue_job WHERE id = %s", [anchor_id])
        found = cr.fetchone()
        if found is None:
            return Page([], None, None)
        anchor = (found[0], int(anchor_id))
    parts = (
        [replace(flt, state=state.value) for state in TERMINAL]
        if flt.finished and not flt.state
        else [flt]
    )
    keys: list[tuple[Any, int]] = []
    for part in parts:
        where, params = part.where(cr, now)
        if anchor is not None:
            # the bound on the time alone is what the index ranges over
            op = ">" if backwards else "<"
            where += f" AND {column} {op}= %s AND ({column} {op} %s OR id {op} %s)"
            params += [anchor[0], anchor[0], anchor[1]]
        keys += _window_keys(cr, column, where, params, backwards, limit + 1)
    keys.sort(reverse=not backwards)
    return _page(
        cr, [job_id for _time, job_id in keys[: limit + 1]], limit, backwards, before is not None
    )


def _window_keys(
    cr: Cursor, column: str, where: str, params: list[Any], ascending: bool, count: int
) -> list[tuple[Any, int]]:
    """The first ``count`` (time, id) matching ``where`` in (``column``, id) order.

    The window is counted first, up to :data:`WINDOW_SORT`: a small one (a plain user's,
    a channel's) is read whole through whatever index its filter has and sorted here; a
    big one is read in order from the window's own index, from where it begins."""
    if stats.bounded_count(cr, where, params, WINDOW_SORT) < WINDOW_SORT:
        cr.execute(f"SELECT {column}, id FROM queue_job WHERE {where}", params)
        keys = sorted(((t, i) for t, i in cr.fetchall()), reverse=not ascending)
        return keys[:count]
    order = "ASC" if ascending else "DESC"
    cr.execute(
        f"SELECT {column}, id FROM queue_job WHERE {where}"
        f" ORDER BY {column} {order}, id {order} LIMIT %s",
        [*params, count],
    )
    return [(t, i) for t, i in cr.fetchall()]


def _fetch(
    cr: Cursor, where: str, params: list[Any], order: str, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` rows matching ``where`` from one end (``order`` of the ids),
    newest first, and whether more match."""
    ids = _ids(cr, where, params, order, limit + 1)
    return _rows(cr, sorted(ids[:limit], reverse=True)), len(ids) > limit


def _rows(cr: Cursor, ids: list[int]) -> list[dict[str, Any]]:
    """The rows of ``ids``, in that order (a job deleted since is left out)."""
    if not ids:
        return []
    in_ids, params = cr.backend.in_ids("id", ids)
    cr.execute(f"SELECT {', '.join(COLUMNS)} FROM queue_job WHERE {in_ids}", params)
    by_id = {row["id"]: row for row in cr.dictfetchall()}
    rows = [by_id[job_id] for job_id in ids if job_id in by_id]
    for row in rows:
        for key in _DATETIMES:
            row[key] = stats.as_datetime(row[key])
    return rows


def _bounded_page(
    cr: Cursor,
    where: str,
    params: list[Any],
    before: int | None,
    after: int | None,
    limit: int,
) -> Page:
    """A page of a bounded search: it looks at :data:`SEARCH_WINDOW` ids at most, back
    from ``before`` (or the newest job), or forward from ``after``. A page the window
    did not fill links on to the ids beyond the window, if any job is there."""
    cr.execute("SELECT MIN(id), MAX(id) FROM queue_job")
    first, last = cr.fetchone()  # type: ignore[misc]
    if first is None:
        return Page([], None, None)
    backwards = after is not None and before is None
    if backwards:
        low = max(int(after) + 1, first)  # type: ignore[arg-type]
        high = min(low + SEARCH_WINDOW - 1, last)
    else:
        high = min(last, before - 1 if before is not None else last)
        low = max(high - SEARCH_WINDOW + 1, first)
    if low > high:
        return Page([], None, None)
    rows, more = _fetch(
        cr,
        f"{where} AND id >= %s AND id <= %s",
        [*params, low, high],
        "ASC" if backwards else "DESC",
        limit,
    )
    searched = None if more else (low, high)
    if backwards:
        newer = rows[0]["id"] if more else (high if high < last else None)
        older = rows[-1]["id"] if rows else low
        return Page(rows, older if older > first else None, newer, searched)
    older = rows[-1]["id"] if more else (low if low > first else None)
    newer = None
    if before is not None:  # not the first page: newer jobs than the first one shown
        newer = rows[0]["id"] if rows else high
    return Page(rows, older, newer, searched)
