"""Checks shared by the chaos tests: every job's effect counted in the database."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
from worker_helpers import query

from job_worker import Registry


def effects_per_job(registry: Registry) -> dict[str, int]:
    """How many effect rows each job wrote (its uuid: the effect's ``job_uuid``)."""
    rows = query(registry, "SELECT job_uuid FROM workerapp_effect")
    return dict(Counter(row[0] for row in rows))


def assert_each_job_done_once(registry: Registry, total: int) -> None:
    """Every job ``done``, and each one's effect committed exactly once: a count, not a
    unique index, so that a double would show."""
    states = dict(query(registry, "SELECT state, count(*) FROM queue_job GROUP BY state"))
    assert states == {"done": total}, states
    uuids = {row[0] for row in query(registry, "SELECT uuid FROM queue_job")}
    effects = effects_per_job(registry)
    doubled = {job: n for job, n in effects.items() if n > 1}
    assert not doubled, f"effects committed more than once: {doubled}"
    assert set(effects) == uuids, f"jobs without an effect: {uuids - set(effects)}"


def tolerant(func: Callable[[], Any]) -> Any:
    """The value of ``func()``, or None while the database is down or restarting."""
    try:
        return func()
    except psycopg.OperationalError:
        return None


def wait_quietly(seconds: float, still: Callable[[], bool] = lambda: True) -> None:
    """Let ``seconds`` pass while ``still()`` holds: the length of an outage, which is the
    scenario itself (not a synchronisation)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and still():
        time.sleep(0.2)
