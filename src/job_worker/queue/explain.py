"""Why is this job not running? The answer in words, for the CLI and the dashboard.

:func:`explain` reads the job, its parents, its channel's limit, the jobs
running in that channel, the recent starts and the live workers, and returns
every reason that holds, most decisive first. It only reads: it never
changes a job.

Each :class:`Reason` has a stable ``code`` (for scripts and tests) and a
``message`` for people:

- ``finished``: done, failed or cancelled, nothing to wait for;
- ``running``: started on a worker (``stale_heartbeat`` when that worker went
  silent and the job waits to be reclaimed);
- ``waiting_parents``: a graph job waiting on unfinished parents (named);
- ``scheduled``: due later (an ``eta``); ``retry_backoff``: due later because
  its last attempt failed;
- ``channel_backoff``: a job of the channel asked it to pause (``ChannelBackoff``)
  and the pause has not ended; it holds every job of the channel;
- ``weight_never_fits``: the job's weight is above its channel's limit (lowered
  after the job was enqueued): it can never start until the limit is raised;
- ``channel_paused`` (limit 0), ``channel_full`` (the weights of the running jobs
  leave no room for this one's), ``rate_limited`` (a rate window of the channel
  holds as many starts as it allows);
- ``depth_full``: the channel holds as many jobs waiting or pending as its
  ``max_depth``: new enqueues into it are refused or skipped (this job is not
  held back by it);
- ``no_worker``: no live worker (none ever ran, the last one stopped cleanly,
  or the last one went silent: no heartbeat within the stale window), or no
  live worker takes this channel;
- ``queued_behind``: due jobs of the channel come first (priority, due time; in a
  channel with fair keys, the due jobs of a better priority);
- ``fair_turn``: in a channel with pending jobs that have a fair key, the other keys
  with due jobs at the job's priority that the rotation serves before the job's key
  (after the key that had the channel's last turn, wrapping), and the due jobs of its
  own key ahead of it (jobs without a key share the key ``''``, "jobs without a key");
- ``ready``: nothing holds it back; a worker picks it up at its next free slot;
- ``periodic`` (last, for the jobs of a ``queue.cron``): which occurrence of which
  periodic job it is, or that it was run by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..db.jobstore import job_store
from ..durations import duration_text
from ..orm.fields import Datetime
from ..rates import RateWindow, channel_windows
from . import config
from .lifecycle import ACTIVE, TERMINAL, JobState

if TYPE_CHECKING:
    from ..orm.api import Environment

#: "N jobs ahead" is counted up to this many (a bounded count, never the whole queue)
AHEAD_CAP = 1000
#: "behind N keys": each walk of the keys in rotation looks at this many keys at most
FAIR_KEYS_CAP = 1000

_DT = Datetime()


@dataclass(frozen=True)
class Reason:
    """One reason why a job is (not) running."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


def _dt(value: Any) -> datetime | None:
    return _DT.from_column(value) if value else None


def _when(moment: datetime, now: datetime) -> str:
    delta = (moment - now).total_seconds()
    stamp = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    span = duration_text(delta)
    return f"{stamp} (in {span})" if delta >= 0 else f"{stamp} ({span} ago)"


@dataclass(frozen=True)
class ChannelLimit:
    """What a channel's ``queue.limit`` row says (the defaults where it has none)."""

    limit: int
    windows: tuple[RateWindow, ...]
    configured: bool
    max_depth: int = 0
    depth_policy: str = "raise"


def channel_limit(env: Environment, channel: str, default_limit: int | None = None) -> ChannelLimit:
    """The limit, rate windows and depth bound of ``channel``, read once: its queue.limit
    row or the default limit (the ``default_limit`` cluster setting unless given)."""
    env.cr.execute(
        'SELECT "limit", rate_limit, rates, max_depth, depth_policy FROM queue_limit'
        " WHERE name = %s",
        [channel],
    )
    row = env.cr.fetchone()
    if row is None:
        if default_limit is None:
            default_limit = config.read(env.cr).default_limit
        return ChannelLimit(default_limit, (), False)
    limit, rate_limit, rates, max_depth, policy = row
    return ChannelLimit(
        int(limit), channel_windows(rates, rate_limit), True, int(max_depth or 0), policy or "raise"
    )


