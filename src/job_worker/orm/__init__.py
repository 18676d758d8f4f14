"""The record runtime: just enough of Odoo's programming model, SQL-backed."""

from . import api, fields, models
from .api import SUPERUSER_ID, Environment
from .models import AbstractModel, BaseModel, Model
from .registry import Registry
from .schema import Migration

__all__ = [
    "SUPERUSER_ID",
    "AbstractModel",
    "BaseModel",
    "Environment",
    "Migration",
    "Model",
    "Registry",
    "api",
    "fields",
    "models",
]
