from . import base, dependency, job, limit, worker  # noqa: F401
