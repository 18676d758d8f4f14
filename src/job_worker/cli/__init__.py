"""The ``job-worker`` command line: one module per command group."""

from __future__ import annotations

from .dashboard import dashboard
from .demo import demo
from .enqueue import enqueue
from .init import init
from .jobs import jobs
from .limits import limits
from .main import main
from .stats import stats_
from .users import users
from .vacuum import vacuum
from .worker import worker

main.add_command(demo)
main.add_command(worker)
for command in (init, jobs, limits, enqueue, stats_, vacuum, dashboard, users):
    main.add_command(command)

__all__ = ["main"]
