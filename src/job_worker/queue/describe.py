"""How a job reads for people, the same in ``jobs show`` and on the dashboard.

- :func:`call_text`: the call as Python would write it,
  ``env["res.partner"].browse([4]).charge_card(99.9)``;
- :func:`attempts_text`: failed attempts against the runs allowed (a job runs
  at most ``max_retries + 1`` times, PRODUCT.md 5), so a failed job with
  ``max_retries`` 5 reads "6 failed of 6 runs allowed", never "6/5";
- :func:`timeline`: what happened to the job and when: enqueued, each attempt
  (where it ran, for how long, what it raised) and each channel backoff (the pause
  it asked for), the current run, the end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from ..durations import duration_text
from ..orm.fields import Datetime
from .lifecycle import QUEUED, TERMINAL, JobState
from .states import ATTEMPT_HEADER, BACKOFF_HEADER, BACKOFF_PREFIX

_DT = Datetime()


def _literal(value: Any) -> str:
    """A stored (JSON) argument as a Python literal; the ``$`` forms of
    :mod:`.serialization` as the values they stand for."""
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        if len(value) == 1:
            key, inner = next(iter(value.items()))
            special = _special(key, inner)
            if special is not None:
                return special
        return "{" + ", ".join(f"{k!r}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _special(key: str, inner: Any) -> str | None:
    try:
        if key == "$tuple":
            items = [_literal(v) for v in inner]
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        if key == "$dict":
            return "{" + ", ".join(f"{k!r}: {_literal(v)}" for k, v in inner.items()) + "}"
        if key == "$datetime":
            return repr(datetime.fromisoformat(inner))
        if key == "$date":
            return repr(date.fromisoformat(inner))
        if key == "$decimal":
            return repr(Decimal(inner))
        if key == "$uuid":
            return repr(UUID(inner))
        if key == "$records":
            model, ids = inner
            return f"env[{model!r}].browse({list(ids)!r})"
    except (TypeError, ValueError, AttributeError):
        return None  # not one of ours after all: shown as the dict it is
    return None


def call_text(
    model_name: str,
    method_name: str,
    record_ids: Iterable[int] | None,
    args: Iterable[Any] | None,
    kwargs: dict[str, Any] | None,
) -> str:
    """``env["model"].browse([ids]).method(arg, key=value)``."""
    parts = [_literal(v) for v in args or ()]
    parts += [f"{key}={_literal(v)}" for key, v in (kwargs or {}).items()]
    receiver = f"env[{model_name!r}].browse({list(record_ids or [])!r})"
    return f"{receiver}.{method_name}({', '.join(parts)})"


def attempts_text(attempts: int, max_retries: int, *, short: bool = False) -> str:
    """Failed attempts against the runs allowed: "2 failed of 6 runs allowed
    (max_retries 5)", or short "2/6"; ``max_retries`` 0 retries forever (∞)."""
    allowed = str(max_retries + 1) if max_retries else "∞"
    if short:
        return f"{attempts}/{allowed}"
    if not max_retries:
        return f"{attempts} failed, retried without end (max_retries 0)"
    return f"{attempts} failed of {allowed} runs allowed (max_retries {max_retries})"


@dataclass(frozen=True)
class Event:
    """One line of a job's timeline; ``state`` colours it."""

    at: datetime
    label: str
    state: str

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "label": self.label, "state": self.state}


def _where(worker_id: str | None) -> str:
    return f"on worker {worker_id}" if worker_id else "in the calling process (run_now)"


def _exception(block: str) -> str:
    """The short exception name of one attempt's diagnosis (its last line)."""
    lines = [line for line in block.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    name = lines[-1].split(":", 1)[0].strip()
    return name.rsplit(".", 1)[-1] if name and " " not in name else ""


def _moment(text: str) -> datetime | None:
    try:
        return _DT.from_column(text.strip())
    except ValueError:
        return None


def _backoff_text(block: str) -> str:
    """What a backoff's diagnosis says of the pause (its last line, without its prefix)."""
    lines = [line for line in block.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    return last.removeprefix(BACKOFF_PREFIX) if last.startswith(BACKOFF_PREFIX) else ""


def _attempts(exc_info: str, enqueued: datetime) -> list[Event]:
    """The runs a job's diagnoses record: failed attempts and channel backoffs, each
    with when it began (from its run time) and how it ended."""
    events: list[Event] = []
    headers = sorted(
        [(m, "attempt") for m in ATTEMPT_HEADER.finditer(exc_info)]
        + [(m, "backoff") for m in BACKOFF_HEADER.finditer(exc_info)],
        key=lambda header: header[0].start(),
    )
    for index, (match, kind) in enumerate(headers):
        number, moment, ran, where = match.groups()
        at = _moment(moment)
        if at is None:
            continue
        end = headers[index + 1][0].start() if index + 1 < len(headers) else len(exc_info)
        block = exc_info[match.end() : end]
        what = f"attempt {number}" if kind == "attempt" else f"run before channel backoff {number}"
        if kind == "attempt":
            name = _exception(block)
            raised = f": {name}" if name else ""
            ended, state = f"attempt {number} failed", "failed"
        else:
            pause = _backoff_text(block)
            raised = f": {pause}" if pause else ""
            ended, state = f"channel backoff {number}, back to pending", "pending"
        if ran is None:
            events.append(Event(at, f"{ended}{raised}", state))
            continue
        spent = float(ran)
        worker = where[3:] if where.startswith("on ") else None
        # the header rounds the run time to the millisecond: a run never seems to begin
        # before the enqueue or before the previous one ended
        began = max(at - timedelta(seconds=spent), events[-1].at if events else enqueued)
        events.append(Event(began, f"{what} started {_where(worker)}", "started"))
        events.append(Event(at, f"{ended} after {duration_text(spent, fine=True)}{raised}", state))
    return events


def timeline(job: Any) -> list[Event]:
    """The events of ``job`` (a ``queue.job`` record), oldest first."""
    events = [Event(job.create_date, "enqueued", "waiting" if job.dependency_ids else "pending")]
    attempts = _attempts(job.exc_info or "", job.create_date)
    events += attempts
    last_failure = attempts[-1].at if attempts else None
    if job.state in QUEUED and job.scheduled_at and job.scheduled_at != job.create_date:
        events.append(Event(job.scheduled_at, "due", "pending"))
    # the current (or last) run, unless its failure is already an attempt above
    current = job.started_at and (last_failure is None or job.started_at > last_failure)
    if current and job.state in (JobState.STARTED, *TERMINAL):
        events.append(Event(job.started_at, f"started {_where(job.worker_id or None)}", "started"))
    if job.completed_at and job.state == "done":
        ran = (
            f" after {duration_text(job.duration, fine=True)}"
            if isinstance(job.duration, float)
            else ""
        )
        events.append(Event(job.completed_at, f"done{ran}", "done"))
    if job.completed_at and job.state == "failed":
        events.append(Event(job.completed_at, "failed (final)", "failed"))
    if job.cancelled_at and job.state == "cancelled":
        events.append(Event(job.cancelled_at, "cancelled", "cancelled"))
    return sorted((e for e in events if e.at), key=lambda e: e.at)  # stable: ties keep order
