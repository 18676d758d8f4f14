"""The worker: a supervisor process and a pool of executor processes (PRODUCT.md 6).

- :mod:`.supervisor`: the event loop: claims, dispatch, timeouts, signals, stop;
- :mod:`.pool` and :mod:`.executor`: the child processes that run jobs;
- :mod:`.services`: the supervisor's side of one database, as small services
  sharing a :mod:`.database` (producer, heartbeat, cluster settings, recorder,
  scheduler, maintenance under election);
- :mod:`.protocol`: the messages between the supervisor and its executors;
- the SQL it runs: :mod:`job_worker.db.jobstore`.
"""

from __future__ import annotations

from .settings import WorkerSettings
from .supervisor import Supervisor


def run_worker(settings: WorkerSettings) -> int:
    """Run a worker until it is stopped by a signal; returns the exit code."""
    return Supervisor(settings).run()


__all__ = ["Supervisor", "WorkerSettings", "run_worker"]
