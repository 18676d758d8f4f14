"""Rate windows of a channel: "at most N starts in any window of T seconds".

A channel may have several at once (``10/s``, ``500/min``, ``20000/h``): no window
of any of those lengths ever holds more starts than its count, across every worker.
The text form, the same in ``job-worker limits set --rate``, the dashboard and
``queue.limit.rates``, is ``COUNT/PERIOD``: a count >= 1, then a period that is a
unit (``s``, ``min``, ``h``) with an optional number in front (``12/3s``,
``100/5min``, ``1/0.5s``). Several windows are separated by spaces or commas.

A channel's older ``rate_limit`` of R starts per second (which may be fractional)
is the window ``1/(1/R)s``: never two starts closer than 1/R seconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

#: seconds of each unit a period may be written in
UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}
#: the longest window: the claim keeps the starts of that long
MAX_PERIOD = 86400.0
#: the most starts one window may count (the claim reads up to that many of them)
MAX_COUNT = 1_000_000
#: the most windows on one channel
MAX_WINDOWS = 8

_WINDOW_RE = re.compile(r"\A(\d+)/(\d+(?:\.\d+)?)?(s|min|h)\Z")

ACCEPTED = (
    "COUNT/PERIOD windows such as 10/s, 12/3s, 500/min or 20000/h (a count from 1 to "
    f"{MAX_COUNT:,}, a period up to 24 h), separated by spaces or commas"
)


@dataclass(frozen=True, order=True)
class RateWindow:
    """At most ``count`` starts in any window of ``seconds``."""

    seconds: float
    count: int

    @property
    def text(self) -> str:
        for unit, size in reversed(UNITS.items()):
            amount = self.seconds / size
            if amount >= 1 and math.isclose(amount, round(amount)):
                number = "" if round(amount) == 1 else str(round(amount))
                return f"{self.count}/{number}{unit}"
        return f"{self.count}/{self.seconds:g}s"

    def __str__(self) -> str:
        return self.text


def parse_window(text: str) -> RateWindow:
    """One window from its text; ValueError naming the text and what is accepted."""
    match = _WINDOW_RE.match(text.strip().lower()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"rate {text!r} is not a window: expected {ACCEPTED}")
    count = int(match.group(1))
    seconds = float(match.group(2) or 1) * UNITS[match.group(3)]
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"rate {text!r}: the count must be from 1 to {MAX_COUNT:,}")
    if not 0 < seconds <= MAX_PERIOD:
        raise ValueError(f"rate {text!r}: the period must be above 0 and at most 24 h")
    return RateWindow(seconds, count)


@lru_cache(maxsize=256)
def parse_rates(text: str | None) -> tuple[RateWindow, ...]:
    """The windows of a ``rates`` text (none for an empty one), shortest first, each
    length once (two windows of one length: the smaller count holds)."""
    if not text or not text.strip():
        return ()
    windows: dict[float, RateWindow] = {}
    for part in re.split(r"[\s,]+", text.strip()):
        window = parse_window(part)
        known = windows.get(window.seconds)
        if known is None or window.count < known.count:
            windows[window.seconds] = window
    if len(windows) > MAX_WINDOWS:
        raise ValueError(f"at most {MAX_WINDOWS} rate windows on one channel, got {len(windows)}")
    return tuple(sorted(windows.values()))


def rates_text(windows: tuple[RateWindow, ...] | list[RateWindow]) -> str:
    """The canonical text of ``windows`` (what ``queue.limit.rates`` stores)."""
    return " ".join(window.text for window in sorted(windows))


def channel_windows(rates: str | None, rate_limit: float | None) -> tuple[RateWindow, ...]:
    """Every window a channel keeps: its ``rates``, and its ``rate_limit`` as the window
    of one start per 1/R seconds. A stored text that does not parse (written around
    the model's checks) counts as no window."""
    try:
        windows = list(parse_rates(rates))
    except ValueError:
        windows = []
    if rate_limit and rate_limit > 0:
        windows.append(RateWindow(min(1.0 / float(rate_limit), MAX_PERIOD), 1))
    return tuple(sorted(windows))
