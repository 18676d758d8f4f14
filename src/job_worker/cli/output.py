"""How commands print: rich tables and colours on a terminal, aligned plain text
when piped, JSON with ``--json``.

Job text (descriptions, arguments, results, exception messages) is printed
through :func:`job_worker.printable.printable`: an escape sequence or a newline
in it shows as ``\x1b`` or ``\n`` instead of acting on the terminal or
splitting a row.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import click

from ..orm.fields import INT_MAX, short_repr, unstorable_char
from ..printable import printable
from ..queue.lifecycle import JobState

if TYPE_CHECKING:
    from rich.console import Console

STATE_STYLES: dict[str, str] = {
    JobState.WAITING: "magenta",
    JobState.PENDING: "yellow",
    JobState.STARTED: "cyan",
    JobState.DONE: "green",
    JobState.FAILED: "bold red",
    JobState.CANCELLED: "dim",
}

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")


#: a record id: what an INTEGER id column holds (a larger one is refused with one line)
RECORD_ID = click.IntRange(1, INT_MAX)


class FiniteFloat(click.FloatRange):
    """A FloatRange that refuses ``nan`` and ``inf`` (FloatRange lets NaN through)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class StorableText(click.ParamType):
    """Text a database can take: no NUL character, no lone surrogate (what Python
    makes of bytes of a command line that are not UTF-8)."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        problem = unstorable_char(value) if isinstance(value, str) else None
        if problem:
            self.fail(
                f"{short_repr(value)} holds {problem}: not valid text (not UTF-8?)", param, ctx
            )
        return value


#: a text option that reaches the database
TEXT = StorableText()


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def text(value: Any) -> str:
    """A cell as plain text, on one line."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return printable(str(value))


def _stdout_is_terminal() -> bool:
    """Whether standard output is a terminal, as rich would judge it: the variables that
    make rich treat any output as a terminal are left to rich; otherwise (output piped
    to a script, the common case of a whole-process command) rich is not imported."""
    if "FORCE_COLOR" in os.environ or "TTY_COMPATIBLE" in os.environ:
        from rich.console import Console

        return Console().is_terminal
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


class Output:
    """One command's output."""

    def __init__(self, as_json: bool = False, console: Console | None = None):
        self.as_json = as_json
        self._console = console
        self.rich = not as_json and (
            console.is_terminal if console is not None else _stdout_is_terminal()
        )

    @property
    def console(self) -> Console:
        """The rich console, made (and rich imported) only when a terminal needs it."""
        if self._console is None:
            from rich.console import Console

            self._console = Console()
        return self._console

    def json(self, data: Any) -> None:
        click.echo(json.dumps(data, default=_default, indent=2))

    def table(
        self,
        rows: Sequence[dict[str, Any]],
        columns: Sequence[str],
        *,
        title: str | None = None,
        styles: dict[str, Callable[[Any], str]] | None = None,
    ) -> None:
        """``rows`` as a table of ``columns``; with ``--json`` as a list of objects."""
        if self.as_json:
            self.json([{c: row.get(c) for c in columns} for row in rows])
            return
        if self.rich:
            from rich.table import Table
            from rich.text import Text

            table = Table(title=title, header_style="bold")
            for column in columns:
                table.add_column(column, overflow="fold")
            for row in rows:
                rendered = []
                for column in columns:
                    style = (styles or {}).get(column)
                    rendered.append(
                        Text(text(row.get(column)), style=style(row.get(column)) if style else "")
                    )
                table.add_row(*rendered)
            self.console.print(table)
            return
        lines = [[text(row.get(c)) for c in columns] for row in rows]
        widths = [max([len(c), *(len(r[i]) for r in lines)]) for i, c in enumerate(columns)]
        if title:
            click.echo(title)
        click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
        for line in lines:
            click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())

    def fields(self, values: dict[str, Any], *, title: str | None = None) -> None:
        """One record as ``name: value`` lines."""
        if self.as_json:
            self.json(values)
            return
        if self.rich:
            from rich.table import Table
            from rich.text import Text

            table = Table(title=title, show_header=False, box=None)
            table.add_column(style="bold")
            table.add_column(overflow="fold")
            for key, value in values.items():
                table.add_row(key, Text(text(value)))
            self.console.print(table)
            return
        if title:
            click.echo(title)
        width = max((len(k) for k in values), default=0)
        for key, value in values.items():
            click.echo(f"{key.ljust(width)}  {text(value)}".rstrip())

    def say(self, message: str, style: str = "") -> None:
        """A line for people (not printed with ``--json``)."""
        if self.as_json:
            return
        message = printable(message)
        if self.rich and style:
            from rich.text import Text

            self.console.print(Text(message, style=style))
        else:
            click.echo(message)

    def block(self, message: str) -> None:
        """Lines for people under a heading, such as a traceback, indented so that
        none of them passes for a line of the command's own (not printed with
        ``--json``)."""
        if not self.as_json:
            for line in printable(message, keep_newlines=True).splitlines():
                click.echo(f"    {line}".rstrip())


def state_style(state: Any) -> str:
    return STATE_STYLES.get(str(state), "")