def _depth_bound(env: Environment, channel: str, rules: ChannelLimit) -> Reason | None:
    """``depth_full`` when ``channel`` holds as many jobs waiting or pending as its
    ``max_depth`` (counted up to the bound, never further)."""
    if not rules.max_depth:
        return None
    max_depth, policy = rules.max_depth, rules.depth_policy
    env.cr.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM queue_job WHERE channel = %s"
        " AND state IN ('waiting', 'pending') LIMIT %s) queued",
        [channel, max_depth],
    )
    depth = int(env.cr.fetchone()[0])  # type: ignore[index]
    if depth < max_depth:
        return None
    what = "refused (ChannelFullError)" if policy != "skip" else "skipped and counted"
    return Reason(
        "depth_full",
        f"channel {channel} is full: {depth} of {max_depth} waiting or pending;"
        f" new enqueues into it are {what}",
        {"channel": channel, "depth": depth, "max_depth": max_depth, "depth_policy": policy},
    )


def live_workers(
    env: Environment, now: datetime, stale_seconds: float | None = None
) -> list[dict[str, Any]]:
    """Workers that are not stopped and sent a heartbeat within the stale window (the
    ``stale_seconds`` cluster setting unless given)."""
    if stale_seconds is None:
        stale_seconds = config.read(env.cr).stale_seconds
    env.cr.execute(
        "SELECT worker_id, channels, heartbeat FROM queue_worker"
        " WHERE stopped_at IS NULL AND heartbeat >= %s ORDER BY heartbeat DESC",
        [now - timedelta(seconds=stale_seconds)],
    )
    return env.cr.dictfetchall()


def worker_serves(channels: str | None, channel: str) -> bool:
    """Whether a worker started with ``channels`` (comma or space separated; empty = all)
    takes jobs of ``channel``."""
    names = [c for c in (channels or "").replace(",", " ").split() if c]
    return not names or channel in names


def explain(
    env: Environment,
    job_id: int,
    *,
    now: datetime | None = None,
    stale_seconds: float | None = None,
    default_limit: int | None = None,
    only_user_id: int | None = None,
) -> list[Reason]:
    """Every reason that holds for job ``job_id``, most decisive first.

    ``stale_seconds`` and ``default_limit`` are the cluster settings unless given.
    With ``only_user_id``, other jobs (parents) of another user are told
    without their id or description. Raises ``KeyError`` when the job does not
    exist.
    """
    now = now or Datetime.now()
    cr = env.cr
    if stale_seconds is None or default_limit is None:
        settings = config.read(cr)
        stale_seconds = settings.stale_seconds if stale_seconds is None else stale_seconds
        default_limit = settings.default_limit if default_limit is None else default_limit
    cr.execute(
        "SELECT id, state, channel, priority, scheduled_at, attempts, max_retries, exc_name,"
        " worker_id, heartbeat, started_at, completed_at, cancelled_at, cron_id, cron_occurrence,"
        " weight, fair_key"
        " FROM queue_job WHERE id = %s",
        [job_id],
    )
    job = cr.dictfetchone()
    if job is None:
        raise KeyError(f"no queue.job with id {job_id}")
    state = job["state"]
    if state in TERMINAL:
        moment = _dt(job["cancelled_at"] if state == JobState.CANCELLED else job["completed_at"])
        when = f" at {_when(moment, now)}" if moment else ""
        reasons = [
            Reason(
                "finished",
                f"job {job_id} is {state}{when}: it will not run again unless requeued",
                {"state": state},
            )
        ]
    elif state == JobState.STARTED:
        reasons = _explain_started(job, now, stale_seconds)
    elif state == JobState.WAITING:
        reasons = _explain_waiting(env, job, only_user_id)
    else:
        reasons = _explain_pending(env, job, now, stale_seconds, default_limit)
    if job["cron_id"]:
        reasons.append(_periodic(env, job))
    return reasons


def _periodic(env: Environment, job: dict[str, Any]) -> Reason:
    """Which occurrence of which periodic job this job is (said last: it is where the
    job comes from, not what holds it back)."""
    cron = env["queue.cron"].browse(job["cron_id"])
    occurrence = _dt(job["cron_occurrence"])
    details = {
        "cron_id": cron.id,
        "cron_name": cron.name,
        "occurrence": occurrence.isoformat() if occurrence else None,
    }
    if occurrence is None:
        which = "was enqueued by hand (run now), outside the schedule of"
    else:
        which = f"is the occurrence of {occurrence:%Y-%m-%d %H:%M:%S} UTC of"
    return Reason(
        "periodic", f"job {job['id']} {which} periodic job {cron.id} ({cron.name})", details
    )


