"""The root command and the options every command shares."""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from .. import __version__
from ..exceptions import DatabaseOpenError
from ..registry import Registry


class LazyGroup(click.Group):
    """A group whose commands are imported when used: ``job-worker jobs list`` does not
    pay for importing the dashboard or the worker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, str] = {}  # command name -> "module:attribute"

    def add_lazy(self, name: str, target: str) -> None:
        self.lazy[name] = target

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a database that cannot be opened is one line on stderr
        (exit 1), not a traceback."""
        try:
            return super().invoke(ctx)
        except DatabaseOpenError as exc:
            fail(str(exc))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="job-worker")
def main() -> None:
    """job_worker: background jobs in your application's own database."""
    import_from_current_folder()


def import_from_current_folder() -> None:
    """Put the current folder first on the import path, as ``python -m`` does, so that
    ``--load crm`` finds ``crm.py`` where the command runs (the ``job-worker`` script
    itself only has its own folder there). ``python -P`` / PYTHONSAFEPATH opts out."""
    if sys.flags.safe_path:
        return
    cwd = os.getcwd()
    if not any(entry in ("", ".", cwd) for entry in sys.path):
        sys.path.insert(0, cwd)


def split_modules(values: tuple[str, ...]) -> list[str]:
    """``--load a,b --load c`` and ``JOB_WORKER_LOAD="a b"`` give [a, b, c]."""
    modules: list[str] = []
    for value in values:
        modules.extend(part for part in value.replace(",", " ").split() if part)
    return modules


def database_options(
    default_url: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--database`` (or JOB_WORKER_DATABASE_URL) and ``--load`` (or JOB_WORKER_LOAD)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @click.option(
            "--database",
            "-d",
            "database",
            envvar="JOB_WORKER_DATABASE_URL",
            default=default_url,
            required=default_url is None,
            show_default=True,
            help="Database URL: sqlite:///file.db or postgresql://user@host/db.",
        )
        @click.option(
            "--load",
            "-l",
            "load",
            multiple=True,
            envvar="JOB_WORKER_LOAD",
            help="Python module(s) with your models, comma separated or repeated.",
        )
        @functools.wraps(func)
        def wrapper(*args: Any, load: tuple[str, ...], **kwargs: Any) -> Any:
            return func(*args, load=split_modules(load), **kwargs)

        return wrapper

    return decorate


@contextmanager
def open_registry(
    database: str, load: list[str], *, init: bool = False, pooled: bool = False
) -> Iterator[Registry]:
    """The registry of ``database``. Only ``init`` creates a database (a SQLite file)
    and its schema; without it the database and its tables must exist already
    (``job-worker init`` creates them), so other commands never create or change a
    schema: on a mistyped path they say that the file does not exist. A command that
    runs a few statements and exits opens one PostgreSQL connection, no pool
    (``pooled``: a server's)."""
    try:
        registry = Registry(database, load, init=init, create=init, pooled=pooled)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--database' / '--load'") from exc
    try:
        yield registry
    finally:
        registry.close()


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code`` (1: refused or not found)."""
    click.echo(f"Error: {message}", err=True)
    raise click.exceptions.Exit(code)
