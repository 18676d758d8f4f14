from job_worker import fields, models
from job_worker.exceptions import ChannelBackoff, FailedJobError, RetryableJobError


class JobLog(models.Model):
    """One row per job execution, written by the job itself (rolled back with it)."""

    _name = "job.log"
    _order = "id"

    name = fields.Char()
    partner_id = fields.Many2one("res.partner")
    uid = fields.Integer()
    company_id = fields.Integer()
    lang = fields.Char()
    tz = fields.Char()
    job_uuid = fields.Char()
    value = fields.Json()


class Partner(models.Model):
    _inherit = "res.partner"

    def record(self, name="record", value=None):
        env = self.env
        common = {
            "name": name,
            "uid": env.uid,
            "company_id": env.company.id,
            "lang": env.lang,
            "tz": env.tz,
            "job_uuid": env.context.get("job_uuid"),
            "value": value,
        }
        env["job.log"].create([{**common, "partner_id": pid} for pid in self.ids or [False]])
        return {"recorded": len(self), "value": value}

    def fail_then_write(self, error="boom"):
        self.env["job.log"].create({"name": "before-failure"})
        raise RuntimeError(error)

    def fail_with_unstorable_text(self):
        """Raises an error whose message no database column can hold as it is."""
        raise RuntimeError("nul \x00 and lone surrogate \ud800")

    def fail_hard(self):
        raise FailedJobError("no point retrying")

    def retry_later(self, seconds=None, ignore_retry=False):
        raise RetryableJobError("not yet", seconds=seconds, ignore_retry=ignore_retry)

    def retry_first_attempt(self, name="after-retry"):
        """Asks to be retried on its first attempt, then records ``name``."""
        job = self.env["queue.job"].search([("uuid", "=", self.env.context.get("job_uuid"))])
        if not job.attempts:
            raise RetryableJobError("not yet")
        return self.record(name)

    def back_off(self, seconds, reason=""):
        """Writes a log row, then asks its channel to pause (the row is rolled back)."""
        self.env["job.log"].create({"name": "before-backoff"})
        raise ChannelBackoff(seconds, reason)

    def big_result(self, size):
        return "x" * size

    def echo(self, *args, **kwargs):
        return {"args": list(args), "kwargs": kwargs}

    # the methods the documentation's examples delay
    def sync(self):
        return self.record("sync")

    def sync_to_external_system(self):
        return self.record("sync_to_external_system")

    def do_export(self):
        return self.record("export")

    def opaque(self):
        return {1, 2}

    def _private_helper(self):
        return "private"


class Lead(models.Model):
    _inherit = "crm.lead"

    def _job_store_values(self, job_vals):
        values = super()._job_store_values(job_vals)
        if self.env.context.get("store_hook") == "channel":
            values["channel"] = "leads"
            values["priority"] = 1
        elif self.env.context.get("store_hook") == "protected":
            values["method_name"] = "unlink"
        elif self.env.context.get("store_hook") == "extra":
            values["origin"] = "lead-hook"
        values.update(self.env.context.get("store_values", {}))
        return values

    def qualify(self):
        self.write({"stage": "qualified"})
        return self.ids


class QueueJob(models.Model):
    _inherit = "queue.job"

    origin = fields.Char(help="Set by the lead store hook in the tests")
