"""queue.limit: how many jobs of a channel run at once, and how fast they start."""

from __future__ import annotations

from typing import Any

from ...orm import fields, models
from ..options import CHANNEL_RE


class QueueLimit(models.Model):
    _name = "queue.limit"
    _description = "Channel limit"
    _order = "name"
    _indexes = [models.Index("queue_limit_name_unique", ("name",), unique=True)]

    name = fields.Char("Channel", required=True)
    limit = fields.Integer(
        required=True,
        default=1,
        help="Jobs of the channel running at once, across every worker; 0 pauses the channel.",
    )
    rate_limit = fields.Float(
        default=0.0, help="Job starts per second, across every worker; 0 = no rate limit."
    )

    def _check_limit_values(self, vals: dict[str, Any]) -> None:
        name = vals.get("name")
        if "name" in vals and (not isinstance(name, str) or not CHANNEL_RE.match(name)):
            raise ValueError(
                f"queue.limit name must be a channel name (letters, digits, ._-), got {name!r}"
            )
        for key in ("limit", "rate_limit"):
            value = vals.get(key)
            if key in vals and (
                isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            ):
                raise ValueError(f"queue.limit {key} must be a number >= 0, got {value!r}")
        if "limit" in vals and not isinstance(vals["limit"], int):
            raise ValueError(f"queue.limit limit must be an int >= 0, got {vals['limit']!r}")

    def create(self, vals_list: Any) -> Any:
        for vals in [vals_list] if isinstance(vals_list, dict) else vals_list:
            self._check_limit_values(vals)
        return super().create(vals_list)

    def write(self, vals: dict[str, Any]) -> bool:
        self._check_limit_values(vals)
        return super().write(vals)

    def set_limit(self, channel: str, limit: int, rate_limit: float | None = None) -> Any:
        """Create or update the limit of ``channel``; returns the queue.limit record."""
        vals: dict[str, Any] = {"limit": limit}
        if rate_limit is not None:
            vals["rate_limit"] = rate_limit
        record = self.search([("name", "=", channel)])
        if record:
            record.write(vals)
            return record
        return self.create({"name": channel, **vals})
