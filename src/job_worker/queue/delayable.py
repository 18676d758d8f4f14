"""Describing jobs before enqueueing them: delayables, groups, chains.

A :class:`Delayable` captures one method call on a recordset with its job
options. Groups (run in parallel) and chains (run in sequence) combine nodes
into a graph, and ``on_done``/``on_error`` hang dependents on any node.
``delay()`` on any node enqueues the whole graph in one go
(:mod:`job_worker.queue.enqueue`, which knows nodes only by what they answer).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..exceptions import UnknownMethodError  # also imported from here by older code
from .enqueue import enqueue_graph, new_uuid
from .options import JobOptions, job_options, validate
from .serialization import encode

if TYPE_CHECKING:
    from ..orm.models import BaseModel

_sequence = itertools.count()
_DEFAULT_OPTIONS = JobOptions()


def check_method(model: BaseModel, name: Any) -> None:
    """Refuse ``name`` unless it is a method of ``model`` that may be delayed. The
    methods found good are kept on the model's class (one per registry, whose methods
    and fields do not change): a loop of enqueues checks its method once."""
    cls = type(model)
    good = cls.__dict__.get("_delayable_methods")
    if good is not None and isinstance(name, str) and name in good:
        return
    if not isinstance(name, str) or not name:
        raise UnknownMethodError(f"a method name is a non-empty string, got {name!r}")
    if name.startswith("__"):
        raise UnknownMethodError(
            f"{model._name}.{name}: methods starting with '__' cannot be delayed"
        )
    if name in model._fields:
        raise UnknownMethodError(f"{model._name}.{name} is a field, not a method")
    attr = getattr(cls, name, None)
    if attr is None or not callable(attr) or isinstance(attr, type):
        raise UnknownMethodError(f"{model._name} has no method {name!r}")
    if good is None:
        good = cls._delayable_methods = set()  # type: ignore[attr-defined]
    good.add(name)


class Node:
    """What groups, chains and delayables have in common: edges to dependents."""

    #: one job (a :class:`Delayable`), not a group or a chain of them
    _is_job = False

    def __init__(self) -> None:
        self._sequence = next(_sequence)  # creation order: jobs are created in it
        self._on_done: list[Node] = []
        self._on_error: list[Node] = []
        self._links: list[Node] = []  # every node this one is connected to, both ways

    def _link(self, other: Node) -> None:
        self._links.append(other)
        other._links.append(self)

    def _check_nodes(self, nodes: tuple) -> None:
        for node in nodes:
            if not isinstance(node, Node):
                raise TypeError(f"expected a Delayable, group or chain, got {node!r}")
            if node is self:
                raise ValueError(f"{self!r} cannot depend on itself")

    def on_done(self, *nodes: Node) -> Node:
        """``nodes`` run once this node is done (a group: once all of it is)."""
        self._check_nodes(nodes)
        for node in nodes:
            self._on_done.append(node)
            self._link(node)
        return self

    def on_error(self, *nodes: Node) -> Node:
        """``nodes`` run if this node fails (a group: if one of its jobs fails)."""
        self._check_nodes(nodes)
        for node in nodes:
            self._on_error.append(node)
            self._link(node)
        return self

    def _replace_with(self, other: Node) -> None:
        """Put ``other`` in this node's place in its graph: its dependents (``on_done``,
        ``on_error``) follow ``other``, the nodes it depended on and the groups and
        chains it belonged to take ``other`` instead; this node is left alone."""
        other._on_done.extend(self._on_done)
        other._on_error.extend(self._on_error)
        for node in self._links:
            node._links = [other if n is self else n for n in node._links]
            node._on_done = [other if n is self else n for n in node._on_done]
            node._on_error = [other if n is self else n for n in node._on_error]
            if isinstance(node, _Container):
                node.nodes = [other if n is self else n for n in node.nodes]
        other._links.extend(self._links)
        self._on_done, self._on_error, self._links = [], [], []

    def heads(self) -> list[Delayable]:
        """The jobs that start this node."""
        raise NotImplementedError

    def tails(self) -> list[Delayable]:
        """The jobs that end this node (its dependents wait for them)."""
        raise NotImplementedError

    def _edges(self) -> Iterator[tuple[Delayable, Delayable, str]]:
        """(job, parent, kind) of the edges this node itself defines."""
        for kind, dependents in (("done", self._on_done), ("error", self._on_error)):
            for node in dependents:
                for head in node.heads():
                    for tail in self.tails():
                        yield head, tail, kind

    def _graph(self) -> list[Node]:
        seen: dict[int, Node] = {}
        todo = [self]
        while todo:
            node = todo.pop()
            if id(node) not in seen:
                seen[id(node)] = node
                todo.extend(node._links)
        return list(seen.values())

    def delay(self) -> Any:
        """Enqueue the whole graph this node belongs to, in the current transaction."""
        return enqueue_graph(self)


class Delayable(Node):
    """One method call on a recordset, with its job options.

    ``model_name``, ``method_name``, ``args``, ``kwargs`` and ``recordset``
    are what identity functions receive.
    """

    _is_job = True

    def __init__(self, recordset: BaseModel, **options: Any):
        super().__init__()
        self.recordset = recordset
        self.options = job_options(options) if options else _DEFAULT_OPTIONS
        self.method_name: str | None = None
        self.args: tuple = ()
        self.kwargs: dict[str, Any] = {}
        self._job: Any = None
        self._stored: tuple[Any, Any] = ([], {})  # args and kwargs in their stored form

    @property
    def model_name(self) -> str:
        return self.recordset._name

    def __repr__(self) -> str:
        call = f".{self.method_name}(...)" if self.method_name else ""
        return f"<Delayable {self.recordset!r}{call}>"

    def __getattr__(self, name: str) -> Callable[..., Delayable]:
        if name.startswith("__") or name in (
            "_on_done",
            "_on_error",
            "_links",
            "_job",
            "_sequence",
        ):
            raise AttributeError(name)
        check_method(self.recordset, name)
        if self.method_name is not None:
            raise ValueError(f"{self!r} already captures a call; a Delayable is one job")

        def capture(*args: Any, **kwargs: Any) -> Delayable:
            return self._capture(name, args, kwargs)

        return capture

    def _capture(self, name: str, args: tuple, kwargs: dict) -> Delayable:
        # refuse what cannot be stored now, not when the worker runs the job (no
        # arguments, the usual kwargs: nothing to refuse, and the encoding is empty)
        self._stored = (
            encode(list(args), "args") if args else [],
            encode(dict(kwargs), "kwargs") if kwargs else {},
        )
        self.method_name, self.args, self.kwargs = name, args, kwargs
        return self

    def set(self, **options: Any) -> Delayable:
        """Change job options (the same as ``with_delay()`` takes)."""
        if self._job is not None:
            raise ValueError(f"{self!r} is already enqueued as {self._job!r}")
        self.options = self.options.update(**options)
        return self

    def heads(self) -> list[Delayable]:
        return [self]

    def tails(self) -> list[Delayable]:
        return [self]

    def split(self, size: int, chain: bool = False) -> DelayableGroup | DelayableChain:
        """The same call over consecutive chunks of at most ``size`` records: a group
        (parallel) or, with ``chain=True``, a chain (sequential). The split takes this
        delayable's place in its graph: dependents attached before the split wait for
        the whole group, or for the chain's last link."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"split size must be an int >= 1, got {size!r}")
        if self.method_name is None:
            raise ValueError(f"{self!r} has no call to split: call a method on it first")
        if self._job is not None:
            raise ValueError(f"{self!r} is already enqueued as {self._job!r}: it cannot be split")
        records = self.recordset
        if not records:
            raise ValueError(
                f"cannot split {self!r}: it has no records ({records._name} recordset is empty)"
            )
        chunks = [records[i : i + size] for i in range(0, len(records), size)]
        total = len(chunks)
        base = self.options.description or f"{self.model_name}.{self.method_name}"
        key = self.options.identity_key
        nodes = []
        for i, chunk in enumerate(chunks, 1):
            options: dict[str, Any] = {"description": f"{base} (split {i}/{total})"}
            if isinstance(key, str):
                options["identity_key"] = f"{key}-{i}"
            node = Delayable(chunk)
            node.options = replace(self.options, **options)  # valid: made of valid options
            node._capture(self.method_name, self.args, self.kwargs)
            nodes.append(node)
        split = DelayableChain(*nodes) if chain else DelayableGroup(*nodes)
        self._replace_with(split)
        return split

    def job_values(self, company_ids: dict[int, int], now: datetime) -> dict[str, Any]:
        """The values of this job's row (before the model's store hook), enqueued at
        ``now``; ``company_ids`` keeps each user's company for the jobs that follow."""
        if self.method_name is None:
            raise ValueError(f"{self!r} has no call: call a method on it before delay()")
        records, opts = self.recordset, self.options
        env = records.env
        key = opts.identity_key
        if callable(key):
            key = key(self)
            if not isinstance(key, str):
                raise TypeError(
                    f"identity_key function {opts.identity_key!r} returned {key!r}, not a str"
                )
            key = key or None
        uid = env.uid
        if uid not in company_ids:
            company_ids[uid] = env.company.id
        context: dict[str, Any] = {"lang": env.lang, "tz": env.tz}
        allowed = env.context.get("allowed_company_ids")
        if allowed:
            context["allowed_company_ids"] = list(allowed)
        return {
            "uuid": new_uuid(),
            "name": opts.description or f"{records._name}.{self.method_name}",
            "model_name": records._name,
            "method_name": self.method_name,
            "record_ids": list(records._ids),
            "args": self._stored[0],
            "kwargs": self._stored[1],
            "priority": opts.priority,
            "channel": opts.channel,
            "scheduled_at": opts.eta or now,
            "max_retries": opts.max_retries,
            "timeout": float(opts.timeout),
            "weight": opts.weight,
            "fair_key": opts.fair_key or "",  # '': no key (the pending index holds it)
            "identity_key": key,
            "user_id": uid,
            "company_id": allowed[0] if allowed else company_ids[uid],
            "context": context,
        }