def _explain_started(job: dict[str, Any], now: datetime, stale_seconds: float) -> list[Reason]:
    heartbeat = _dt(job["heartbeat"]) or _dt(job["started_at"])
    started = _dt(job["started_at"])
    since = f" since {_when(started, now)}" if started else ""
    reasons = [
        Reason(
            "running",
            f"job {job['id']} is running on worker {job['worker_id'] or '(in process)'}{since}",
            {"worker_id": job["worker_id"]},
        )
    ]
    if heartbeat and (now - heartbeat).total_seconds() > stale_seconds:
        age = (now - heartbeat).total_seconds()
        reasons.insert(
            0,
            Reason(
                "stale_heartbeat",
                f"its worker sent no heartbeat for {duration_text(age)} (stale after {stale_seconds:.0f} s):"
                " the job is reclaimed by the next maintenance pass",
                {"heartbeat_age": round(age, 1)},
            ),
        )
    return reasons


def _explain_waiting(
    env: Environment, job: dict[str, Any], only_user_id: int | None
) -> list[Reason]:
    env.cr.execute(
        "SELECT p.id, p.state, p.name, p.model_name, p.method_name, p.user_id, d.kind"
        " FROM queue_job_dependency d"
        " JOIN queue_job p ON p.id = d.parent_id WHERE d.job_id = %s ORDER BY p.id",
        [job["id"]],
    )
    parents = env.cr.dictfetchall()
    unfinished = [p for p in parents if p["state"] in ACTIVE]
    if not unfinished:
        return [
            Reason(
                "waiting_parents",
                f"job {job['id']} is waiting but its parents are all finished:"
                " the next state change of the graph decides it",
                {"parents": []},
            )
        ]
    parts = []
    shown = []
    for parent in unfinished:
        need = "to fail" if parent["kind"] == "error" else "to be done"
        if only_user_id is not None and parent["user_id"] != only_user_id:
            parts.append(f"a job of another user ({parent['state']}) {need}")
            continue
        label = parent["name"] or f"{parent['model_name']}.{parent['method_name']}"
        parts.append(f"job {parent['id']} ({label}, {parent['state']}) {need}")
        shown.append(parent["id"])
    return [
        Reason(
            "waiting_parents",
            f"job {job['id']} is waiting on {len(unfinished)} parent(s): " + "; ".join(parts),
            {"parents": shown},
        )
    ]


