"""Imported by Python at start-up from the worker's PYTHONPATH: the latency probe."""

import os

if os.environ.get("LATENCY_PROBE_DIR"):
    import latency_probe  # noqa: F401
