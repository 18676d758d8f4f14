from . import base, dependency, job, limit, maintenance, worker  # noqa: F401
