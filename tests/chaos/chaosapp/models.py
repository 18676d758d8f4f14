import time

from job_worker import models
from job_worker.exceptions import RetryableJobError


class Task(models.AbstractModel):
    _inherit = "workerapp.task"

    def flaky(self, name, failures):
        """Fails its first ``failures`` attempts (retried half a second later), then
        writes its effect."""
        job = self.env["queue.job"].search([("uuid", "=", self.env.context.get("job_uuid"))])
        if job.attempts < failures:
            raise RetryableJobError(f"{name}: attempt {job.attempts + 1} fails", seconds=0.5)
        self._effect(name, time.time())
        return name
