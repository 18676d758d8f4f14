"""Fixtures of the worker's tests (helpers: ``worker_helpers``)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from worker_helpers import FAST_STALE_SECONDS, WorkerProcess, set_config

from job_worker import Registry


@pytest.fixture
def registry(make_registry) -> Registry:
    """The worker test app, with a short stale window; the suite's ``env`` fixture runs
    on it."""
    registry = make_registry(["workerapp"])
    set_config(registry, "stale_seconds", FAST_STALE_SECONDS)
    return registry


#: whether the test's own call failed (set by the hook below, read by ``start_worker``)
_CALL_FAILED = pytest.StashKey[bool]()

#: lines of a worker's log shown when its test failed
LOG_TAIL = 60


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture
def start_worker(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real workers on the test's database; every one is killed at the end. When
    the test failed, the end of each worker's log is printed (the report shows it)."""
    started: list[WorkerProcess] = []

    def start(*args: str, url: str | None = None, new_session: bool = False) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess(url or db_url, list(args), log, new_session)
        started.append(worker)
        return worker

    yield start
    failed = request.node.stash.get(_CALL_FAILED, False)
    for worker in started:
        worker.close()
        if failed:
            lines = worker.log_path.read_text(errors="replace").splitlines()
            print(f"--- the last {LOG_TAIL} lines of {worker.log_path.name} (pid {worker.pid}) ---")
            print("\n".join(lines[-LOG_TAIL:]))
        for pid in worker.executor_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
