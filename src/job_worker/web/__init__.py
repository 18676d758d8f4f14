"""The web dashboard and the Prometheus endpoint: ``job-worker dashboard``."""

from __future__ import annotations

from .app import Settings, create_app

__all__ = ["Settings", "create_app"]
