"""queue.config: the cluster settings of :mod:`job_worker.queue.config`, one row per key
set (a key without a row has its default)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ...orm import fields, models
from .. import config


class QueueConfig(models.Model):
    _name = "queue.config"
    _description = "Cluster setting"
    _order = "key"
    _rec_name = "key"
    _indexes = [models.Index("queue_config_key_unique", ("key",), unique=True)]

    key = fields.Char(required=True, help="One of the keys of job_worker.queue.config.SETTINGS.")
    value = fields.Char(required=True, help="The value, as text ('forever' for no limit).")

    def _normalized(self, vals: dict[str, Any], key: str | None) -> dict[str, Any]:
        """``vals`` with ``value`` checked against ``key``'s setting and stored canonically."""
        vals = dict(vals)
        if "key" in vals:
            key = vals["key"]
            config.setting(key)
        if "value" in vals and key is not None:
            known = config.setting(key)
            vals["value"] = known.as_text(known.validate(vals["value"]))
        return vals

    def create(self, vals_list: Any) -> Any:
        if isinstance(vals_list, dict):
            vals_list = [vals_list]
        return super().create([self._normalized(vals, None) for vals in vals_list])

    def write(self, vals: dict[str, Any]) -> bool:
        if "key" in vals and any(record.key != vals["key"] for record in self):
            raise ValueError(
                f"queue.config key {vals['key']!r}: a setting's key is not renamed,"
                " unset the old one and set the new one"
            )
        for record in self:
            record._write_checked(vals)
        return True

    def _write_checked(self, vals: dict[str, Any]) -> None:
        super().write(self._normalized(vals, self.key))

    # -- the API of ``job-worker config`` -------------------------------------------------

    def get_settings(self) -> config.ClusterSettings:
        """The settings in force (defaults where no row is set)."""
        return config.read(self.env.cr)

    def describe(self) -> list[dict[str, Any]]:
        """Every setting: key, value in force, default, where it comes from, what it
        accepts, when it was last set."""
        rows = {record.key: record for record in self.search([])}
        current = self.get_settings()
        described = []
        for key, known in config.SETTINGS.items():
            record = rows.get(key)
            described.append(
                {
                    "key": key,
                    "value": known.as_text(getattr(current, key)),
                    "default": known.as_text(known.default),
                    "source": "database" if record else "default",
                    "accepted": known.accepted,
                    "changed_at": record.write_date if record else None,
                    "help": known.help,
                }
            )
        return described

    def set_value(self, key: str, text: Any) -> Any:
        """Set ``key`` to ``text`` after checking it; returns the typed value in force.

        Raises ValueError naming the setting and what it accepts; nothing is written then.
        """
        known = config.setting(key)
        value = known.validate(text)
        self._check_with_workers(key, value)
        record = self.search([("key", "=", key)])
        if record:
            record.write({"value": known.as_text(value)})
        else:
            self.create({"key": key, "value": known.as_text(value)})
        return value

    def unset(self, key: str) -> bool:
        """Give ``key`` its default again; returns whether it was set."""
        known = config.setting(key)
        record = self.search([("key", "=", key)])
        if not record:
            return False
        self._check_with_workers(key, known.default)
        record.unlink()
        return True

    def _check_with_workers(self, key: str, value: Any) -> None:
        """The stale window must exceed the heartbeat interval of every live worker, or
        their jobs would look abandoned while they run."""
        if key != "stale_seconds":
            return
        current = self.get_settings()
        self.env.cr.execute(
            "SELECT MAX(heartbeat_interval) FROM queue_worker"
            " WHERE stopped_at IS NULL AND heartbeat >= %s",
            [fields.Datetime.now() - timedelta(seconds=current.stale_seconds)],
        )
        row = self.env.cr.fetchone()
        slowest = float(row[0]) if row and row[0] is not None else None
        if slowest is not None and value <= slowest:
            raise ValueError(
                f"stale_seconds: expected {config.SETTINGS[key].accepted}, got {value:g}"
                f" (a live worker sends a heartbeat every {slowest:g} s)"
            )
