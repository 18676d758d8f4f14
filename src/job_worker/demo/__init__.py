"""The demo application: a small CRM whose work goes through the queue.

``job-worker demo`` loads it (``--load job_worker.demo``); so can a worker or
the dashboard pointed at the demo database.
"""

from . import models  # noqa: F401  (defines the models)
