"""``job-worker demo``: a small CRM on a fresh database, to see the runtime at work."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from ..orm import SUPERUSER_ID, Environment, Registry
from .main import database_options

PARTNERS = [
    ("Azure Interior", "azure@example.com"),
    ("Deco Addict", "deco@example.com"),
    ("Gemini Furniture", "gemini@example.com"),
    ("Lumber Inc", "lumber@example.com"),
    ("Ready Mat", "ready@example.com"),
]


@click.command()
@database_options(default_url="sqlite:///job_worker_demo.db")
def demo(database: str, load: list[str]) -> None:
    """Create a demo database with a few partners and show them."""
    console = Console()
    registry = Registry(database, load)
    try:
        with registry.cursor() as cr:
            env = Environment(cr, SUPERUSER_ID, {})
            partners = env["res.partner"].search([("email", "like", "@example.com")])
            if not partners:
                partners = env["res.partner"].create(
                    [
                        {"name": name, "email": email, "company_id": env.company.id}
                        for name, email in PARTNERS
                    ]
                )
            table = Table(title=f"Partners in {database}")
            table.add_column("id", justify="right")
            table.add_column("name")
            table.add_column("email")
            table.add_column("company")
            for partner in partners:
                table.add_row(
                    str(partner.id), partner.name, partner.email or "", partner.company_id.name
                )
            console.print(table)
    finally:
        registry.close()
