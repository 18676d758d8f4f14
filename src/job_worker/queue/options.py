"""The options of ``with_delay()``/``delayable()``: defaults and validation.

Every bad option is refused when the job is described, never later in the
worker, with the option, the bad value and what would be accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from ..orm.fields import Datetime, to_naive_utc

CHANNEL_RE = re.compile(r"^[A-Za-z0-9._-]+$")

_UNSET: Any = object()


@dataclass(frozen=True)
class JobOptions:
    channel: str = "root"
    priority: int = 10
    eta: datetime | None = None  # naive UTC, resolved when the options are set
    max_retries: int = 5
    description: str | None = None
    identity_key: str | Callable[[Any], str] | None = None
    timeout: float = 0

    def update(self, **options: Any) -> JobOptions:
        """A copy with ``options`` validated and applied."""
        return replace(self, **validate(options))


OPTION_NAMES = (*(f.name for f in fields(JobOptions)), "scheduled_at")


def validate(options: dict[str, Any]) -> dict[str, Any]:
    """Check user-given options; return them normalised (``scheduled_at`` folded into ``eta``)."""
    unknown = set(options) - set(OPTION_NAMES)
    if unknown:
        raise TypeError(
            f"unknown job option(s) {', '.join(sorted(unknown))}; accepted: {', '.join(OPTION_NAMES)}"
        )
    result: dict[str, Any] = {}
    if "eta" in options or "scheduled_at" in options:
        eta = resolve_eta(options.get("eta"), "eta")
        scheduled_at = resolve_eta(options.get("scheduled_at"), "scheduled_at")
        both = "eta" in options and "scheduled_at" in options and None not in (eta, scheduled_at)
        # two delays from now agree when they are as long (each was added to its own now)
        delays = [
            v if isinstance(v, timedelta) else timedelta(seconds=v)
            for v in (options.get("eta"), options.get("scheduled_at"))
            if isinstance(v, timedelta | int | float) and not isinstance(v, bool)
        ]
        agree = delays[0] == delays[1] if len(delays) == 2 else eta == scheduled_at
        if both and options["eta"] != options["scheduled_at"] and not agree:
            raise ValueError(
                f"eta={options['eta']!r} and scheduled_at={options['scheduled_at']!r} disagree: "
                "scheduled_at is an alias of eta, give one of them"
            )
        result["eta"] = eta if eta is not None else scheduled_at
    for name, value in options.items():
        if name in ("eta", "scheduled_at"):
            continue
        result[name] = _CHECKS[name](value)
    return result


def _channel(value: Any) -> str:
    if not isinstance(value, str) or not CHANNEL_RE.match(value):
        raise ValueError(
            f"channel must be a non-empty string of letters, digits, '.', '_' or '-', got {value!r}"
        )
    return value


def _priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"priority must be an int (lower runs first), got {value!r}")
    return value


def _max_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_retries must be an int >= 0 (0 = retry forever), got {value!r}")
    if value < 0:
        raise ValueError(f"max_retries must be >= 0 (0 = retry forever), got {value!r}")
    return value


def _description(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"description must be a string, got {value!r}")
    return value or None


def _identity_key(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, str) or callable(value):
        return value
    raise TypeError(f"identity_key must be a string or a callable(Delayable) -> str, got {value!r}")


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"timeout must be a number of seconds >= 0 (0 = none), got {value!r}")
    if value < 0:
        raise ValueError(f"timeout must be >= 0 seconds (0 = none), got {value!r}")
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "channel": _channel,
    "priority": _priority,
    "max_retries": _max_retries,
    "description": _description,
    "identity_key": _identity_key,
    "timeout": _timeout,
}


def resolve_eta(value: Any, name: str = "eta") -> datetime | None:
    """An eta as naive UTC: a datetime (naive = UTC), a timedelta or seconds from now."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return to_naive_utc(value)
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"{name} must not be a negative delay, got {value!r}")
        return Datetime.now() + value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{name} must be >= 0 seconds from now, got {value!r}")
        return Datetime.now() + timedelta(seconds=value)
    raise TypeError(
        f"{name} must be a datetime, a timedelta or a number of seconds from now, got {value!r}"
    )
