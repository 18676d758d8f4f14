from . import alert, job, maintenance, snapshot  # noqa: F401
