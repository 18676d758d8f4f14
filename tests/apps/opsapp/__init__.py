"""A small application for the CLI and dashboard tests: jobs that succeed and fail."""

from . import models  # noqa: F401
