"""Jobs for the worker's tests: they sleep, write a row, fail, or kill their own process."""

from . import models  # noqa: F401
