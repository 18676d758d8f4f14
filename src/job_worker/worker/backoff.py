"""One backoff for every service of a database: a failed operation waits before the next.

Every database operation of the supervisor is short and may fail: the database may
be restarting, or (SQLite) another process may hold the write lock. The first
failure logs ``db.unavailable`` once, later ones ``db.retry`` (DEBUG); the database
is left alone for 0.1 s, doubling to 5 s while it keeps failing; the first success
logs ``db.recovered`` and clears the wait. The services of one database share one
:class:`Backoff`: an outage seen by the claim holds the heartbeat back too.
"""

from __future__ import annotations

import logging

_logger = logging.getLogger(__name__)

#: seconds of the first wait after a failure; it doubles up to :data:`MAX_BACKOFF`
MIN_BACKOFF = 0.1
MAX_BACKOFF = 5.0


class Failed:
    """What a guarded operation returns when it failed (see ``Database.guarded``)."""

    __slots__ = ()


FAILED = Failed()


class Backoff:
    """When the database of ``name`` may be tried again, and the outage's log lines."""

    __slots__ = ("database", "delay", "down_until", "failing_since")

    def __init__(self, database: str):
        self.database = database
        #: seconds waited after the last failure (0: not failing)
        self.delay = 0.0
        #: monotonic time before which the database is left alone
        self.down_until = 0.0
        #: monotonic time of the first failure of the current outage
        self.failing_since: float | None = None

    def available(self, now: float) -> bool:
        return now >= self.down_until

    def failed(self, now: float, what: str, exc: BaseException) -> None:
        """``what`` failed with ``exc`` at ``now``: wait longer before the next try."""
        self.delay = min(max(self.delay * 2, MIN_BACKOFF), MAX_BACKOFF)
        self.down_until = now + self.delay
        if self.failing_since is None:
            self.failing_since = now
            _logger.warning(
                "database %s unavailable during %s: %s: %s; retrying",
                self.database,
                what,
                type(exc).__name__,
                exc,
                extra={"event": "db.unavailable", "database": self.database, "during": what},
            )
        else:
            _logger.debug(
                "database %s still unavailable (%s)",
                self.database,
                exc,
                extra={"event": "db.retry", "database": self.database},
            )

    def succeeded(self, now: float) -> None:
        """An operation went through: the outage, if any, is over."""
        if self.failing_since is not None:
            _logger.warning(
                "database %s available again after %.1f s",
                self.database,
                now - self.failing_since,
                extra={"event": "db.recovered", "database": self.database},
            )
            self.failing_since = None
        self.delay = 0.0
