"""queue.cron: periodic jobs, one job per occurrence across every worker and host.

Each active row has a ``next_at``; a worker whose clock passes it enqueues the
due occurrence(s) and moves ``next_at`` on, in one transaction. Two safeguards
make that exactly once, whatever the number of workers:

- moving ``next_at`` is a compare-and-set on the value read (a worker that lost
  the race changes nothing), and
- the job row carries ``(cron_id, cron_occurrence)`` under a unique index, so an
  occurrence can never become two jobs, even when ``next_at`` is set back by hand.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ...db.jobstore import notify_crons_changed, notify_jobs_enqueued
from ...orm import fields, models
from .. import options as job_options
from ..delayable import Delayable, check_method
from ..lifecycle import ACTIVE
from ..schedule import Schedule, check_interval
from ..serialization import encode

CATCH_UP = [
    ("latest", "One job for the missed occurrences"),
    ("all", "One job per missed occurrence"),
    ("skip", "No job for missed occurrences"),
]

#: an occurrence seen later than this (seconds) counts as missed, not on time
GRACE_SECONDS = 60

#: the job options a cron row holds, each checked as ``with_delay()`` checks it
JOB_OPTIONS = ("channel", "priority", "max_retries", "timeout", "description")
#: what defines the call and the schedule: code owns these on the rows it declares
SCHEDULE_FIELDS = ("cron", "interval", "tz")
CALL_FIELDS = ("model_name", "method_name", "record_ids", "args", "kwargs")
OWNED_BY_CODE = (
    *CALL_FIELDS,
    *SCHEDULE_FIELDS,
    *JOB_OPTIONS,
    "name",
    "catch_up",
    "max_catch_up",
    "no_overlap",
)


def _same(declared: Any, stored: Any) -> bool:
    """A declared value equals the stored one (read() gives False or 0 for empty)."""
    return declared == stored or (not declared and not stored and declared in (None, 0, False))


class QueueJob(models.Model):
    _inherit = "queue.job"
    _indexes = [
        # one job per occurrence of a periodic job, whatever the number of workers
        models.Index(
            "queue_job_cron_occurrence",
            ("cron_id", "cron_occurrence"),
            unique=True,
            where="cron_id IS NOT NULL",
        ),
    ]

    # looked up through queue_job_cron_occurrence (cron_id = X implies it is not null)
    cron_id = fields.Many2one("queue.cron", "Periodic job", readonly=True, ondelete="set null")
    cron_occurrence = fields.Datetime(
        "Occurrence",
        readonly=True,
        help="The time of the periodic job's occurrence this job is (empty: run by hand).",
    )


class QueueCron(models.Model):
    _name = "queue.cron"
    _description = "Periodic job"
    _order = "name, id"
    _indexes = [
        models.Index("queue_cron_due", ("next_at",), where="active"),
        models.Index(
            "queue_cron_code_key", ("code_key",), unique=True, where="code_key IS NOT NULL"
        ),
    ]

    name = fields.Char(required=True)
    model_name = fields.Char("Model", required=True)
    method_name = fields.Char("Method", required=True)
    record_ids = fields.Json(default=list)
    args = fields.Json(default=list)
    kwargs = fields.Json(default=dict)
    channel = fields.Char(required=True, default="root")
    priority = fields.Integer(required=True, default=10)
    max_retries = fields.Integer(default=5)
    timeout = fields.Float(default=0.0)
    description = fields.Char()
    cron = fields.Char("Cron expression", help="5 fields: minute hour day month weekday.")
    interval = fields.Integer(help="Seconds between occurrences, exact in UTC.")
    tz = fields.Char("Time zone", required=True, default="UTC")
    active = fields.Boolean(default=True)
    catch_up = fields.Selection(CATCH_UP, required=True, default="latest")
    max_catch_up = fields.Integer(default=100, help="catch_up 'all': jobs at most after downtime.")
    no_overlap = fields.Boolean(
        default=False,
        help="Skip an occurrence while the previous job is still waiting, pending or started.",
    )
    next_at = fields.Datetime("Next occurrence", readonly=True)
    last_enqueued_at = fields.Datetime(readonly=True)
    last_job_id = fields.Many2one("queue.job", "Last job", readonly=True, ondelete="set null")
    enqueued_count = fields.Integer(default=0, readonly=True)
    skipped_count = fields.Integer(
        default=0, readonly=True, help="Occurrences skipped: overlap or missed (catch_up)."
    )
    code_key = fields.Char(
        "Declared in code", readonly=True, help="model.method of the @api.periodic declaring it."
    )

    # -- validation -------------------------------------------------------------------

    def _check_cron_values(self, vals: dict[str, Any]) -> dict[str, Any]:
        """Check the values of a whole row; return them normalised. Nothing is written
        on bad input: every check runs before the INSERT or UPDATE."""
        vals = dict(vals)
        name = vals.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"queue.cron needs a name, got {name!r}")
        model_name = vals.get("model_name")
        if not isinstance(model_name, str) or model_name not in self.env.registry:
            raise ValueError(f"queue.cron {name!r}: unknown model {model_name!r}")
        record_ids = vals.get("record_ids") or []
        if not isinstance(record_ids, list | tuple) or any(
            isinstance(i, bool) or not isinstance(i, int) for i in record_ids
        ):
            raise TypeError(f"queue.cron {name!r}: record_ids must be a list of ints")
        check_method(self.env[model_name].browse(list(record_ids)), vals.get("method_name"))
        args, kwargs = vals.get("args") or [], vals.get("kwargs") or {}
        if not isinstance(args, list | tuple):
            raise TypeError(f"queue.cron {name!r}: args must be a list, got {args!r}")
        if not isinstance(kwargs, dict):
            raise TypeError(f"queue.cron {name!r}: kwargs must be a dict, got {kwargs!r}")
        vals["record_ids"] = list(record_ids)
        vals["args"] = encode(list(args), "args")
        vals["kwargs"] = encode(dict(kwargs), "kwargs")
        given = {k: vals[k] for k in JOB_OPTIONS if vals.get(k) is not None}
        vals.update(job_options.validate(given))
        if vals.get("interval") is not None:
            check_interval(vals["interval"])
        schedule = self._schedule_of(vals)
        vals["cron"], vals["interval"] = schedule.cron, schedule.interval
        if vals.get("catch_up", "latest") not in dict(CATCH_UP):
            raise ValueError(
                f"catch_up must be one of {', '.join(dict(CATCH_UP))}, got {vals['catch_up']!r}"
            )
        max_catch_up = vals.get("max_catch_up", 100)
        if isinstance(max_catch_up, bool) or not isinstance(max_catch_up, int) or max_catch_up < 1:
            raise ValueError(f"max_catch_up must be an int >= 1, got {max_catch_up!r}")
        return vals

    @staticmethod
    def _schedule_of(vals: dict[str, Any]) -> Schedule:
        interval = vals.get("interval")
        return Schedule(
            vals.get("cron") or None,
            None if interval is None else interval,
            vals.get("tz") or "UTC",
        )

    def schedule(self) -> Schedule:
        self.ensure_one()
        return Schedule(self.cron or None, self.interval or None, self.tz)

    def create(self, vals_list: Any) -> Any:
        now = fields.Datetime.now()
        checked = []
        for vals in [vals_list] if isinstance(vals_list, dict) else list(vals_list):
            defaults = {"tz": "UTC", "catch_up": "latest", "max_catch_up": 100}
            vals = self._check_cron_values({**defaults, **vals})
            if vals.get("active", True) and not vals.get("next_at"):
                vals["next_at"] = self._schedule_of(vals).first(now)
            checked.append(vals)
        records = super().create(checked)
        notify_crons_changed(self.env.cr)  # workers learn of the new schedule at commit
        return records

    def write(self, vals: dict[str, Any]) -> bool:
        now = fields.Datetime.now()
        readable = [n for n in self._fields if n not in ("id", "create_date", "write_date")]
        for record in self:
            # read() gives False for an empty value: the checks want None there
            current = {k: None if v is False else v for k, v in record.read(readable)[0].items()}
            current["last_job_id"] = record.last_job_id.id
            current["interval"] = current["interval"] or None  # a cron expression's row
            changes = dict(vals)
            # one schedule replaces the other
            if changes.get("cron") and "interval" not in changes:
                changes["interval"] = None
            if changes.get("interval") is not None and "cron" not in changes:
                changes["cron"] = None
            merged = self._check_cron_values({**current, **changes})
            own = {k: merged[k] for k in changes if k in merged}
            resumed = vals.get("active") and not record.active
            rescheduled = any(k in changes and merged[k] != current[k] for k in SCHEDULE_FIELDS)
            if (
                merged.get("active")
                and "next_at" not in changes
                and (resumed or rescheduled or not record.next_at)
            ):
                # a resumed cron starts afresh: what fell while it was paused is not owed
                own["next_at"] = self._schedule_of(merged).first(now)
            record._store(own)
        notify_crons_changed(self.env.cr)
        return True

    def edit(self, vals: dict[str, Any]) -> bool:
        """A change by an operator (CLI, dashboard): on a row declared in code only
        ``active`` may change, as the code's next sync would undo the rest."""
        owned = sorted(set(vals) & set(OWNED_BY_CODE))
        for cron in self:
            if cron.code_key and owned:
                raise ValueError(
                    f"queue.cron {cron.id} ({cron.name}) is declared in code by "
                    f"@api.periodic on {cron.code_key}: change {', '.join(owned)} there; "
                    "here it can only be paused, resumed or run now"
                )
        return self.write(vals)

    def _store(self, vals: dict[str, Any]) -> bool:
        """Write checked or computed values, past the checks of :meth:`write`."""
        return super().write(vals)

    def unlink(self) -> bool:
        result = super().unlink()
        notify_crons_changed(self.env.cr)
        return result

    # -- declared in code ---------------------------------------------------------------

    def _declared(self) -> dict[str, dict[str, Any]]:
        """The ``@api.periodic`` declarations of the registry's models, as row values by
        code key (``model.method``)."""
        declared: dict[str, dict[str, Any]] = {}
        for model_name, cls in self.env.registry.models.items():
            names = {name for klass in cls.__mro__ for name in vars(klass)}
            for method_name in sorted(names):
                spec = getattr(getattr(cls, method_name, None), "_periodic", None)
                if not isinstance(spec, dict):
                    continue
                key = f"{model_name}.{method_name}"
                declared[key] = {
                    "name": key,
                    **{k: v for k, v in spec.items() if v is not None},
                    "model_name": model_name,
                    "method_name": method_name,
                    "code_key": key,
                }
        return declared

    def _sync_declared(self) -> dict[str, int]:
        """Make the rows of the declarations match the code.

        Code owns what it declares (call, schedule, options); ``active`` belongs to
        operators once the row exists, so a redeploy never resumes a cron paused by
        hand. A row whose declaration left the code is deleted, unless its model is not
        loaded here (a worker started without that module must not delete it).
        """
        declared = self._declared()
        counts = {"created": 0, "updated": 0, "deleted": 0}
        existing = {row.code_key: row for row in self.search([("code_key", "!=", False)])}
        for key, vals in declared.items():
            row = existing.get(key)
            try:
                if row is None:
                    self.create(vals)
                    counts["created"] += 1
                    continue
                checked = self._check_cron_values({**vals, "active": row.active})
                changes = {
                    k: checked[k]
                    for k in OWNED_BY_CODE
                    if k in checked and not _same(checked[k], row[k])
                }
                for k in ("cron", "interval", "description"):  # unset in code: cleared
                    if k not in checked and row[k]:
                        changes[k] = None
                if changes:
                    row.write(changes)
                    counts["updated"] += 1
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"@api.periodic on {key}: {exc}") from exc
        for key, row in existing.items():
            if key not in declared and row.model_name in self.env.registry:
                row.unlink()
                counts["deleted"] += 1
        return counts

    # -- enqueueing -------------------------------------------------------------------

    def _job_options(self) -> dict[str, Any]:
        options = {name: self[name] for name in JOB_OPTIONS if name != "description"}
        options["description"] = self.description or self.name
        return options

    def _enqueue_occurrence(self, occurrence: datetime | None, now: datetime) -> tuple[Any, bool]:
        """The job of ``occurrence`` (``None``: a run by hand) and whether this call
        created it; an occurrence already enqueued gives the job that holds it."""
        self.ensure_one()
        records = self.env[self.model_name].browse(self.record_ids or [])
        delayable = Delayable(records, **self._job_options())
        check_method(records, self.method_name)
        delayable.method_name = self.method_name
        delayable._stored = (self.args or [], self.kwargs or {})
        values = delayable.job_values({}, now)
        values.update(state="pending", cron_id=self.id, cron_occurrence=occurrence)
        job = self.env["queue.job"]._create_enqueued([values], [values], now)
        notify_jobs_enqueued(self.env.cr)
        return job, job.uuid == values["uuid"]

    def run_now(self) -> Any:
        """Enqueue one job of each of these crons now, outside their schedule: ``next_at``
        does not move. Returns the jobs."""
        now = fields.Datetime.now()
        jobs = self.env["queue.job"]
        for cron in self:
            job, _created = cron._enqueue_occurrence(None, now)
            # counted in SQL: two runs by hand at once both count
            self.env.cr.execute(
                "UPDATE queue_cron SET last_job_id = %s, last_enqueued_at = %s,"
                " enqueued_count = enqueued_count + 1 WHERE id = %s",
                [job.id, now, cron.id],
            )
            cron.invalidate_recordset(["last_job_id", "last_enqueued_at", "enqueued_count"])
            jobs |= job
        return jobs

    def _has_active_job(self) -> bool:
        return bool(
            self.env["queue.job"].search_count(
                [("cron_id", "=", self.id), ("state", "in", list(ACTIVE))]
            )
        )

    def _fire(self, now: datetime) -> dict[str, int]:
        """Enqueue what is due of this cron at ``now`` and move ``next_at`` on; nothing if
        another worker moved it first. Returns ``{"enqueued": n, "skipped": n}``."""
        self.ensure_one()
        counters = {"enqueued": 0, "skipped": 0}
        next_at = self.next_at
        if not self.active or next_at is None or next_at > now:
            return counters
        schedule = self.schedule()
        keep = self.max_catch_up if self.catch_up == "all" else 1
        due, count, following = schedule.due(next_at, now, keep)
        # claim the window: a compare-and-set on the next_at this worker read
        cr = self.env.cr
        cr.execute(
            "UPDATE queue_cron SET next_at = %s WHERE id = %s AND next_at = %s AND active = %s",
            [following, self.id, next_at, True],
        )
        if cr.rowcount != 1:
            self.invalidate_recordset()
            return counters
        self.invalidate_recordset(["next_at"])
        grace = min(GRACE_SECONDS, schedule.interval or GRACE_SECONDS)
        if self.catch_up == "skip":
            due = [t for t in due[-1:] if now - t < timedelta(seconds=grace)]
        skipped = count - len(due)
        if due and self.no_overlap and self._has_active_job():
            skipped += len(due)
            due = []
        last_job = None
        for occurrence in due:
            job, created = self._enqueue_occurrence(occurrence, now)
            if created:
                counters["enqueued"] += 1
                last_job = job
        # counted in SQL, as a run by hand may count at the same time
        if last_job is not None:
            cr.execute(
                "UPDATE queue_cron SET skipped_count = skipped_count + %s, last_job_id = %s,"
                " last_enqueued_at = %s, enqueued_count = enqueued_count + %s WHERE id = %s",
                [skipped, last_job.id, now, counters["enqueued"], self.id],
            )
        elif skipped:
            cr.execute(
                "UPDATE queue_cron SET skipped_count = skipped_count + %s WHERE id = %s",
                [skipped, self.id],
            )
        self.invalidate_recordset(
            ["skipped_count", "last_job_id", "last_enqueued_at", "enqueued_count"]
        )
        counters["skipped"] = skipped
        return counters

    def _run_due(self, now: datetime | None = None, limit: int = 100) -> dict[str, int]:
        """Fire every active cron due at ``now`` (the database's clock by default)."""
        now = now or fields.Datetime.now()
        totals = {"enqueued": 0, "skipped": 0}
        for cron in self.search(
            [("active", "=", True), ("next_at", "<=", now)], order="next_at", limit=limit
        ):
            for key, value in cron._fire(now).items():
                totals[key] += value
        return totals

    def _next_due(self) -> datetime | None:
        """The earliest ``next_at`` of the active crons."""
        self.env.cr.execute("SELECT MIN(next_at) FROM queue_cron WHERE active = %s", [True])
        row = self.env.cr.fetchone()
        value = row[0] if row else None
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    def lag_seconds(self, now: datetime | None = None) -> float:
        """How late this cron's due occurrence is (0 when none is due)."""
        self.ensure_one()
        now = now or fields.Datetime.now()
        if not self.active or self.next_at is None or self.next_at > now:
            return 0.0
        return (now - self.next_at).total_seconds()
