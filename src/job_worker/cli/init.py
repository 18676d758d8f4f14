"""``job-worker init``: create or upgrade the schema."""

from __future__ import annotations

from dataclasses import asdict

import click

from ..db import redact_url
from ..orm.schema import SchemaChanges
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
        changes = registry.schema_changes or SchemaChanges()
    out = Output(as_json)
    if as_json:
        out.json(
            {
                "database": redact_url(database),
                "modules": modules,
                "tables": tables,
                "outcome": _outcome(changes),
                "changes": asdict(changes),
            }
        )
        return
    out.say(_summary(redact_url(database), changes, tables, modules), "green")


def _outcome(changes: SchemaChanges) -> str:
    if changes.created:
        return "created"
    return "upgraded" if changes.changed else "up_to_date"


def _summary(database: str, changes: SchemaChanges, tables: list[str], modules: list[str]) -> str:
    """ "created the schema ..." on a fresh database, "upgraded ..." when something was
    added or migrated, "up to date" otherwise."""
    loaded = f"modules {', '.join(modules)}"
    if changes.created:
        return f"{database}: created the schema ({len(tables)} tables; {loaded})"
    if not changes.changed:
        return f"{database}: schema up to date ({len(tables)} tables; {loaded})"
    done = [
        f"{label} {', '.join(items)}"
        for label, items in (
            ("ran migrations", changes.migrated),
            ("installed modules", changes.installed),
            ("added tables", changes.tables),
            ("added columns", changes.columns),
            ("added indexes", changes.indexes),
        )
        if items
    ]
    return f"{database}: upgraded the schema: {'; '.join(done)} ({len(tables)} tables; {loaded})"
