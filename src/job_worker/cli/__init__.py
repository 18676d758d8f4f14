"""The ``job-worker`` command line: one module per command group."""

from __future__ import annotations

import click

from .demo import demo
from .main import main
from .worker import worker

main.add_command(demo)
main.add_command(worker)

__all__ = ["main"]
