"""Jobs used by the queue tests: they record what they see in job.log rows."""

from . import models  # noqa: F401

DEPENDS = ["crm"]
