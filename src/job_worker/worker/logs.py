"""Structured logs: every record carries a stable ``event`` key, and a job's id and uuid
when it is about a job. ``--log-format json`` prints one JSON object per line.

In the text format one record is one line: control characters in the message and
the extras (a job's description or exception message may hold any) are escaped
(``\n``, ``\x1b``), and the lines of a traceback that follows are indented, so
text from a job can neither forge a log line nor act on a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from ..printable import printable

#: attributes of a LogRecord that are not extras given by the caller
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "log"),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in _extras(record).items() if k != "event"})
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        extras = _extras(record)
        event = extras.pop("event", "log")
        pairs = " ".join(f"{k}={v}" for k, v in extras.items())
        text = f"{stamp} {record.levelname:<7} [{record.process}] {event}: {record.getMessage()}"
        if pairs:
            text += f" ({pairs})"
        text = printable(text)
        if record.exc_info:
            trace = printable(self.formatException(record.exc_info), keep_newlines=True)
            text += "\n" + "\n".join(f"    {line}" for line in trace.splitlines())
        return text


def configure(log_format: str = "text", level: str = "INFO") -> None:
    """Send the process's logs to stderr in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
