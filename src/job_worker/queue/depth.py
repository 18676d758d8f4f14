"""The channel rules an enqueue obeys (PRODUCT.md 12): a job's weight must fit its
channel's limit, and a channel's depth (jobs waiting or pending) stays within its
``max_depth``.

- The rules of the channels (their ``queue.limit`` rows) are read by each process at
  most every :data:`~job_worker.queue.config.REFRESH_SECONDS` (an enqueue costs no
  statement more), like the worker reads the cluster settings: a new ``max_depth``
  or limit reaches the enqueuers of every process within that many seconds, and
  those of the process that set it at once. A transaction keeps the rules it first
  used until it ends (forgotten at its end, at a rolled-back savepoint, and when
  the transaction writes a ``queue.limit`` row: then it reads them again, for itself).
- A job heavier than its channel's limit (the row's, else the cluster's
  ``default_limit``) is refused with ``ValueError``: it could never start. A limit
  of 0 (a paused channel) refuses nothing: a pause is temporary.
- Into a channel with a ``max_depth``, the enqueue first takes the channel's depth
  lock (held until its transaction ends), then counts; an enqueue that would take the
  depth over the bound raises :class:`~job_worker.exceptions.ChannelFullError`
  (policy ``raise``) or writes nothing, adds one to the channel's ``skipped`` and
  returns no job (policy ``skip``). Nothing is written before the decision and no
  statement fails, so the caller's transaction stays usable.
- A graph is admitted or refused whole: its jobs are counted per channel, and if one
  of its channels has no room for them, none of the graph is written (``raise``
  wins over ``skip`` when several channels are full; each full ``skip`` channel
  counts one skipped enqueue).
- The count is taken before the insert: a job whose identity key matches an active
  job's (and which would not add a row) still needs room in a full channel.
"""

from __future__ import annotations

import math
import time
import weakref
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..db.jobstore import ChannelRules, job_store
from ..exceptions import ChannelFullError
from . import config

if TYPE_CHECKING:
    from ..db import Cursor

#: the key of the rules read in a transaction, in ``cr.transaction_cache``
_RULES_KEY = "queue.limit.rules"


#: the transaction wrote a queue.limit row: its rules are its own, never shared
_OWN_KEY = "queue.limit.rules.own"

#: per database (its backend): when the rules were read, and the rules of every
#: channel with a queue.limit row
_SNAPSHOTS: weakref.WeakKeyDictionary[Any, tuple[float, dict[str, ChannelRules]]] = (
    weakref.WeakKeyDictionary()
)


def forget_channel_rules(cr: Cursor) -> None:
    """The transaction changed a ``queue.limit`` row: it reads the rules again (and so
    does the process, once the change may have committed)."""
    cr.transaction_cache.pop(_RULES_KEY, None)
    cr.transaction_cache[_OWN_KEY] = True
    _SNAPSHOTS.pop(cr.backend, None)


def channel_rules(cr: Cursor, channels: list[str]) -> dict[str, ChannelRules | None]:
    """The rules of ``channels`` (None: no ``queue.limit`` row): the process's snapshot,
    read again when older than ``REFRESH_SECONDS``, kept for the transaction."""
    known = _known_rules(cr)
    return {channel: known.get(channel) for channel in channels}


def _known_rules(cr: Cursor) -> dict[str, ChannelRules]:
    """The rules of every channel with a ``queue.limit`` row, for this transaction."""
    known: dict[str, ChannelRules] | None = cr.transaction_cache.get(_RULES_KEY)
    if known is None:
        if cr.transaction_cache.get(_OWN_KEY):
            known = job_store(cr.backend).channel_rules(cr)
        else:
            read_at, known = _SNAPSHOTS.get(cr.backend, (-math.inf, {}))
            if time.monotonic() - read_at > config.REFRESH_SECONDS:
                known = job_store(cr.backend).channel_rules(cr)
                _SNAPSHOTS[cr.backend] = (time.monotonic(), known)
        cr.transaction_cache[_RULES_KEY] = known
    return known


@dataclass(frozen=True)
class Full:
    """A channel without room for the jobs of an enqueue."""

    channel: str
    depth: int
    max_depth: int
    wanted: int
    policy: str


def admit(cr: Cursor, vals_list: list[dict[str, Any]]) -> bool:
    """Whether the jobs of one enqueue (``vals_list``, what their rows will hold) may
    be written: raises ``ValueError`` for a job too heavy for its channel and
    :class:`ChannelFullError` for a full channel of policy ``raise``; false (the
    skip counted) when a full channel's policy is ``skip``."""
    if len(vals_list) == 1:  # one job (an enqueue in a loop): no counting to do
        vals = vals_list[0]
        rule = _known_rules(cr).get(vals["channel"])
        if (rule is None or not rule.max_depth) and (vals.get("weight") or 1) == 1:
            return True
    channels = list(dict.fromkeys(vals["channel"] for vals in vals_list))
    rules = channel_rules(cr, channels)
    _check_weights(cr, vals_list, rules)
    wanted = Counter(
        vals["channel"] for vals in vals_list if (rule := rules[vals["channel"]]) and rule.max_depth
    )
    if not wanted:
        return True
    store = job_store(cr.backend)
    full: list[Full] = []
    for channel in sorted(wanted):  # one order of locks for every enqueue of a graph
        rule = rules[channel]
        assert rule is not None
        depth = store.lock_depth(cr, channel)
        if depth + wanted[channel] > rule.max_depth:
            full.append(Full(channel, depth, rule.max_depth, wanted[channel], rule.depth_policy))
    if not full:
        return True
    refused = next((f for f in full if f.policy != "skip"), None)
    if refused is not None:
        raise ChannelFullError(refused.channel, refused.depth, refused.max_depth, refused.wanted)
    for f in full:
        store.count_skipped(cr, f.channel)
    cr.cache.get("queue.limit", {}).pop("skipped", None)  # written in SQL: read it again
    return False


def bounded(cr: Cursor, channels: Iterable[str]) -> bool:
    """Whether one of ``channels`` has a ``max_depth`` (the rules are read once per
    transaction: :func:`admit` uses the same)."""
    known = _known_rules(cr)
    if not known:  # no queue.limit row at all
        return False
    for channel in channels:
        rule = known.get(channel)
        if rule is not None and rule.max_depth:
            return True
    return False


def _check_weights(
    cr: Cursor, vals_list: list[dict[str, Any]], rules: dict[str, ChannelRules | None]
) -> None:
    default_limit: int | None = None
    for vals in vals_list:
        weight = vals.get("weight") or 1
        if weight == 1:
            continue
        channel = vals["channel"]
        rule = rules[channel]
        if rule is not None:
            limit = rule.limit
        else:
            if default_limit is None:
                default_limit = config.read(cr).default_limit
            limit = default_limit
        if limit and weight > limit:
            raise ValueError(
                f"{vals.get('name') or 'job'}: weight {weight} never fits in channel "
                f"{channel}'s limit {limit}: lower the weight or raise the limit "
                "(job-worker limits set)"
            )
