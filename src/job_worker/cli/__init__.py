"""The ``job-worker`` command line: one module per command group, imported on use."""

from __future__ import annotations

from .main import main

COMMANDS = {
    "config": "config:config",
    "cron": "cron:cron",
    "dashboard": "dashboard:dashboard",
    "demo": "demo:demo",
    "enqueue": "enqueue:enqueue",
    "init": "init:init",
    "jobs": "jobs:jobs",
    "limits": "limits:limits",
    "stats": "stats:stats_",
    "users": "users:users",
    "vacuum": "vacuum:vacuum",
    "worker": "worker:worker",
}
for _name, _target in COMMANDS.items():
    main.add_lazy(_name, f"{__name__}.{_target}")

__all__ = ["main"]
