# channel, coordination and cron extend queue.job, queue.limit and queue.maintenance: they are imported after them
from . import base, config, dependency, job, limit, maintenance, worker  # noqa: F401, I001
from . import channel, coordination, cron  # noqa: F401
