"""The root command and the options every command shares."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from .. import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="job-worker")
def main() -> None:
    """job_worker: background jobs in your application's own database."""


def split_modules(values: tuple[str, ...]) -> list[str]:
    """``--load a,b --load c`` and ``JOB_WORKER_LOAD="a b"`` give [a, b, c]."""
    modules: list[str] = []
    for value in values:
        modules.extend(part for part in value.replace(",", " ").split() if part)
    return modules


def database_options(default_url: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--database`` (or JOB_WORKER_DATABASE_URL) and ``--load`` (or JOB_WORKER_LOAD)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @click.option(
            "--database", "-d", "database", envvar="JOB_WORKER_DATABASE_URL",
            default=default_url, required=default_url is None, show_default=True,
            help="Database URL: sqlite:///file.db or postgresql://user@host/db.",
        )
        @click.option(
            "--load", "-l", "load", multiple=True, envvar="JOB_WORKER_LOAD",
            help="Python module(s) with your models, comma separated or repeated.",
        )
        @functools.wraps(func)
        def wrapper(*args: Any, load: tuple[str, ...], **kwargs: Any) -> Any:
            return func(*args, load=split_modules(load), **kwargs)

        return wrapper

    return decorate