def _explain_pending(
    env: Environment, job: dict[str, Any], now: datetime, stale_seconds: float, default_limit: int
) -> list[Reason]:
    cr = env.cr
    reasons: list[Reason] = []
    channel = job["channel"]
    due = _dt(job["scheduled_at"])
    if due and due > now:
        if job["attempts"]:
            reasons.append(
                Reason(
                    "retry_backoff",
                    f"attempt {job['attempts']} failed ({job['exc_name'] or 'error'}): retry backoff"
                    f" until {_when(due, now)}",
                    {"until": due.isoformat(), "attempts": job["attempts"]},
                )
            )
        else:
            reasons.append(
                Reason("scheduled", f"scheduled for {_when(due, now)}", {"until": due.isoformat()})
            )

    backoff = env["queue.channel"].active_backoffs(now).get(channel)
    if backoff is not None:
        reasons.insert(0, _channel_backoff(channel, backoff, now))

    rules = channel_limit(env, channel, default_limit)
    limit, windows, configured = rules.limit, rules.windows, rules.configured
    source = "its queue.limit" if configured else "the default limit, no queue.limit row"
    if limit == 0:
        reasons.append(
            Reason(
                "channel_paused", f"channel {channel!r} is paused (limit 0)", {"channel": channel}
            )
        )
    else:
        cr.execute(
            "SELECT id, weight FROM queue_job WHERE state = 'started' AND channel = %s"
            " ORDER BY id LIMIT %s",
            [channel, limit + 1],
        )
        running = cr.fetchall()
        used = sum(weight for _id, weight in running)
        if used + job["weight"] > limit:
            shown = ", ".join(str(i) for i, _weight in running[:10])
            taken = (
                f"{len(running)} of {limit} running"
                if used == len(running) and job["weight"] == 1
                else f"running jobs weigh {used} of {limit}, this one {job['weight']}"
            )
            reasons.append(
                Reason(
                    "channel_full",
                    f"channel {channel!r} is at its limit: {taken} ({source}); running: {shown}",
                    {"channel": channel, "limit": limit, "running": len(running), "weight": used},
                )
            )
    weight = int(job.get("weight") or 1)
    if limit and weight > limit:
        reasons.insert(
            0,
            Reason(
                "weight_never_fits",
                f"weight {weight} never fits in limit {limit} of channel {channel!r} ({source}):"
                " the job cannot start until the limit is raised",
                {"channel": channel, "weight": weight, "limit": limit},
            ),
        )
    bound = _depth_bound(env, channel, rules)
    if bound is not None:
        reasons.append(bound)
    if windows:
        reason = _rate_limited(env, channel, windows, now)
        if reason is not None:
            reasons.append(reason)

    workers = live_workers(env, now, stale_seconds)
    if not workers:
        reasons.append(_no_worker(env, now, stale_seconds))
    elif not any(worker_serves(w["channels"], channel) for w in workers):
        reasons.append(
            Reason(
                "no_worker",
                f"no live worker takes channel {channel!r} ({len(workers)} live worker(s) serve other channels)",
                {"workers": len(workers)},
            )
        )

    if not (due and due > now):
        fair = _fair_cursor(env, channel)
        # in a fair channel, jobs of the job's own priority take turns (fair_turn)
        same_priority = (
            ""
            if fair is not None
            else (" OR (priority = %s AND (scheduled_at < %s OR (scheduled_at = %s AND id < %s)))")
        )
        params = [] if fair is not None else [
            job["priority"], job["scheduled_at"], job["scheduled_at"], job["id"]
        ]  # fmt: skip
        cr.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM queue_job WHERE state = 'pending' AND channel = %s"
            f" AND scheduled_at <= %s AND (priority < %s{same_priority}) LIMIT %s) ahead",
            [channel, now, job["priority"], *params, AHEAD_CAP],
        )
        ahead = cr.fetchone()[0]  # type: ignore[index]
        if ahead:
            shown = f"{AHEAD_CAP}+" if ahead >= AHEAD_CAP else str(ahead)
            why = (
                "lower priority number"
                if fair is not None
                else "lower priority number or due earlier"
            )
            reasons.append(
                Reason(
                    "queued_behind",
                    f"{shown} due job(s) of channel {channel!r} come first ({why})",
                    {"ahead": ahead},
                )
            )
        if fair is not None:
            turn = _fair_turn(env, job, fair, now)
            if turn is not None:
                reasons.append(turn)
    if not reasons:
        reasons.append(
            Reason(
                "ready",
                f"ready: a worker picks it up at its next free slot in channel {channel!r}",
                {},
            )
        )
    return reasons


def _fair_cursor(env: Environment, channel: str) -> tuple[str | None, int] | None:
    """Where the rotation of ``channel``'s fair keys stands (the key that had its last
    turn, '' when none did, and the jobs of that turn: 0 when it is over), or None when
    the channel has no pending job with a fair key (its jobs do not take turns)."""
    env.cr.execute(
        "SELECT 1 FROM queue_job WHERE state = 'pending' AND channel = %s AND fair_key <> ''"
        " LIMIT 1",
        [channel],
    )
    if env.cr.fetchone() is None:
        return None
    env.cr.execute("SELECT fair_cursor, fair_turn FROM queue_channel WHERE name = %s", [channel])
    row = env.cr.fetchone()
    return (row[0], int(row[1] or 0)) if row else (None, 0)


def _plural(count: int | str, noun: str) -> str:
    return f"{count} {noun}" if count in (1, "1") else f"{count} {noun}s"


