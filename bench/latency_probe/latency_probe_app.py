"""The job of ``bench/bench_latency_segments.py``: marks its first line, does nothing."""

from __future__ import annotations

import latency_probe

from job_worker import models


class Partner(models.Model):
    _inherit = "res.partner"

    def mark_first_line(self, ts: float = 0.0) -> None:
        latency_probe.mark(ts)
