"""Jinja filters: how figures, times and durations read on the dashboard."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..durations import duration_text
from ..monitoring import stats
from ..queue import describe

FILTERS = ("age", "when", "seconds", "pretty_json", "short_exc", "number", "attempts")


def age(value: datetime | None, now: datetime | None = None) -> str:
    """ "3 min ago" / "in 20 s"."""
    if not value:
        return ""
    delta = ((now or stats.now()) - value).total_seconds()
    span = duration_text(delta)
    return f"{span} ago" if delta >= 0 else f"in {span}"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def seconds(value: float | None) -> str:
    return "" if value is None else duration_text(value, fine=True)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def short_exc(value: str | None) -> str:
    return value.rsplit(".", 1)[-1] if value else ""


def number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def attempts(job: dict[str, Any], long: bool = False) -> str:
    """A job row's failed attempts against its runs allowed: "2/6" (or the long form)."""
    return describe.attempts_text(job["attempts"] or 0, job["max_retries"] or 0, short=not long)
