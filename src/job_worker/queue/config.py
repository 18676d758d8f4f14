"""Cluster settings: the values every worker, command and dashboard of one database must
agree on, kept in that database (``queue.config`` rows) and set once with ``job-worker
config set``.

- ``default_limit``: jobs running at once in a channel without a ``queue.limit`` row
  (claims, ``limits list``, ``stats``, ``jobs explain``, the dashboard, ``/metrics``);
- ``stale_seconds``: a worker, or a started job, without a heartbeat for that long is
  dead (the stale-job reclaim, the stuck-job and live-worker figures);
- ``retention_days``: done, failed and cancelled jobs are deleted that many days after
  they finished (the maintenance's clean-up, ``vacuum``); ``forever`` keeps them.
- ``max_channel_backoffs``: how many times one job may pause its channel
  (``ChannelBackoff``) and return to pending without counting an attempt; past it, a
  backoff counts as a failed attempt.

A key without a row has its default. :func:`read` is what every reader calls; a
running worker reads again every :data:`REFRESH_SECONDS`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..db import Cursor

_logger = logging.getLogger(__name__)

#: a channel without a queue.limit row runs this many jobs at once (PRODUCT.md 6)
DEFAULT_LIMIT = 1
#: a worker (or a started job) without a heartbeat for this long is dead (PRODUCT.md 6)
STALE_SECONDS = 30.0
#: days finished jobs are kept (PRODUCT.md 6)
RETENTION_DAYS = 30
#: channel backoffs a job may signal without counting an attempt (PRODUCT.md 12)
MAX_CHANNEL_BACKOFFS = 20
#: how often a running worker reads the settings again: a change reaches every worker
#: within this many seconds
REFRESH_SECONDS = 5.0
#: the value of ``retention_days`` that keeps finished jobs
FOREVER = "forever"


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text.strip())
        if value < minimum:
            raise ValueError(text)
        return value

    return parse


def _positive_seconds(text: str) -> float:
    value = float(text.strip())
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return value


def _retention(text: str) -> int | None:
    if text.strip().lower() == FOREVER:
        return None
    return _int_at_least(1)(text)


@dataclass(frozen=True)
class Setting:
    """One cluster setting: its key, default, parser and what it accepts, in words."""

    key: str
    default: Any
    parse: Callable[[str], Any]
    accepted: str
    help: str

    def validate(self, text: Any) -> Any:
        """The typed value of ``text``; ValueError naming the setting otherwise."""
        try:
            return self.parse(str(text))
        except (TypeError, ValueError):
            raise ValueError(f"{self.key}: expected {self.accepted}, got {text!r}") from None

    def as_text(self, value: Any) -> str:
        """How a typed value is stored and shown."""
        if value is None:
            return FOREVER
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


SETTINGS: dict[str, Setting] = {
    setting.key: setting
    for setting in (
        Setting(
            "default_limit",
            DEFAULT_LIMIT,
            _int_at_least(0),
            "an integer >= 0 (0 pauses channels without a limit)",
            "Jobs running at once in a channel without a queue.limit row; 0 pauses them.",
        ),
        Setting(
            "stale_seconds",
            STALE_SECONDS,
            _positive_seconds,
            "seconds > 0, above the heartbeat interval of every live worker",
            "A worker or a started job without a heartbeat for this long is dead: its jobs"
            " are reclaimed, counted as stuck, the worker as not alive.",
        ),
        Setting(
            "retention_days",
            RETENTION_DAYS,
            _retention,
            f"an integer number of days >= 1, or {FOREVER!r}",
            "Days done, failed and cancelled jobs are kept before the maintenance deletes"
            f" them; {FOREVER!r} keeps them.",
        ),
        Setting(
            "max_channel_backoffs",
            MAX_CHANNEL_BACKOFFS,
            _int_at_least(1),
            "an integer >= 1",
            "Times one job may pause its channel (ChannelBackoff) and return to pending"
            " without counting an attempt; past it, a backoff counts as a failed attempt.",
        ),
    )
}


def setting(key: str) -> Setting:
    """The :class:`Setting` of ``key``; ValueError naming the known keys otherwise."""
    try:
        return SETTINGS[key]
    except KeyError:
        raise ValueError(
            f"unknown setting {key!r}: expected one of {', '.join(SETTINGS)}"
        ) from None


@dataclass(frozen=True)
class ClusterSettings:
    """The settings in force on one database (defaults where no row is set)."""

    default_limit: int = DEFAULT_LIMIT
    stale_seconds: float = STALE_SECONDS
    #: None keeps finished jobs forever
    retention_days: int | None = RETENTION_DAYS
    max_channel_backoffs: int = MAX_CHANNEL_BACKOFFS

    def maintenance_settings(self) -> dict[str, Any]:
        """What ``queue.maintenance._run_maintenance`` receives of them."""
        return {"stale_after": self.stale_seconds, "retention_days": self.retention_days or 0}


def read(cr: Cursor) -> ClusterSettings:
    """The settings in force, read from ``cr``'s database.

    A stored value that does not parse (written around ``job-worker config``) is
    logged and its default used: writes through the ``queue.config`` model are checked.
    """
    cr.execute("SELECT key, value FROM queue_config")
    values: dict[str, Any] = {}
    for key, text in cr.fetchall():
        known = SETTINGS.get(key)
        if known is None:
            continue
        try:
            values[key] = known.validate(text)
        except ValueError as exc:
            _logger.warning(
                "ignoring the stored setting %s (%s): its default applies",
                key,
                exc,
                extra={"event": "config.invalid", "key": key},
            )
    return ClusterSettings(**values)
