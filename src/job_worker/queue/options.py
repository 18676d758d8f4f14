"""The options of ``with_delay()``/``delayable()``: defaults and validation.

Every bad option is refused when the job is described, never later in the
worker, with the option, the bad value and what would be accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from ..orm.fields import INT_MAX, INT_MIN, Datetime, short_repr, to_naive_utc, unstorable_char

#: the longest channel name
MAX_CHANNEL_LENGTH = 64
#: a channel name, whole (``\Z``: ``$`` would let a trailing newline through)
CHANNEL_RE = re.compile(rf"\A[A-Za-z0-9._-]{{1,{MAX_CHANNEL_LENGTH}}}\Z")
#: the longest identity key: a unique index holds it (PostgreSQL caps an index
#: entry at 2,704 bytes; 500 characters are at most 2,000 bytes of UTF-8)
MAX_IDENTITY_KEY_LENGTH = 500
#: the longest fair key (``with_delay(fair_key=...)``): the pending jobs' index holds it
MAX_FAIR_KEY_LENGTH = 200

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
    weight: int = 1
    fair_key: str | None = None

    def update(self, **options: Any) -> JobOptions:
        """A copy with ``options`` validated and applied."""
        return replace(self, **validate(options))


OPTION_NAMES = (*(f.name for f in fields(JobOptions)), "scheduled_at")

#: options given as plain values (no eta: a delay counts from now), validated once:
#: the same few come again at every enqueue of a loop
_KNOWN: dict[tuple[tuple[str, type, Any], ...], JobOptions] = {}
_PLAIN = frozenset({str, int, float, type(None)})


def job_options(options: dict[str, Any]) -> JobOptions:
    """``JobOptions().update(**options)``, remembered for options of plain values."""
    key: tuple[tuple[str, type, Any], ...] | None = None
    if len(options) == 1:  # one option (a channel, say): no sorting to do
        ((name, value),) = options.items()
        if name != "eta" and name != "scheduled_at" and type(value) in _PLAIN:
            key = ((name, type(value), value),)
            known = _KNOWN.get(key)
            if known is not None:
                return known
    elif (
        "eta" not in options
        and "scheduled_at" not in options
        and all(type(value) in _PLAIN for value in options.values())
    ):
        # (the type too: 2.0 == 2, but a weight of 2.0 is refused)
        key = tuple(sorted((name, type(value), value) for name, value in options.items()))
        known = _KNOWN.get(key)
        if known is not None:
            return known
    made = JobOptions().update(**options)
    if key is not None:
        if len(_KNOWN) >= 256:
            _KNOWN.clear()
        _KNOWN[key] = made
    return made


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
            f"channel must be 1 to {MAX_CHANNEL_LENGTH} letters, digits, '.', '_' or '-', "
            f"got {short_repr(value)}"
        )
    return value


def _priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"priority must be an int (lower runs first), got {short_repr(value)}")
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(
            f"priority must be an int from {INT_MIN} to {INT_MAX} (lower runs first), "
            f"got {short_repr(value)}"
        )
    return value


def _max_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"max_retries must be an int >= 0 (0 = retry forever), got {short_repr(value)}"
        )
    if not 0 <= value <= INT_MAX:
        raise ValueError(
            f"max_retries must be an int from 0 to {INT_MAX} (0 = retry forever), "
            f"got {short_repr(value)}"
        )
    return value


def check_text(value: str, name: str) -> str:
    """``value`` if a database can store it as text, else ``ValueError`` naming ``name``."""
    problem = unstorable_char(value)
    if problem:
        raise ValueError(f"{name} {short_repr(value)} holds {problem}, which cannot be stored")
    return value


def _description(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"description must be a string, got {short_repr(value)}")
    if not value:
        return None
    return check_text(value, "description")


def check_identity_key(value: str, name: str = "identity_key") -> str:
    """A string identity key, refused if a database cannot store or index it."""
    if len(value) > MAX_IDENTITY_KEY_LENGTH:
        raise ValueError(
            f"{name} must be at most {MAX_IDENTITY_KEY_LENGTH} characters, got {len(value):,}: "
            "use a digest of the data (hashlib.sha1) for a long key"
        )
    return check_text(value, name)


def _identity_key(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return check_identity_key(value)
    if callable(value):
        return value
    raise TypeError(
        f"identity_key must be a string or a callable(Delayable) -> str, got {short_repr(value)}"
    )


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"timeout must be a number of seconds >= 0 (0 = none), got {short_repr(value)}"
        )
    if not 0 <= value < math.inf:  # also refuses NaN, which compares false
        raise ValueError(
            f"timeout must be a finite number of seconds >= 0 (0 = none), got {short_repr(value)}"
        )
    return value


def _weight(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"weight must be an int from 1 to {INT_MAX} (the share of its channel's limit "
            f"the job takes), got {short_repr(value)}"
        )
    if not 1 <= value <= INT_MAX:
        raise ValueError(
            f"weight must be an int from 1 to {INT_MAX} (the share of its channel's limit "
            f"the job takes), got {short_repr(value)}"
        )
    return value


def _fair_key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(
            f"fair_key must be None or a string of 1 to {MAX_FAIR_KEY_LENGTH} characters, "
            f"got {short_repr(value)}"
        )
    if not 1 <= len(value) <= MAX_FAIR_KEY_LENGTH:
        raise ValueError(
            f"fair_key must be None or a string of 1 to {MAX_FAIR_KEY_LENGTH} characters, "
            f"got {short_repr(value)} ({len(value):,} characters)"
        )
    return check_text(value, "fair_key")


def _stored_identity_key(value: Any) -> Any:
    return check_identity_key(value) if isinstance(value, str) and value else value


#: job columns that hold an option, with the option's check: what a model's
#: ``_job_store_values`` puts there is checked like the option
STORED_CHECKS: dict[str, Callable[[Any], Any]] = {
    "channel": _channel,
    "priority": _priority,
    "max_retries": _max_retries,
    "name": _description,
    "identity_key": _stored_identity_key,
    "timeout": _timeout,
    "weight": _weight,
    "fair_key": _fair_key,
}

_CHECKS: dict[str, Callable[[Any], Any]] = {
    "channel": _channel,
    "priority": _priority,
    "max_retries": _max_retries,
    "description": _description,
    "identity_key": _identity_key,
    "timeout": _timeout,
    "weight": _weight,
    "fair_key": _fair_key,
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
        return _from_now(value, name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < math.inf:  # also refuses NaN, which compares false
            raise ValueError(
                f"{name} must be a finite number of seconds >= 0 from now, got {short_repr(value)}"
            )
        return _from_now(value, name)
    raise TypeError(
        f"{name} must be a datetime, a timedelta or a number of seconds from now, got {value!r}"
    )


def _from_now(delay: timedelta | float, name: str) -> datetime:
    """Now plus ``delay`` (a timedelta or seconds), refused past the last datetime."""
    try:
        return Datetime.now() + (
            delay if isinstance(delay, timedelta) else timedelta(seconds=delay)
        )
    except OverflowError:
        raise ValueError(
            f"{name} {short_repr(delay)} is out of range: the latest date is {datetime.max:%Y-%m-%d}"
        ) from None
