"""Turning a graph of delayables into job rows and edge rows, in one go.

The graph's nodes (:mod:`job_worker.queue.delayable`) call :func:`enqueue_graph`
on ``delay()``; this module reads them through what they answer (their jobs,
edges and links), never by their class, so it does not import them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from ..db.jobstore import notify_jobs_enqueued
from ..orm.fields import INT_MAX, Datetime, short_repr
from .depth import admit, bounded
from .lifecycle import JobState
from .options import STORED_CHECKS, check_identity_key, check_text

if TYPE_CHECKING:
    from .delayable import Delayable, Node

#: in a cursor's ``transaction_cache``: the workers will be woken at its commit
_NOTIFIED_KEY = "queue.job.notified"

#: keys of the job values that ``_job_store_values`` may not change
PROTECTED_KEYS = ("model_name", "method_name", "record_ids", "args", "kwargs", "state", "uuid")

_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


#: random bytes read from the system at once, per thread: 256 UUIDs a system call
_RANDOM_READ = 4096
_random = threading.local()


def _forget_random() -> None:
    """A forked child reads its own: the parent's bytes would give both the same UUIDs."""
    global _random
    _random = threading.local()


os.register_at_fork(after_in_child=_forget_random)


def new_uuid() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` gives it, made in a
    quarter of the time: every job gets one. The bytes are the system's
    (``os.urandom``), read 4 KiB at a time by each thread."""
    local = _random
    at = getattr(local, "at", 2 * _RANDOM_READ)
    if at >= 2 * _RANDOM_READ:
        local.text, at = os.urandom(_RANDOM_READ).hex(), 0
    local.at = at + 32
    h = local.text[at : at + 32]
    # the version digit is 4; the variant's two high bits are 10 (RFC 4122)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:]}"


_NO_DELAY = "QUEUE_JOB__NO_DELAY"
#: the dict behind ``os.environ`` (encoded names and values), which it keeps up to date
#: (CPython's; None on a Python without it), and the variable's name as a key of it
_ENVIRON_DATA = getattr(os.environ, "_data", None)
_NO_DELAY_KEY = getattr(os.environ, "encodekey", str)(_NO_DELAY)


def sync_mode(env: Any) -> bool:
    """Whether jobs run at once: QUEUE_JOB__NO_DELAY set (not '0') or the context key.

    The variable is read at every enqueue: it may be set or unset at any time, within
    a transaction too. ``os.environ.get`` raises and catches a ``KeyError`` for a
    missing variable (the usual case), which costs more than the rest of this check:
    its absence is seen in the dict behind ``os.environ`` instead."""
    maybe_set = _ENVIRON_DATA is None or _NO_DELAY_KEY in _ENVIRON_DATA
    if maybe_set and os.environ.get(_NO_DELAY, "") not in ("", "0"):
        return True
    return bool(env.context.get("queue_job__no_delay"))


def _collect(root: Node) -> tuple[list[Delayable], list[tuple[Delayable, Delayable, str]]]:
    if root._is_job and not root._links:  # one job, no graph
        return [root], []  # type: ignore[list-item]
    nodes = root._graph()
    delayables: list[Delayable] = sorted(
        (n for n in nodes if n._is_job),  # type: ignore[misc]
        key=lambda d: d._sequence,
    )
    edges: dict[tuple[int, int], tuple[Delayable, Delayable, str]] = {}
    for node in nodes:
        for job, parent, kind in node._edges():
            key = (id(job), id(parent))
            if key in edges and edges[key][2] != kind:
                raise ValueError(f"{job!r} depends on {parent!r} both on done and on error")
            edges[key] = (job, parent, kind)
    _check_acyclic(delayables, list(edges.values()))
    return delayables, list(edges.values())


def _check_acyclic(
    delayables: list[Delayable], edges: list[tuple[Delayable, Delayable, str]]
) -> None:
    """Refuse a graph where a job would wait for itself (Kahn's algorithm)."""
    waiting_on = {id(d): 0 for d in delayables}
    dependents: dict[int, list[Delayable]] = {id(d): [] for d in delayables}
    for job, parent, _kind in edges:
        waiting_on[id(job)] += 1
        dependents[id(parent)].append(job)
    ready = [d for d in delayables if waiting_on[id(d)] == 0]
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for job in dependents[id(node)]:
            waiting_on[id(job)] -= 1
            if waiting_on[id(job)] == 0:
                ready.append(job)
    if seen != len(delayables):
        stuck = next(d for d in delayables if waiting_on[id(d)] > 0)
        raise ValueError(f"the job graph has a cycle through {stuck!r}")


def _check_values(values: dict[str, Any]) -> None:
    """Refuse what the options did not check: record ids a table cannot hold, the
    result of an identity key function, text of the caller's context."""
    ids = values["record_ids"]
    if ids and not (min(ids) > 0 and max(ids) <= INT_MAX):
        bad = next(i for i in ids if not 0 < i <= INT_MAX)
        raise ValueError(f"record ids must be from 1 to {INT_MAX}, got {short_repr(bad)}")
    if values["identity_key"] is not None:
        check_identity_key(values["identity_key"])
    context = values["context"]
    for name in ("lang", "tz"):
        if isinstance(context.get(name), str):
            check_text(context[name], f"context {name}")


def _store_values(delayable: Delayable, values: dict[str, Any]) -> dict[str, Any]:
    """Apply the target model's ``_job_store_values`` hook, refusing changes to the
    call; the options it sets are checked like options."""
    records = delayable.recordset
    if records._job_store_values_is_default():
        return values  # stored as they are
    result = records._job_store_values(dict(values))
    if not isinstance(result, dict):
        raise TypeError(f"{records._name}._job_store_values() must return a dict, got {result!r}")
    changed = [k for k in PROTECTED_KEYS if result.get(k) != values.get(k)]
    if changed:
        raise ValueError(
            f"{records._name}._job_store_values() may not change {', '.join(changed)}: "
            "they define the call the job makes"
        )
    for key, check in STORED_CHECKS.items():
        if key in result and result[key] is not values.get(key):
            try:
                check(result[key])
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{records._name}._job_store_values() set {key}: {exc}") from None
    if result.get("fair_key", "") is None:
        result["fair_key"] = ""  # no key, as the column holds it
    return result


def enqueue_graph(root: Node) -> Any:
    """Create the jobs and edges of ``root``'s graph; return ``root``'s job(s).

    Jobs with dependencies start ``waiting``; the others ``pending``. A job whose
    identity key matches an active job is not created: the graph uses the
    existing job instead (it gains the new dependents, not new parents).

    The channels' rules come first (:mod:`job_worker.queue.depth`): a job too heavy
    for its channel or a full channel refuses the whole graph, or (policy ``skip``)
    the graph is not written and an empty ``queue.job`` recordset is returned.
    """
    delayables, edges = _collect(root)
    enqueued = [d for d in delayables if d._job is not None]
    if enqueued:  # (a cheap test: most enqueues are of one job, in a loop)
        if len(enqueued) == len(delayables):
            return _result(root)
        raise ValueError("part of this job graph is already enqueued; build a new graph")
    env = delayables[0].recordset.env
    Job = env["queue.job"]
    synchronous = sync_mode(env)
    companies: dict[int, Any] = {}
    deferred = not synchronous and _deferred(env, Job, delayables, edges)
    if deferred:
        _look_up_companies(env, delayables, companies)
    now = Datetime.now()
    graph_uuid = new_uuid() if len(delayables) > 1 else None
    has_parents: Collection[int] = ()  # no edges: no job waits, none has dependents
    has_dependents: Collection[int] = ()
    if edges:
        has_parents = {id(job) for job, _parent, _kind in edges}
        has_dependents = {id(parent) for _job, parent, _kind in edges}
    vals_list, built = [], []
    for delayable in delayables:
        values = delayable.job_values(companies, now)
        state = JobState.WAITING if id(delayable) in has_parents else JobState.PENDING
        values["state"] = state.value  # the text: a record's state reads as a plain str
        values["graph_uuid"] = graph_uuid
        values["has_dependents"] = id(delayable) in has_dependents
        _check_values(values)
        built.append(values)
        vals_list.append(_store_values(delayable, values))
    if not admit(env.cr, vals_list):  # a full channel whose policy is skip: nothing written
        return Job.browse(())
    # the rows of a plain enqueue are written with the transaction's next statement or
    # at commit, together; a graph's edges, a bounded channel's count and a synchronous
    # run want them at once
    defer = deferred or (
        env.cr.defers_inserts
        and not edges
        and not synchronous
        and not bounded(env.cr, (vals["channel"] for vals in vals_list))
    )
    jobs = Job._create_enqueued(vals_list, built, now, defer=defer)
    cache = env.cr.transaction_cache
    if not cache.get(_NOTIFIED_KEY):
        # idle workers wake up when this transaction commits (once: the wake-up is
        # forgotten with the transaction cache, when a rollback drops it)
        notify_jobs_enqueued(env.cr)
        cache[_NOTIFIED_KEY] = True
    if len(delayables) == 1 and delayables[0].recordset.env is env:
        delayables[0]._job = jobs
    else:
        for delayable, job in zip(delayables, jobs, strict=True):
            job_env = delayable.recordset.env
            delayable._job = job if job_env is env else job.with_env(job_env)
    if edges:
        _create_edges(Job, edges, vals_list)
    if synchronous:
        Job.browse(jobs._ids)._run_graph_now()
    return _result(root)


def _deferred(
    env: Any, Job: Any, delayables: list[Delayable], edges: list[tuple[Delayable, Delayable, str]]
) -> bool:
    """Whether the rows of these jobs will be written later, with the transaction's
    next statement or its commit (what :func:`enqueue_graph` and ``_create_enqueued``
    decide once the values are built), told before: no edges, no bounded channel, no
    identity key, no store hook, no override of the creation (and no synchronous run,
    which the caller knows)."""
    return (
        env.cr.defers_inserts
        and not edges
        and Job._plain_create()
        and all(
            d.options.identity_key is None and d.recordset._job_store_values_is_default()
            for d in delayables
        )
        and not bounded(env.cr, (d.options.channel for d in delayables))
    )


def _look_up_companies(env: Any, delayables: list[Delayable], companies: dict[int, Any]) -> None:
    """The companies of the users of jobs whose rows will be written later (the
    company a job runs in when its context names none: ``env.company``), where this
    transaction has not read them yet: each row's ``INSERT`` looks its user's up
    (:meth:`~job_worker.db.cursor.Cursor.lookup`), no read goes before it. Nothing is
    kept across transactions: the row takes the user's company as it is when written."""
    cr = env.cr
    known = cr.cache.get("res.users", {}).get("company_id", {})
    for delayable in delayables:
        job_env = delayable.recordset.env
        uid = job_env.uid
        if (
            uid not in companies
            and uid not in known
            and job_env.cr is cr
            and not job_env.context.get("allowed_company_ids")
            and "company" not in vars(job_env)  # env.company worked out already
        ):
            # (the transaction's lookup of this user's company, if it made one already;
            # the table is the model class's: no recordset needed)
            table = env.registry["res.users"]._table
            companies[uid] = cr.lookup(f'SELECT company_id FROM "{table}" WHERE id = %s', (uid,))


def _create_edges(
    Job: Any, edges: list[tuple[Delayable, Delayable, str]], vals_list: list[dict[str, Any]]
) -> None:
    """Store ``edges`` between the jobs just enqueued, whose values were ``vals_list``."""
    uuids = {vals["uuid"] for vals in vals_list}
    # a job whose identity key matched an active job's is that job, with its uuid:
    # it keeps the parents it has, and gains the new dependents
    edge_rows = [
        {"job_id": job._job.id, "parent_id": parent._job.id, "kind": kind}
        for job, parent, kind in edges
        if job._job.uuid in uuids
    ]
    if edge_rows:
        Job.env["queue.job.dependency"].create(edge_rows)
        reused_parents = [p._job.id for _j, p, _k in edges if p._job.uuid not in uuids]
        if reused_parents:
            Job.browse(reused_parents).write({"has_dependents": True})


def _result(root: Node) -> Any:
    if root._is_job:
        return root._job  # type: ignore[attr-defined]
    delayables = root.delayables()  # type: ignore[attr-defined]
    env = delayables[0].recordset.env
    return env["queue.job"].browse(tuple(dict.fromkeys(d._job.id for d in delayables)))
