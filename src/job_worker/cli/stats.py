"""``job-worker stats``: the queue's health, channels and workers at a glance."""

from __future__ import annotations

from datetime import timedelta

import click

from ..monitoring import kpis, stats
from .config import moved_option
from .main import database_options, open_registry
from .output import Output, json_option

LEVEL_STYLES = {"ok": "green", "warn": "yellow", "crit": "bold red", "info": ""}


@click.command("stats")
@database_options()
@moved_option("--default-limit", "default_limit")
@json_option
def stats_(database: str, load: list[str], as_json: bool) -> None:
    """KPIs with their thresholds, channels and workers."""
    now = stats.now()
    with open_registry(database, load) as registry, registry.cursor(readonly=True) as cr:
        failures = stats.top_failures(cr, now - timedelta(hours=24))
        figures = kpis.compute(cr, now, failures=failures)
        channels = stats.channel_rows(cr)
        workers = stats.workers(cr, now)
    out = Output(as_json)
    if as_json:
        out.json(
            {
                "kpis": [k.as_dict() for k in figures],
                "channels": channels,
                "workers": workers,
                "top_failures_24h": [{"exc_name": n, "count": c} for n, c in failures],
            }
        )
        return
    out.table(
        [k.as_dict() for k in figures],
        ("label", "display", "level", "hint"),
        title="Queue health",
        styles={"level": lambda v: LEVEL_STYLES.get(v, ""), "display": lambda v: ""},
    )
    out.table(
        [
            {
                **c,
                "channel": c["name"],
                "utilisation": f"{c['utilisation']:.0%}"
                if c["utilisation"] is not None
                else "paused",
            }
            for c in channels
        ],
        ("channel", "limit", "rate_limit", "running", "pending", "waiting", "utilisation"),
        title="Channels",
    )
    out.table(
        [
            {
                **w,
                "heartbeat_age": None
                if w["heartbeat_age"] is None
                else round(w["heartbeat_age"], 1),
            }
            for w in workers
        ],
        ("worker_id", "alive", "running", "concurrency", "heartbeat_age", "started_at"),
        title="Workers",
    )
