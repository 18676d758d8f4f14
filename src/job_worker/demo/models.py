"""Partners that get reminders, exports that are built, invoices that are pushed."""

from __future__ import annotations

import random
import time
from typing import Any

from ..exceptions import FailedJobError, RetryableJobError
from ..orm import api, fields, models


def _work(low: float = 0.05, high: float = 0.25) -> None:
    """Stand in for real work: a call to a mail server, a file written..."""
    time.sleep(random.uniform(low, high))


class Partner(models.Model):
    _inherit = "res.partner"

    reminders_sent = fields.Integer()
    last_synced_at = fields.Datetime()
    tier = fields.Selection([("standard", "Standard"), ("gold", "Gold")], default="standard")

    def send_reminder(self) -> int:
        for partner in self:
            _work()
            partner["reminders_sent"] += 1
        return len(self)

    def sync_to_crm(self) -> dict[str, Any]:
        _work()
        self.write({"last_synced_at": fields.Datetime.now()})
        return {"synced": self.ids}

    def push_invoice(self, amount: float) -> dict[str, Any]:
        """Fails once with a gateway timeout, then goes through (a flaky job)."""
        job = self.env["queue.job"].search([("uuid", "=", self.env.context.get("job_uuid"))])
        _work()
        if job and job.attempts == 0:
            raise RetryableJobError("payment gateway timed out", seconds=1)
        return {"pushed": amount}

    @api.periodic(interval=2, name="CRM digest (every 2 s)")
    def refresh_digest(self) -> str:
        """A periodic job: one job per occurrence, whatever the number of workers."""
        _work(0.01, 0.05)
        return f"{self.search_count([])} partners"

    def charge_card(self, amount: float) -> None:
        """Always declined: a job that fails for good."""
        _work()
        raise FailedJobError(f"card declined for {amount:.2f} EUR")


class Export(models.Model):
    _name = "demo.export"
    _description = "Export"
    _order = "id"

    name = fields.Char(required=True)
    state = fields.Selection(
        [("draft", "Draft"), ("built", "Built"), ("sent", "Sent")], default="draft"
    )
    rows = fields.Integer()
    partner_ids = fields.Many2many("res.partner", string="Partners")

    def build(self) -> int:
        for export in self:
            _work(0.2, 0.5)
            export.write({"state": "built", "rows": len(export.partner_ids)})
        return len(self)

    def send(self) -> str:
        _work()
        self.write({"state": "sent"})
        return f"{self.name} sent"

    def notify_done(self) -> str:
        return "the nightly export is complete"
