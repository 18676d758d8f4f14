# coordination extends queue.job, queue.limit and queue.maintenance: it is imported after them
from . import base, config, dependency, job, limit, maintenance, worker  # noqa: F401, I001
from . import coordination  # noqa: F401
