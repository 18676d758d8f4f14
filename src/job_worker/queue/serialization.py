"""Job arguments and results as JSON.

Plain JSON values are stored as they are. The other accepted types are
stored as one-key objects whose key starts with ``$`` (``{"$datetime":
"2025-06-01T09:00:00"}``); a dict whose keys start with ``$`` is itself
escaped, so decoding is never ambiguous. Anything else is refused when the
job is enqueued, with the path of the bad value (``args[0]["when"]``); so is a
list, tuple or dict that contains itself, which JSON cannot hold.

Limits, refused with ``ValueError`` naming the path: text with a NUL
character or a lone surrogate (no database stores them), ints of more than
4,300 digits (Python cannot write them as JSON), lists, tuples and dicts
nested more than :data:`MAX_DEPTH` deep, and arguments whose JSON text is
longer than :data:`MAX_ARGUMENT_CHARS` (``args`` and ``kwargs`` each).
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ..orm.fields import json_text, short_repr, unstorable_char
from ..orm.models import BaseModel

if TYPE_CHECKING:
    from ..orm.api import Environment

ACCEPTED = (
    "None, bool, int, float, str, list, tuple, dict with str keys, datetime, date, "
    "Decimal, UUID or records"
)


#: the deepest nesting of lists, tuples and dicts in one argument of a job
MAX_DEPTH = 100

#: the longest JSON text (as stored: compact, non-ASCII characters escaped) of a
#: job's ``args``, and of its ``kwargs``: 1 MiB. Big data belongs in a record or
#: a file whose id or path the job gets.
MAX_ARGUMENT_CHARS = 1024 * 1024

#: ints this long cannot be written as JSON (Python's int-to-text limit)
_MAX_INT_DIGITS = 4300
_HUGE_INT = 10**_MAX_INT_DIGITS


def encode(value: Any, path: str, max_chars: int | None = MAX_ARGUMENT_CHARS) -> Any:
    """The JSON form of ``value``; ``TypeError`` (a type that cannot be stored) or
    ``ValueError`` (a value past a limit) naming ``path`` if it cannot be stored.
    ``max_chars``: the longest JSON text accepted (None: no limit)."""
    try:
        encoded = _encode(value, set())
    except _Refused as exc:
        where = path + "".join(reversed(exc.steps))
        if exc.circular is not None:
            first = path + "".join(reversed(exc.steps[exc.first_at :]))
            raise TypeError(f"{where}: {exc}; it is {first} again (circular reference)") from None
        raise exc.error(f"{where}: {exc}") from None
    if max_chars is not None and encoded:  # (an empty list or dict is 2 characters)
        size = len(json_text(encoded))
        if size > max_chars:
            raise ValueError(
                f"{path}: {size:,} characters of JSON, more than the {max_chars:,} a job "
                "may store: pass the id of a record or the path of a file that holds the data"
            )
    return encoded


class _Refused(Exception):
    """A value that cannot be stored; ``steps`` lead to it from the outside in, reversed.

    The path is only put together when a value is refused, so encoding good
    arguments builds no path strings.

    For a circular value, ``circular`` is the container met again inside
    itself; ``first_at`` is ``len(steps)`` once the error has left that
    container's first visit, so ``steps[first_at:]`` lead to that visit.
    """

    def __init__(
        self,
        message: str,
        circular: list | tuple | dict | None = None,
        error: type[Exception] = TypeError,
    ):
        super().__init__(message)
        self.steps: list[str] = []
        self.circular = circular
        self.first_at = 0
        self.error = error  # what encode() raises: TypeError for a type, ValueError for a value


def _enter(container: list | tuple | dict, active: set[int]) -> int:
    """Note that ``container`` is being encoded; refuse it if it already is (a cycle)."""
    ref = id(container)
    # ``active`` holds the containers around this one, the args list or kwargs dict
    # first: an argument holds containers MAX_DEPTH deep
    if len(active) > MAX_DEPTH:
        raise _Refused(
            f"lists, tuples and dicts nested more than {MAX_DEPTH} deep cannot be stored in a job",
            error=ValueError,
        )
    if ref in active:
        raise _Refused(
            f"cannot store a {type(container).__name__} that contains itself in a job", container
        )
    active.add(ref)
    return ref


def _located(exc: _Refused, step: str, container: list | tuple | dict) -> None:
    """A refusal leaving ``container`` through ``step`` learns that step of its path."""
    exc.steps.append(step)
    if exc.circular is container:
        exc.first_at = len(exc.steps)


def _text(value: str) -> str:
    """``value`` if a database can store it as text."""
    problem = unstorable_char(value)
    if problem:
        raise _Refused(f"text with {problem} cannot be stored in a job", error=ValueError)
    return value


def _encode(value: Any, active: set[int]) -> Any:
    """``active`` holds the ids of the containers being encoded around ``value``:
    meeting one again means a cycle. Only containers touch it; an object seen
    twice side by side (``[x, x]``) is not on the path the second time."""
    if isinstance(value, str):
        return _text(value)
    if value is None:
        return value
    if isinstance(value, int):  # bool is an int
        if -_HUGE_INT < value < _HUGE_INT:
            return value
        raise _Refused(
            f"ints of more than {_MAX_INT_DIGITS} digits cannot be stored as JSON", error=ValueError
        )
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused(f"{value!r} cannot be stored as JSON")
        return value
    if isinstance(value, list):
        return _encode_items(value, active)
    if isinstance(value, tuple):
        return {"$tuple": _encode_items(value, active)}
    if isinstance(value, dict):
        ref = _enter(value, active)
        out = {}
        escaped = False  # a key starts with "$": the dict is wrapped, not taken for a type
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Refused(f"dict keys must be strings, got {short_repr(key)}")
            problem = unstorable_char(key)
            if problem:
                raise _Refused(
                    f"dict key {short_repr(key)} holds {problem}, which cannot be stored in a job",
                    error=ValueError,
                )
            if key[:1] == "$":
                escaped = True
            try:
                out[key] = _encode(item, active)
            except _Refused as exc:
                _located(exc, f"[{short_repr(key)}]", value)
                raise
        active.discard(ref)
        return {"$dict": out} if escaped else out
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, UUID):
        return {"$uuid": str(value)}
    if isinstance(value, BaseModel):
        return {"$records": [value._name, list(value._ids)]}
    raise _Refused(
        f"cannot store {type(value).__name__} {short_repr(value)} in a job; accepted: {ACCEPTED}"
    )


def _encode_items(values: list | tuple, active: set[int]) -> list:
    ref = _enter(values, active)
    out = []
    for i, item in enumerate(values):
        try:
            out.append(_encode(item, active))
        except _Refused as exc:
            _located(exc, f"[{i}]", values)
            raise
    active.discard(ref)
    return out


def decode(value: Any, env: Environment) -> Any:
    """The Python value of a stored JSON form; records come back in ``env``."""
    if isinstance(value, list):
        return [decode(v, env) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, item),) = value.items()
        if key == "$tuple":
            return tuple(decode(v, env) for v in item)
        if key == "$dict":
            return {k: decode(v, env) for k, v in item.items()}
        if key == "$datetime":
            return datetime.fromisoformat(item)
        if key == "$date":
            return date.fromisoformat(item)
        if key == "$decimal":
            return Decimal(item)
        if key == "$uuid":
            return UUID(item)
        if key == "$records":
            model, ids = item
            return env[model].browse(ids)
    return {k: decode(v, env) for k, v in value.items()}


def canonical(value: Any) -> str:
    """An order-independent text of an encoded value (dict keys sorted)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


MAX_RESULT_CHARS = 64 * 1024


def encode_result(value: Any) -> Any:
    """A job's return value for the ``result`` column: encoded if it can be,
    else its ``repr``; truncated with a marker past 64 KiB of JSON."""
    try:
        encoded = encode(value, "result", max_chars=None)  # truncated below instead
    except (TypeError, ValueError):
        try:
            encoded = repr(value)
        except (RecursionError, ValueError):  # nested too deep, or an int too long to print
            encoded = f"<{type(value).__name__} that cannot be stored>"
        if unstorable_char(encoded):  # the repr of an object of the job's own
            encoded = encoded.encode("unicode_escape").decode()
    text = json.dumps(encoded)
    if len(text) > MAX_RESULT_CHARS:
        return {"$truncated": True, "size": len(text), "head": text[: MAX_RESULT_CHARS // 2]}
    return encoded
