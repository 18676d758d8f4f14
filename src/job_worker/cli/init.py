"""``job-worker init``: create or upgrade the schema."""

from __future__ import annotations

import click

from ..db import redact_url
from .main import database_options, open_registry
from .output import Output, json_option


@click.command()
@database_options()
@json_option
def init(database: str, load: list[str], as_json: bool) -> None:
    """Create or upgrade the tables of job_worker and of the loaded modules."""
    with open_registry(database, load, init=True) as registry, registry.cursor(readonly=True) as cr:
        tables = sorted(registry.backend.existing_tables(cr))
        modules = [module.__name__ for module in registry.modules]
    out = Output(as_json)
    if as_json:
        out.json({"database": redact_url(database), "modules": modules, "tables": tables})
        return
    out.say(
        f"{redact_url(database)}: schema up to date ({len(tables)} tables; modules {', '.join(modules)})",
        "green",
    )
