"""queue.maintenance, extended: metric snapshots, roll-ups, retention and alert rules."""

from __future__ import annotations

from typing import Any

from ...orm import models
from .. import stats


class QueueMaintenance(models.AbstractModel):
    _inherit = "queue.maintenance"

    def _run_maintenance(self, settings: dict[str, Any]) -> dict[str, int]:
        """Adds ``snapshots`` (rows written), ``snapshots_rolled_up``,
        ``snapshots_pruned`` and ``alerts_fired`` to the counters.

        ``settings``: ``metrics`` (True; False turns snapshots off),
        ``metrics_retention`` ({"5min": days, "hour": days, "day": days}),
        ``alerts`` (True; False turns alert rules off).
        """
        result = dict(super()._run_maintenance(settings))  # type: ignore[misc]  # composed per registry
        now = stats.now()
        Snapshot = self.env["queue.metric.snapshot"]
        if settings.get("metrics", True):
            result["snapshots"] = Snapshot._take_snapshots(now)
            result["snapshots_rolled_up"] = Snapshot._roll_up(now)
            result["snapshots_pruned"] = Snapshot._prune(now, settings.get("metrics_retention"))
        if settings.get("alerts", True):
            result["alerts_fired"] = len(self.env["queue.alert.rule"]._evaluate(now))
        return result
