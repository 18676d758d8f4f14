"""The package's import structure: no cycles, and importing has no side effects.

How the graph is built (``_graph``): every module of ``src/job_worker`` is parsed
with :mod:`ast`; each ``import`` / ``from ... import`` of a project module, at
module level or inside a function, is an edge from the importing module to the
module named. Relative imports are resolved against the importing module.
Imports under ``if TYPE_CHECKING:`` are not edges: they never run.

Package ``__init__`` modules follow one rule. ``from job_worker.db import
Cursor`` is an edge to the package ``job_worker.db`` (its ``__init__``: the
reader goes there to find the name), while ``from job_worker.queue import
states`` names a submodule and is an edge to ``job_worker.queue.states``. The
parent packages Python imports implicitly before a submodule are not edges:
that is the import machinery, not something the code asks for. So a cycle
through an ``__init__`` is counted only when it is real: a module imports a
name from its package's façade while that façade (directly or not) imports
the module; the fix is to import the name from the module that defines it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "job_worker"

#: the cycle among the job-store modules is being taken apart on its own, and worker/
#: is being restructured as a whole: a cycle wholly inside either is not failed here
#: (remove the entry once that work has landed)
_PENDING = (
    ("job_worker.db.jobstore", "job_worker.db.jobstore_postgres", "job_worker.db.jobstore_sqlite"),
    ("job_worker.worker",),
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: nothing under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:
                    visit_stmt(stmt)
                continue
            visit_stmt(child)

    def visit_stmt(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        visit(node)

    visit(tree)
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = _resolve(name, is_package, node)
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                    for alias in node.names
                ]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _tangles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan): the
    groups of modules each of which imports every other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A path from the component's first module back to itself, for the message."""
    start = min(component)
    paths = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                todo.append(nxt)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def _pending(tangle: list[str]) -> bool:
    return any(all(m.startswith(prefixes) for m in tangle) for prefixes in _PENDING)


def test_the_graph_sees_imports_the_way_python_runs_them():
    graph = _graph()
    # relative, function-level and package-name imports are edges...
    assert "job_worker.db.sqlite" in graph["job_worker.db"]  # inside connect()
    assert "job_worker.db.backend" in graph["job_worker.db.sqlite"]
    # ...and the TYPE_CHECKING ones are not
    assert "job_worker.db" not in graph["job_worker.db.cursor"]
    tiny = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set(), "e": {"a"}}
    assert _tangles(tiny) == [["a", "b", "c"]]
    assert _one_cycle(tiny, {"a", "b", "c"}) == ["a", "b", "c", "a"]


def test_no_module_imports_itself_back_through_another():
    graph = _graph()
    tangles = [tangle for tangle in _tangles(graph) if not _pending(tangle)]
    shown = [
        f"{' -> '.join(_one_cycle(graph, set(tangle)))}  (modules in the tangle: {', '.join(tangle)})"
        for tangle in tangles
    ]
    assert not tangles, "import cycles:\n" + "\n".join(shown)


def test_job_worker_builds_its_registries_with_its_own_modules():
    """The record runtime's Registry loads no queue: every part of job_worker that
    builds a registry (CLI, worker, dashboard) takes job_worker.registry's."""
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        if name.startswith(f"{ROOT}.orm") or name == f"{ROOT}.registry":
            continue
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and any(a.name == "Registry" for a in node.names):
                source = _resolve(name, is_package, node)
                if source in (f"{ROOT}.orm", f"{ROOT}.orm.registry"):
                    wrong.append(f"{name} (line {node.lineno})")
    assert not wrong, "these modules build the ORM's bare Registry: " + ", ".join(wrong)


_SNAPSHOT = """
import asyncio, atexit, copyreg, faulthandler, json, logging, mimetypes, os, signal
import socket, sqlite3, sys, threading, warnings

def snapshot():
    return {
        "sqlite3.adapters": sorted(map(repr, sqlite3.adapters.items())),
        "sqlite3.converters": sorted(map(repr, sqlite3.converters.items())),
        "copyreg.dispatch_table": sorted(map(repr, copyreg.dispatch_table.items())),
        "warnings.filters": [repr(f) for f in warnings.filters],
        "logging.root": [logging.root.level, [repr(h) for h in logging.root.handlers]],
        "logging.disable": logging.root.manager.disable,
        "logging.logger_class": repr(logging.getLoggerClass()),
        "logging.levels": sorted(logging.getLevelNamesMapping()),
        "signals": {s.name: repr(signal.getsignal(s)) for s in signal.valid_signals()
                    if isinstance(s, signal.Signals)},
        "os.environ": sorted(os.environ.items()),
        "cwd": os.getcwd(),
        "umask": os.umask(os.umask(0o022)),
        "sys.path": list(sys.path),
        "sys.meta_path": [repr(f) for f in sys.meta_path],
        "sys.excepthook": repr(sys.excepthook),
        "sys.recursionlimit": sys.getrecursionlimit(),
        "sys.switchinterval": sys.getswitchinterval(),
        "threads": sorted(t.name for t in threading.enumerate()),
        "threading.excepthook": repr(threading.excepthook),
        "atexit": atexit._ncallbacks(),
        "faulthandler": faulthandler.is_enabled(),
        "socket.timeout": socket.getdefaulttimeout(),
        "mimetypes.inited": mimetypes.inited,
        "asyncio.policy": repr(type(asyncio.get_event_loop_policy())),
        "json.encoder": repr(json._default_encoder.__dict__),
    }

import importlib
for name in sys.argv[2:]:  # what the project imports from outside: its effects aside
    importlib.import_module(name)
before = snapshot()
for name in sys.argv[1].split(","):
    importlib.import_module(name)
print(json.dumps({"before": before, "after": snapshot()}))
"""


def _outside(modules: dict[str, Path]) -> list[str]:
    """The modules outside the project (standard library included) that the project's
    modules import at module level: imported before the first look, so that what
    they do when imported (``multiprocessing`` registers an exit handler) is not
    counted against the project."""
    names = set()
    for path in modules.values():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module)
    return sorted(n for n in names if n.split(".")[0] not in (ROOT, "__future__"))


@pytest.mark.timeout(60)
def test_importing_the_package_and_every_module_changes_no_global_state():
    modules = _modules()
    order = [ROOT, *sorted(m for m in modules if m != ROOT)]
    done = subprocess.run(
        [sys.executable, "-c", _SNAPSHOT, ",".join(order), *_outside(modules)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    states = json.loads(done.stdout)
    changed = {
        key: (value, states["after"][key])
        for key, value in states["before"].items()
        if states["after"][key] != value
    }
    assert not changed, f"importing job_worker changed global state: {changed}"
    assert states["after"]["sqlite3.adapters"] == states["before"]["sqlite3.adapters"]
