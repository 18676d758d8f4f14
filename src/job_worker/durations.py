"""Durations as people read them, the same in the CLI, the dashboard and ``explain``."""

from __future__ import annotations

import math


def duration_text(seconds: float, *, fine: bool = False) -> str:
    """``seconds`` (its sign ignored) in the largest unit that reads well: "45 s",
    "3 min", "2.5 h", "3 d".

    ``fine`` is for run times, often short, where the figure matters: "< 1 ms",
    "240 ms", "3.02 s" up to two minutes, then as above. Without it (an age, a
    wait, a time until), seconds are whole and count up to 90 s.
    """
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number of seconds, got {seconds!r}")
    seconds = abs(seconds)
    if fine:
        if seconds < 0.001:
            return "< 1 ms"
        if seconds < 1:
            return f"{seconds * 1000:.0f} ms"
        if seconds < 120:
            return f"{seconds:.2f} s"
    elif seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"
