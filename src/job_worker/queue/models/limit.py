"""queue.limit: how much of a channel runs at once, and how fast its jobs start."""

from __future__ import annotations

import math
from typing import Any

from ...orm import fields, models
from ...orm.fields import INT_MAX, short_repr
from ...rates import parse_rates, rates_text
from ..options import CHANNEL_RE, MAX_CHANNEL_LENGTH


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
        default=0.0,
        help="Job starts per second, across every worker, never two closer than 1/rate_limit"
        " seconds; 0 = no such limit.",
    )
    rates = fields.Char(
        "Rate windows",
        help="Windows of starts, across every worker: '10/s 500/min' never starts more than 10"
        " jobs in any second nor 500 in any minute.",
    )

    def _check_limit_values(self, vals: dict[str, Any]) -> None:
        name = vals.get("name")
        if "name" in vals and (not isinstance(name, str) or not CHANNEL_RE.match(name)):
            raise ValueError(
                f"queue.limit name must be a channel name (1 to {MAX_CHANNEL_LENGTH} letters, "
                f"digits, '.', '_' or '-'), got {short_repr(name)}"
            )
        for key in ("limit", "rate_limit"):
            value = vals.get(key)
            if key in vals and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value < math.inf  # also refuses NaN, which compares false
            ):
                raise ValueError(
                    f"queue.limit {key} must be a finite number >= 0, got {short_repr(value)}"
                )
        if "rates" in vals:
            rates = vals["rates"]
            if rates is not None and not isinstance(rates, str):
                raise ValueError(
                    f"queue.limit rates must be a text such as '10/s 500/min', "
                    f"got {short_repr(rates)}"
                )
            try:
                vals["rates"] = rates_text(parse_rates(rates)) or None
            except ValueError as exc:
                raise ValueError(f"queue.limit rates: {exc}") from None
        if "limit" in vals and not (isinstance(vals["limit"], int) and vals["limit"] <= INT_MAX):
            raise ValueError(
                f"queue.limit limit must be an int from 0 to {INT_MAX}, "
                f"got {short_repr(vals['limit'])}"
            )

    def create(self, vals_list: Any) -> Any:
        for vals in [vals_list] if isinstance(vals_list, dict) else vals_list:
            self._check_limit_values(vals)
        return super().create(vals_list)

    def write(self, vals: dict[str, Any]) -> bool:
        self._check_limit_values(vals)
        return super().write(vals)

    def set_limit(
        self,
        channel: str,
        limit: int,
        rate_limit: float | None = None,
        *,
        rates: str | None = None,
    ) -> Any:
        """Create or update the limit of ``channel``; returns the queue.limit record.
        ``rate_limit`` and ``rates`` (rate windows, :mod:`job_worker.rates`) replace what
        the channel had when given; an empty ``rates`` removes its windows."""
        vals: dict[str, Any] = {"limit": limit}
        if rate_limit is not None:
            vals["rate_limit"] = rate_limit
        if rates is not None:
            vals["rates"] = rates
        record = self.search([("name", "=", channel)])
        if record:
            record.write(vals)
            return record
        return self.create({"name": channel, **vals})
