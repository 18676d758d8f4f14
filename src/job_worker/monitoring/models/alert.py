"""queue.alert.rule: conditions on the queue that notify people.

The maintenance holder evaluates the active rules every ``interval`` seconds
(per rule). A rule whose value exceeds its threshold fires: a warning in the
log (``event=alert.fired``) and, when it has a webhook URL, a JSON POST made
by a background thread after the maintenance transaction commits. A firing
rule fires again only after its cooldown; when its value is back under the
threshold it is ``ok`` again (logged as ``alert.resolved``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from ...orm import fields, models
from .. import stats, webhooks

_logger = logging.getLogger(__name__)

KINDS = [
    ("failed_count", "Failed jobs in the window"),
    ("queue_depth", "Pending jobs due now"),
    ("stale_workers", "Workers without a heartbeat"),
    ("p95_duration", "p95 duration in the window (s)"),
    ("avg_wait", "Average wait from due to start in the window (s)"),
]
UNITS = {
    "failed_count": "jobs",
    "queue_depth": "jobs",
    "stale_workers": "workers",
    "p95_duration": "s",
    "avg_wait": "s",
}


class AlertRule(models.Model):
    _name = "queue.alert.rule"
    _description = "Alert rule"
    _order = "name, id"

    name = fields.Char(required=True)
    kind = fields.Selection(KINDS, required=True)
    channel = fields.Char(help="Only jobs of this channel (empty: every channel).")
    threshold = fields.Float(required=True, default=0.0, help="Fires when the value is above it.")
    window_minutes = fields.Integer(
        default=60, help="Look-back of failed_count, p95_duration and avg_wait."
    )
    interval_seconds = fields.Integer(default=60, help="Seconds between two evaluations.")
    cooldown_minutes = fields.Integer(default=30, help="Minimum time between two notifications.")
    webhook_url = fields.Char(help="http(s) URL receiving a JSON POST when the rule fires.")
    active = fields.Boolean(default=True)
    state = fields.Selection([("ok", "OK"), ("firing", "Firing")], default="ok", readonly=True)
    last_value = fields.Float(readonly=True)
    last_evaluated_at = fields.Datetime(readonly=True)
    last_fired_at = fields.Datetime(readonly=True)

    def _check_rule_values(self, vals: dict[str, Any]) -> None:
        kinds = {k for k, _label in KINDS}
        if "kind" in vals and vals["kind"] not in kinds:
            raise ValueError(
                f"alert rule kind must be one of {', '.join(sorted(kinds))}, got {vals['kind']!r}"
            )
        for key in ("threshold", "window_minutes", "interval_seconds", "cooldown_minutes"):
            value = vals.get(key)
            if key in vals and (
                isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            ):
                raise ValueError(f"alert rule {key} must be a number >= 0, got {value!r}")
        url = vals.get("webhook_url")
        if url:
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError(f"alert rule webhook_url must be an http(s) URL, got {url!r}")

    def create(self, vals_list: Any) -> Any:
        for vals in [vals_list] if isinstance(vals_list, dict) else vals_list:
            self._check_rule_values(vals)
        return super().create(vals_list)

    def write(self, vals: dict[str, Any]) -> bool:
        self._check_rule_values(vals)
        return super().write(vals)

    # -- evaluation -------------------------------------------------------------------

    def _measure(self, now: datetime) -> float:
        """The current value of this rule's condition."""
        self.ensure_one()
        cr = self.env.cr
        channel = self.channel or None
        since = now - timedelta(minutes=self.window_minutes or 60)
        if self.kind == "failed_count":
            return float(stats.window(cr, since, channel=channel).failed)
        if self.kind == "queue_depth":
            where, params = "state = 'pending' AND scheduled_at <= %s", [now]
            if channel:
                where, params = where + " AND channel = %s", [*params, channel]
            return float(stats.bounded_count(cr, where, params))
        if self.kind == "stale_workers":
            return float(stats.stale_workers(cr, now))
        window = stats.window(cr, since, channel=channel)
        value = window.duration_p95 if self.kind == "p95_duration" else window.wait_avg
        return float(value or 0.0)

    def _evaluate(self, now: datetime, *, force: bool = False) -> list[dict[str, Any]]:
        """Evaluate the active rules that are due (every rule with ``force``);
        returns the alerts fired, already logged and queued for their webhooks."""
        fired = []
        for rule in self if self else self.search([("active", "=", True)]):
            last = rule.last_evaluated_at
            if not force and last and (now - last).total_seconds() < (rule.interval_seconds or 60):
                continue
            value = rule._measure(now)
            vals: dict[str, Any] = {"last_value": value, "last_evaluated_at": now}
            if value > rule.threshold:
                cooled = not rule.last_fired_at or now - rule.last_fired_at >= timedelta(
                    minutes=rule.cooldown_minutes or 0
                )
                if cooled:
                    vals.update(state="firing", last_fired_at=now)
                    fired.append(rule._fire(value, now))
                else:
                    vals["state"] = "firing"
            elif rule.state == "firing":
                vals["state"] = "ok"
                _logger.info(
                    "alert %s resolved: %s = %g (threshold %g)",
                    rule.name,
                    rule.kind,
                    value,
                    rule.threshold,
                    extra={"event": "alert.resolved", "rule": rule.name},
                )
            rule.write(vals)
        return fired

    def _fire(self, value: float, now: datetime) -> dict[str, Any]:
        payload = {
            "event": "alert.fired",
            "rule": self.name,
            "rule_id": self.id,
            "kind": self.kind,
            "channel": self.channel or None,
            "value": value,
            "threshold": self.threshold,
            "unit": UNITS.get(self.kind, ""),
            "window_minutes": self.window_minutes,
            "fired_at": now.isoformat() + "Z",
            "message": f"{self.name}: {dict(KINDS)[self.kind].lower()} is {value:g}, above {self.threshold:g}"
            + (f" (channel {self.channel})" if self.channel else ""),
        }
        _logger.warning(
            "alert %s",
            payload["message"],
            extra={"event": "alert.fired", "rule": self.name, "value": value},
        )
        if self.webhook_url:
            delivery = webhooks.Delivery(self.webhook_url, payload)
            # after commit: a rolled-back evaluation notifies nobody
            self.env.cr.postcommit.add(lambda: webhooks.deliver(delivery))
        return payload
