"""The soak's jobs: the worker test app's, plus a job that fails a given number of
attempts before it succeeds."""

DEPENDS = ["workerapp"]

from . import models  # noqa: E402, F401