def _fair_turn(
    env: Environment, job: dict[str, Any], cursor: tuple[str | None, int], now: datetime
) -> Reason | None:
    """``fair_turn``: the other keys with due jobs at the job's priority that the
    rotation serves before its key, and the due jobs of its own key ahead of it (both
    counted with a bound)."""
    cr = env.cr
    channel, priority, key = job["channel"], job["priority"], job["fair_key"] or ""
    keys, more = job_store(cr.backend).fair_keys_ahead(
        cr, channel, priority, now, cursor=(cursor[0] or "", cursor[1]), key=key, walk=FAIR_KEYS_CAP
    )
    cr.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM queue_job WHERE state = 'pending' AND channel = %s"
        " AND priority = %s AND fair_key = %s AND scheduled_at <= %s AND (scheduled_at < %s"
        " OR (scheduled_at = %s AND id < %s)) LIMIT %s) own",
        [
            channel,
            priority,
            key,
            now,
            job["scheduled_at"],
            job["scheduled_at"],
            job["id"],
            AHEAD_CAP,
        ],
    )
    own = int(cr.fetchone()[0])  # type: ignore[index]
    if not keys and not own:
        return None
    keys_shown = f"{min(keys, FAIR_KEYS_CAP)}+" if more or keys >= FAIR_KEYS_CAP else str(keys)
    own_shown = f"{AHEAD_CAP}+" if own >= AHEAD_CAP else str(own)
    who = f"{key} waits" if key else "jobs without a key wait"
    whose = "its" if key else "their"
    parts = []
    if keys:
        parts.append(f"{who} {whose} turn behind {_plural(keys_shown, 'key')}")
    if own:
        own_text = (
            f"{_plural(own_shown, 'job')} of {whose} own key"
            if key
            else (f"{_plural(own_shown, 'job')} without a key")
        )
        parts.append(f"and {own_text}" if parts else f"{who} behind {own_text}")
    return Reason(
        "fair_turn",
        f"{' '.join(parts)} in channel {channel!r} (fair share at priority {priority})",
        {
            "channel": channel,
            "fair_key": key,
            "keys_ahead": keys,
            "keys_capped": more or keys >= FAIR_KEYS_CAP,
            "jobs_ahead": own,
            "last_turn": cursor[0],
        },
    )


def _channel_backoff(channel: str, backoff: Any, now: datetime) -> Reason:
    """The channel's pause (a ``ChannelBackoff`` of one of its jobs): it blocks every job
    of the channel until it ends or a manager lifts it, so it is said first."""
    until = backoff.until
    left = duration_text((until - now).total_seconds())
    reason = f": {backoff.reason}" if backoff.reason else ""
    source = f" from job {backoff.job_id}" if backoff.job_id else ""
    return Reason(
        "channel_backoff",
        f"channel {channel} backs off until {until:%H:%M:%S} UTC (in {left}){reason}{source}",
        {
            "channel": channel,
            "until": until.isoformat(),
            "reason": backoff.reason,
            "job_id": backoff.job_id,
        },
    )


def _no_worker(env: Environment, now: datetime, stale_seconds: float) -> Reason:
    """No live worker: say whether the last one stopped cleanly or went silent."""
    env.cr.execute(
        "SELECT worker_id, heartbeat, stopped_at FROM queue_worker"
        " ORDER BY COALESCE(stopped_at, heartbeat) DESC LIMIT 1"
    )
    last = env.cr.dictfetchone()
    if last is None:
        return Reason(
            "no_worker", "no worker running: no worker ever ran here", {"workers": 0, "last": None}
        )
    stopped = _dt(last["stopped_at"])
    if stopped is not None:
        return Reason(
            "no_worker",
            f"no worker running: the last one ({last['worker_id']}) stopped cleanly"
            f" at {_when(stopped, now)}",
            {"workers": 0, "last": "stopped", "worker_id": last["worker_id"]},
        )
    heartbeat = _dt(last["heartbeat"])
    seen = (
        f"last heartbeat {duration_text((now - heartbeat).total_seconds())} ago"
        if heartbeat
        else ""
    )
    return Reason(
        "no_worker",
        f"no live worker: the last one ({last['worker_id']}) went silent without stopping"
        f" ({seen}; stale after {stale_seconds:.0f} s)",
        {"workers": 0, "last": "silent", "worker_id": last["worker_id"]},
    )


def _rate_limited(
    env: Environment, channel: str, windows: tuple[RateWindow, ...], now: datetime
) -> Reason | None:
    """A rate window of the channel holds as many starts as it allows (the claim's own
    count, from the channel's start log): when its oldest start leaves it."""
    store = job_store(env.cr.backend)
    for window, used, oldest in store.window_usage(env.cr, channel, windows, now):
        if used < window.count or oldest is None:
            continue
        next_start = oldest + timedelta(seconds=window.seconds)
        return Reason(
            "rate_limited",
            f"channel {channel!r} is rate-limited: {used} start(s) within its window"
            f" {window}: its next start comes at {_when(next_start, now)}",
            {
                "channel": channel,
                "window": window.text,
                "starts": used,
                "until": next_start.isoformat(),
            },
        )
    return None
