"""A small CRM application used by the tests: one model per kind of field."""

from . import models  # noqa: F401
