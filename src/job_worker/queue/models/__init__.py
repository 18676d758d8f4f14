from . import base, dependency, job, limit, maintenance, worker  # noqa: F401
from . import coordination  # noqa: F401  (after the models it extends)
