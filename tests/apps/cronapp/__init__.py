"""Periodic jobs declared in code, for the tests of their sync to queue.cron rows."""

from . import models  # noqa: F401

DEPENDS = ["crm"]
