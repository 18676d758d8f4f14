"""Fixtures of the chaos tests: hosts as network namespaces sharing a PostgreSQL instance
of the test's own (``lab.py``), a small tmpfs for SQLite. They need root (namespaces,
iptables, mount): elsewhere they are skipped, unless ``JOB_WORKER_REQUIRE_NETNS=1``
(CI sets it) makes that a failure."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# the worker tests' helpers (real worker processes, waiting on the database)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "worker"))

from lab import Lab, missing_tools
from worker_helpers import FAST_STALE_SECONDS, WorkerProcess, set_config

from job_worker import Registry

REQUIRE_NETNS = os.environ.get("JOB_WORKER_REQUIRE_NETNS", "") not in ("", "0")


def require_root(what: str) -> None:
    """Skip (or fail, under ``JOB_WORKER_REQUIRE_NETNS``) when this process cannot build
    ``what``: not root, or a tool missing."""
    reason = None
    if os.geteuid() != 0:
        reason = f"{what} needs root (network namespaces, iptables, mount)"
    elif missing := missing_tools():
        reason = f"{what} needs {', '.join(missing)}"
    if reason is None:
        return
    if REQUIRE_NETNS:
        pytest.fail(f"{reason}, and JOB_WORKER_REQUIRE_NETNS is set")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """Three hosts and a PostgreSQL instance of the test's own; all torn down at the end
    of the module, also when a test fails."""
    require_root("a lab of hosts")
    built = Lab.open(hosts=3)
    try:
        yield built
    finally:
        built.close()


class LabDatabase:
    """A fresh database on the lab's instance, with the worker test app."""

    def __init__(self, lab: Lab, name: str):
        assert lab.postgres is not None
        self.lab = lab
        self.name = name
        lab.postgres.create_database(name)
        self.registry = Registry(lab.postgres.url(name), ["workerapp"])
        set_config(self.registry, "stale_seconds", FAST_STALE_SECONDS)

    def url_for(self, host) -> str:
        """The database as ``host`` reaches it: over its own link."""
        assert self.lab.postgres is not None
        return self.lab.postgres.url(self.name, host.gateway)


@pytest.fixture
def lab_db(lab: Lab) -> Iterator[LabDatabase]:
    database = LabDatabase(lab, f"chaos_{uuid.uuid4().hex[:10]}")
    try:
        yield database
    finally:
        database.registry.close()
        for worker in lab.workers:
            worker.close()
        lab.workers.clear()
        for host in lab.hosts:
            if host.cut:
                host.heal()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Real workers on this machine (SQLite tests); every one is killed at the end."""
    started: list[WorkerProcess] = []

    def start(url: str, *args: str) -> WorkerProcess:
        worker = WorkerProcess(url, list(args), tmp_path / f"worker-{len(started)}.log", True)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()  # the worker leads its own group: every process of it is killed


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 12 MB tmpfs mounted in a temporary folder, unmounted at the end."""
    require_root("a small tmpfs")
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m,mode=0755", "tmpfs", str(folder)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True, timeout=30)
