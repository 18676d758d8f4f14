"""The base module: companies, users and partners, loaded by every registry."""

from __future__ import annotations

from typing import Any

from . import models  # noqa: F401  (defines the models)


def init_data(env: Any) -> None:
    """A fresh database has company 1 and the superuser (id 1)."""
    company = env["res.company"].create({"name": "My Company"})
    env["res.users"].create(
        {
            "name": "System",
            "login": "__system__",
            "company_id": company.id,
            "active": False,
        }
    )
