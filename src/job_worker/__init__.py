"""job_worker: background jobs for Python in the style of Odoo's job_worker.

from job_worker import Registry, api, fields, models, SUPERUSER_ID
"""

from .orm import SUPERUSER_ID, Migration, api, fields, models
from .registry import Registry

__all__ = ["SUPERUSER_ID", "Migration", "Registry", "api", "fields", "models"]
__version__ = "0.1.0"