class DelayProxy:
    """What ``with_delay()`` returns: calling a method on it enqueues the call."""

    def __init__(self, delayable: Delayable):
        self._delayable = delayable

    def __getattr__(self, name: str) -> Callable[..., Any]:
        capture = getattr(self._delayable, name)

        def enqueue(*args: Any, **kwargs: Any) -> Any:
            return capture(*args, **kwargs).delay()

        return enqueue


class _Container(Node):
    def __init__(self, *nodes: Node):
        super().__init__()
        self._check_nodes(nodes)
        if not nodes:
            raise ValueError(f"{type(self).__name__} needs at least one node")
        self.nodes = list(nodes)
        for node in nodes:
            self._link(node)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {len(self.nodes)}>"

    def set(self, **options: Any) -> _Container:
        """Set job options on every job of this group or chain."""
        validate(options)
        for node in self.nodes:
            node.set(**options)  # type: ignore[attr-defined]
        return self

    def delayables(self) -> list[Delayable]:
        result: list[Delayable] = []
        for node in self.nodes:
            result.extend(node.delayables() if isinstance(node, _Container) else [node])  # type: ignore[list-item]
        return result


class DelayableGroup(_Container):
    """Nodes that run in parallel; dependents of the group wait for all of them."""

    def heads(self) -> list[Delayable]:
        return [d for node in self.nodes for d in node.heads()]

    def tails(self) -> list[Delayable]:
        return [d for node in self.nodes for d in node.tails()]


class DelayableChain(_Container):
    """Nodes that run one after the other; a group in a chain is a barrier."""

    def heads(self) -> list[Delayable]:
        return self.nodes[0].heads()

    def tails(self) -> list[Delayable]:
        return self.nodes[-1].tails()

    def _edges(self) -> Iterator[tuple[Delayable, Delayable, str]]:
        yield from super()._edges()
        for before, after in zip(self.nodes, self.nodes[1:], strict=False):
            for head in after.heads():
                for tail in before.tails():
                    yield head, tail, "done"


def group(*nodes: Node) -> DelayableGroup:
    """Run ``nodes`` in parallel."""
    return DelayableGroup(*nodes)


def chain(*nodes: Node) -> DelayableChain:
    """Run ``nodes`` one after the other."""
    return DelayableChain(*nodes)
