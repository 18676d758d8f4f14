"""When a periodic job's occurrences fall: cron expressions in a time zone, or intervals.

Cron expressions are parsed and walked by ``cronsim``, not by hand. It follows
Debian cron on daylight-saving days, which is what PRODUCT.md asks: a time the
clocks skip (02:30 on the spring-forward day) runs once, at the first valid time
after; a time that happens twice (the fall-back day) runs once, the first time.
Expressions with a wildcard hour (``*/30 * * * *``) run at each real instant,
both hours of the fall-back day included.

Intervals are exact in UTC: every ``interval`` seconds, whatever the zone says.

Every datetime here is naive UTC, as the database stores them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError


def check_expression(expression: object) -> str:
    """A valid 5-field cron expression, stripped; ``ValueError`` naming the problem."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"a cron expression is a non-empty string, got {expression!r}")
    expression = " ".join(expression.split())
    if len(expression.split(" ")) != 5:
        raise ValueError(
            f"invalid cron expression {expression!r}: it needs 5 fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 3 * * *'"
        )
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None
    return expression


@lru_cache(maxsize=256)
def zone(name: object) -> ZoneInfo:
    """The IANA time zone ``name``; ``ValueError`` for an unknown one."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a time zone is an IANA name such as 'Europe/Brussels', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: give an IANA name such as 'UTC' or 'Europe/Brussels'"
        ) from None


def check_interval(interval: object) -> int:
    if isinstance(interval, bool) or not isinstance(interval, int) or interval <= 0:
        raise ValueError(f"interval must be a whole number of seconds > 0, got {interval!r}")
    return interval


@dataclass(frozen=True)
class Schedule:
    """A cron expression in a zone, or an interval in seconds (exactly one of them)."""

    cron: str | None = None
    interval: int | None = None
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.interval is None):
            raise ValueError(
                "a periodic job needs either a cron expression or an interval (seconds), "
                f"not {'both' if self.cron else 'neither'}"
            )
        if self.cron is not None:
            object.__setattr__(self, "cron", check_expression(self.cron))
        else:
            check_interval(self.interval)
        zone(self.tz)

    def first(self, now: datetime) -> datetime:
        """The first occurrence of a schedule made at ``now``: for an interval, one
        interval later (whole seconds); for a cron expression, the next match."""
        if self.interval is not None:
            return now.replace(microsecond=0) + timedelta(seconds=self.interval)
        return self.after(now)

    def after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after ``moment``."""
        return next(self.iterate(moment))

    def iterate(self, moment: datetime) -> Iterator[datetime]:
        """The occurrences strictly after ``moment``, in order. For an interval the
        grid is anchored on ``moment`` itself (the previous occurrence)."""
        if self.interval is not None:
            step = timedelta(seconds=self.interval)
            current = moment
            while True:
                current += step
                yield current
        tz = zone(self.tz)
        local = moment.replace(tzinfo=UTC).astimezone(tz)
        assert self.cron is not None
        for occurrence in CronSim(self.cron, local):
            yield occurrence.astimezone(UTC).replace(tzinfo=None)

    def due(
        self, next_at: datetime, now: datetime, keep: int
    ) -> tuple[list[datetime], int, datetime]:
        """The occurrences from ``next_at`` (itself one) up to ``now``: the last ``keep`` of
        them, how many there were, and the first occurrence after ``now``."""
        if next_at > now:
            return [], 0, next_at
        if self.interval is not None:
            step = timedelta(seconds=self.interval)
            count = int((now - next_at) // step) + 1
            last = next_at + (count - 1) * step
            kept = [last - i * step for i in range(min(keep, count) - 1, -1, -1)]
            return kept, count, last + step
        kept = [next_at]
        count = 1
        for occurrence in self.iterate(next_at):
            if occurrence > now:
                return kept[-keep:] if keep else [], count, occurrence
            count += 1
            kept.append(occurrence)
            if len(kept) > 2 * max(keep, 1):
                del kept[: len(kept) - max(keep, 1)]
        raise AssertionError("unreachable: a schedule never ends")  # pragma: no cover

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """The next ``count`` occurrences after ``moment``."""
        it = self.iterate(moment)
        return [next(it) for _ in range(count)]
