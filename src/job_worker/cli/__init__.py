"""The ``job-worker`` command line: one module per command group."""

from __future__ import annotations

import click

from .demo import demo
from .main import main

main.add_command(demo)

__all__ = ["main"]
