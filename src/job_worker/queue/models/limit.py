"""queue.limit: how much of a channel runs at once, how fast its jobs start, and how
many may wait (``max_depth``, with what an enqueue into a full channel does)."""

from __future__ import annotations

import math
from typing import Any

from ...orm import fields, models
from ...orm.fields import INT_MAX, short_repr
from ...rates import parse_rates, rates_text
from ..depth import forget_channel_rules
from ..options import CHANNEL_RE, MAX_CHANNEL_LENGTH

#: what an enqueue into a channel at its max_depth does
DEPTH_POLICIES = [
    ("raise", "Raise ChannelFullError"),
    ("skip", "Skip the enqueue (counted)"),
]


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
    max_depth = fields.Integer(
        "Max depth",
        required=True,
        default=0,
        help="Jobs of the channel waiting or pending at most; 0 = unbounded.",
    )
    depth_policy = fields.Selection(
        DEPTH_POLICIES,
        "When full",
        required=True,
        default="raise",
        help="An enqueue into a full channel raises ChannelFullError (raise) "
        "or returns no job and is counted (skip).",
    )
    skipped = fields.Integer(
        readonly=True, default=0, help="Enqueues the skip policy dropped (every process)."
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
        if "max_depth" in vals:
            value = vals["max_depth"]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT_MAX:
                raise ValueError(
                    f"queue.limit max_depth must be an int from 0 to {INT_MAX} "
                    f"(0 = unbounded), got {short_repr(value)}"
                )
        if "depth_policy" in vals and vals["depth_policy"] not in dict(DEPTH_POLICIES):
            raise ValueError(
                f"queue.limit depth_policy must be one of {', '.join(dict(DEPTH_POLICIES))}, "
                f"got {short_repr(vals['depth_policy'])}"
            )
        if "limit" in vals and not (isinstance(vals["limit"], int) and vals["limit"] <= INT_MAX):
            raise ValueError(
                f"queue.limit limit must be an int from 0 to {INT_MAX}, "
                f"got {short_repr(vals['limit'])}"
            )

    def create(self, vals_list: Any) -> Any:
        for vals in [vals_list] if isinstance(vals_list, dict) else vals_list:
            self._check_limit_values(vals)
        forget_channel_rules(self.env.cr)
        return super().create(vals_list)

    def write(self, vals: dict[str, Any]) -> bool:
        self._check_limit_values(vals)
        forget_channel_rules(self.env.cr)
        return super().write(vals)

    def unlink(self) -> bool:
        forget_channel_rules(self.env.cr)
        return super().unlink()

    def set_limit(
        self,
        channel: str,
        limit: int,
        rate_limit: float | None = None,
        *,
        rates: str | None = None,
        max_depth: int | None = None,
        depth_policy: str | None = None,
    ) -> Any:
        """Create or update the limit of ``channel``; returns the queue.limit record.
        ``None`` keeps (or, for a new row, defaults) what is not given; ``rates`` (rate
        windows, :mod:`job_worker.rates`) replaces the channel's windows when given, an
        empty text removes them."""
        vals: dict[str, Any] = {"limit": limit}
        if rate_limit is not None:
            vals["rate_limit"] = rate_limit
        if rates is not None:
            vals["rates"] = rates
        if max_depth is not None:
            vals["max_depth"] = max_depth
        if depth_policy is not None:
            vals["depth_policy"] = depth_policy
        record = self.search([("name", "=", channel)])
        if record:
            record.write(vals)
            return record
        return self.create({"name": channel, **vals})
