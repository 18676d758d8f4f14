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


@pytest.fixture
def start_worker(db_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real workers on the test's database; every one is killed at the end."""
    started: list[WorkerProcess] = []

    def start(*args: str, url: str | None = None, new_session: bool = False) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess(url or db_url, list(args), log, new_session)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()
        for pid in worker.executor_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
