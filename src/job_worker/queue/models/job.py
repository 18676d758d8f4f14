"""queue.job: one row per job."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...db.cursor import Lookup
from ...orm import fields, models
from .. import execution, states
from ..delayable import Delayable, check_method
from ..lifecycle import ACCEPTS, ACTIVE, ALL, JobState, sql_in

#: a job holds its identity key in the active states (a unique partial index covers them)
_ACTIVE_SQL = sql_in(ACTIVE)


class QueueJob(models.Model):
    _name = "queue.job"
    _description = "Job"
    _order = "id desc"
    _indexes = [
        models.Index("queue_job_uuid_unique", ("uuid",), unique=True),
        # one active job per identity key, whatever the number of enqueuers
        models.Index(
            "queue_job_identity_active",
            ("identity_key",),
            unique=True,
            where=f"identity_key IS NOT NULL AND {_ACTIVE_SQL}",
        ),
        # what the worker looks at: due pending jobs, by channel then order of service,
        # each fair key's apart at each priority (jobs without a key have the key '')
        models.Index(
            "queue_job_pending",
            ("channel", "priority", "fair_key", "scheduled_at", "id"),
            where="state = 'pending'",
        ),
        models.Index("queue_job_started", ("worker_id",), where="state = 'started'"),
        models.Index("queue_job_state_date", ("state", "write_date")),
        models.Index("queue_job_graph", ("graph_uuid",), where="graph_uuid IS NOT NULL"),
        # deleting or requeueing a job looks up the jobs it decided (ON DELETE SET NULL,
        # requeue's re-wait): without it each deleted row scans the whole table
        models.Index(
            "queue_job_cascaded_from", ("cascaded_from_id",), where="cascaded_from_id IS NOT NULL"
        ),
    ]

    uuid = fields.Char("UUID", required=True, readonly=True)
    name = fields.Char("Description", readonly=True)
    model_name = fields.Char("Model", required=True, readonly=True)
    method_name = fields.Char("Method", required=True, readonly=True)
    record_ids = fields.Json(readonly=True, default=list)
    args = fields.Json(readonly=True, default=list)
    kwargs = fields.Json(readonly=True, default=dict)
    state = fields.Selection(
        [(s.value, s.label) for s in ALL],
        required=True,
        default=JobState.PENDING.value,
        readonly=True,
    )
    priority = fields.Integer(required=True, default=10, help="Lower runs first.")
    # indexed by (channel, state, id): the job list's index (monitoring)
    channel = fields.Char(required=True, default="root")
    scheduled_at = fields.Datetime(
        "Due at",
        required=True,
        default=lambda self: fields.Datetime.now(),
        help="When the job becomes due: the eta asked for, the enqueue time, or the end of a retry backoff.",
    )
    max_retries = fields.Integer(default=5, help="Failed attempts allowed; 0 retries forever.")
    attempts = fields.Integer(default=0, readonly=True, help="Failed attempts so far.")
    timeout = fields.Float(default=0.0, help="Seconds before the worker kills the job; 0 = none.")
    fair_key = fields.Char(
        "Fair-share key",
        required=True,
        default="",
        readonly=True,
        help="At equal priority, its channel's capacity rotates between the keys with work;"
        " empty: the job has no key (those jobs share one turn).",
    )
    weight = fields.Integer(
        required=True,
        default=1,
        help="The share of its channel's limit the job takes while it runs (1 or more).",
    )
    identity_key = fields.Char(readonly=True)
    user_id = fields.Many2one(
        "res.users",
        "User",
        readonly=True,
        ondelete="set null",
        default=lambda self: self.env.uid,
        help="The job runs as this user; a job whose user was deleted fails instead.",
    )
    company_id = fields.Many2one("res.company", "Company", readonly=True, ondelete="set null")
    context = fields.Json(readonly=True, default=dict)
    result = fields.Json(readonly=True)
    exc_name = fields.Char("Exception", readonly=True)
    exc_message = fields.Text("Exception message", readonly=True)
    exc_info = fields.Text("Diagnoses", readonly=True)
    worker_id = fields.Char("Worker", readonly=True)
    heartbeat = fields.Datetime(readonly=True)
    started_at = fields.Datetime(readonly=True)
    completed_at = fields.Datetime(readonly=True)
    cancelled_at = fields.Datetime(readonly=True)
    duration = fields.Float(readonly=True, help="Seconds the last attempt ran.")
    graph_uuid = fields.Char("Graph", readonly=True)
    has_dependents = fields.Boolean(readonly=True)
    cascaded_from_id = fields.Many2one(
        "queue.job",
        "Decided by",
        readonly=True,
        ondelete="set null",
        help="The parent whose failure or cancellation failed or cancelled this job.",
    )
    dependency_ids = fields.One2many("queue.job.dependency", "job_id", "Depends on")
    dependent_ids = fields.One2many("queue.job.dependency", "parent_id", "Dependents")

    # -- aliases of the seed: read, written, searched and ordered by as their targets
    eta = fields.Alias("scheduled_at", "Due at (eta)")
    retry = fields.Alias("attempts", "Failed attempts (retry)")

    # -- creation -------------------------------------------------------------------

    def _insert_rows(self, rows: list[dict[str, Any]], conflict: str = "") -> list[int]:
        """Jobs with an identity key are inserted one by one against the unique
        partial index: a duplicate of an active job yields that job instead. So are the
        jobs of a periodic job's occurrence, against the unique (cron, occurrence) index:
        an occurrence already enqueued yields its job."""
        if not any(row.get("identity_key") or row.get("cron_occurrence") for row in rows):
            return super()._insert_rows(rows, conflict)
        ids: list[int] = []
        for row in rows:
            if row.get("cron_occurrence") and row.get("cron_id"):
                ids.append(self._insert_occurrence(row))
                continue
            if not row.get("identity_key"):
                ids.extend(super()._insert_rows([row]))
                continue
            inserted = super()._insert_rows(
                [row],
                f"ON CONFLICT (identity_key) WHERE identity_key IS NOT NULL AND {_ACTIVE_SQL} DO NOTHING",
            )
            if inserted:
                ids.extend(inserted)
                continue
            self.env.cr.execute(
                f"SELECT id FROM queue_job WHERE identity_key = %s AND {_ACTIVE_SQL}",
                [row["identity_key"]],
            )
            found = self.env.cr.fetchone()
            if found is None:  # the active job finished in between: it holds the key no more
                ids.extend(super()._insert_rows([row]))
                continue
            ids.append(found[0])
            row.clear()  # not what the database holds for that id: do not cache it
        return ids

    def _insert_occurrence(self, row: dict[str, Any]) -> int:
        inserted = super()._insert_rows(
            [row],
            "ON CONFLICT (cron_id, cron_occurrence) WHERE cron_id IS NOT NULL DO NOTHING",
        )
        if inserted:
            return inserted[0]
        self.env.cr.execute(
            "SELECT id FROM queue_job WHERE cron_id = %s AND cron_occurrence = %s",
            [row["cron_id"], row["cron_occurrence"]],
        )
        found = self.env.cr.fetchone()
        if found is None:  # pragma: no cover - the index held it a moment ago
            raise RuntimeError(
                f"occurrence {row['cron_occurrence']} of cron {row['cron_id']} vanished"
            )
        row.clear()  # not what the database holds for that id: do not cache it
        return found[0]

    def _create_enqueued(
        self,
        vals_list: list[dict[str, Any]],
        built: list[dict[str, Any]],
        now: datetime,
        *,
        defer: bool = False,
    ) -> Any:
        """Create the jobs of an enqueue at ``now``; ``built`` are the values the
        queue made, ``vals_list`` what the model's ``_job_store_values`` made of them
        (the very dicts of ``built`` where the model has no such hook).

        The queue's values are valid by construction (options validated, arguments
        encoded), so only what the hook changed or added goes through the field
        checks of ``create()``, and the other columns take their defaults. An
        application that overrides ``create()`` of ``queue.job`` gets its override
        called instead.

        With ``defer`` (on a database whose cursor defers inserts), jobs that need
        nothing from the database to be created (no identity key to resolve, no
        periodic occurrence, no values from a ``_job_store_values`` hook, no override
        of the creation) get their ids at once and their rows are written with the
        cursor's next statement or at commit
        (:meth:`~job_worker.db.cursor.Cursor.defer_insert`): the jobs of a transaction
        go to the database together.
        """
        if not self._plain_create():
            return self.create(vals_list)
        constant, computed = self._enqueue_defaults()
        rows = []
        hooked = special = lookups = False  # what the loop finds in the rows
        for vals, own in zip(vals_list, built, strict=True):
            # the defaults, the enqueue's times, then the job's own values: one copy
            row = {**constant, "create_date": now, "write_date": now, **own}
            for field in computed:
                if field.name not in own:
                    row[field.name] = field.to_cache(field.default_value(self), self)
            if vals is not own:
                hooked = True
                changed = {k: v for k, v in vals.items() if k not in own or v is not own[k]}
                columns, x2many = self._split_values(changed)
                if x2many:
                    return self.create(vals_list)
                row.update(columns)
            if row["identity_key"] or row.get("cron_occurrence"):
                special = True
            if type(row.get("company_id")) is Lookup:
                lookups = True
            rows.append(row)
        defer = defer and self.env.cr.defers_inserts and not hooked and not special
        jobs = self._create(rows, [{}] * len(rows), defer=defer)
        if lookups:
            # the user's company, looked up as the row is written (only rows written later
            # hold a lookup: enqueue_graph): read back from the row when asked for
            companies = self._cache().get("company_id", {})
            for job_id in jobs._ids:
                companies.pop(job_id, None)
        return jobs

    def _describe_row(self, values: Any) -> str:
        index = type(self)._deferred_columns().index("name")
        return f"queue.job {values[0]} ({values[index]})"

    def _enqueue_defaults(self) -> tuple[dict[str, Any], list[Any]]:
        """The defaults of the columns, for those an enqueue does not set: the constant
        ones in cache form, and the fields whose default is computed per row. Worked
        out once per registry."""
        cls = type(self)
        known = cls.__dict__.get("_enqueue_defaults_cache")
        if known is None:
            constant: dict[str, Any] = {}
            computed = []
            for field in self._column_fields:
                if field.name in ("create_date", "write_date"):
                    continue
                if callable(field.default):
                    computed.append(field)
                else:
                    constant[field.name] = field.to_cache(field.default, self)
            known = cls._enqueue_defaults_cache = (constant, computed)  # type: ignore[attr-defined]
        return known

    @classmethod
    def _plain_create(cls) -> bool:
        """No extension of queue.job overrides how jobs are created (worked out once
        per registry)."""
        plain = cls.__dict__.get("_plain_create_cache")
        if plain is None:
            plain = True
            for klass in cls.__mro__[1:]:
                if klass is QueueJob:
                    break
                if "create" in vars(klass) or "_insert_rows" in vars(klass):
                    plain = False
                    break
            cls._plain_create_cache = plain  # type: ignore[attr-defined]
        return plain

    def enqueue(
        self,
        model_name: str,
        method_name: str,
        record_ids: list[int] | tuple[int, ...] = (),
        args: list | tuple = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Enqueue ``model_name.browse(record_ids).method_name(*args, **kwargs)``
        with the options of ``with_delay()``; returns the job."""
        if not isinstance(model_name, str) or model_name not in self.env.registry:
            raise ValueError(f"cannot enqueue on unknown model {model_name!r}")
        if not isinstance(record_ids, list | tuple) or any(
            isinstance(i, bool) or not isinstance(i, int) for i in record_ids
        ):
            raise TypeError(f"record_ids must be a list of ints, got {record_ids!r}")
        if not isinstance(args, list | tuple):
            raise TypeError(f"args must be a list, got {args!r}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError(f"kwargs must be a dict, got {kwargs!r}")
        records = self.env[model_name].browse(record_ids)
        check_method(records, method_name)
        delayable = Delayable(records, **options)
        return delayable._capture(method_name, tuple(args), dict(kwargs or {})).delay()

    # -- running ----------------------------------------------------------------------

    def _call_values(self) -> dict[str, Any]:
        self.ensure_one()
        return {
            "uuid": self.uuid,
            "model_name": self.model_name,
            "method_name": self.method_name,
            "record_ids": self.record_ids,
            "args": self.args,
            "kwargs": self.kwargs,
            "user_id": self.user_id.id,
            "company_id": self.company_id.id,
            "context": self.context,
        }

    def run_now(self) -> bool:
        """Run these pending jobs now, in the current transaction (see PRODUCT.md 5)."""
        for job in self:
            execution.run_in_transaction(self.env, job.id)
        return True

    def _run_graph_now(self) -> None:
        """Synchronous mode: run these jobs and the ones they release, in dependency
        order, as a worker would, until none is pending (retries run again at once);
        then the first failure raises."""
        graph = set(self._ids)

        def next_job() -> Any:
            pending = self.search(
                [("id", "in", list(graph)), ("state", "=", JobState.PENDING)],
                order="priority, id",
                limit=1,
            )
            graph.update(pending._released_ids())
            return pending

        execution.run_until_settled(self.env, next_job)

    def _released_ids(self) -> list[int]:
        if not self:
            return []
        self.env.cr.execute(
            "SELECT job_id FROM queue_job_dependency WHERE parent_id = %s", [self.id]
        )
        return [row[0] for row in self.env.cr.fetchall()]

    # -- manual actions ----------------------------------------------------------------

    def _check_states(self, method: str) -> None:
        """Refuse the manual action ``method`` unless every job is in a state it accepts."""
        allowed = ACCEPTS[method]
        action = method.replace("_", " ")
        wrong = [job for job in self if job.state not in allowed]
        if wrong:
            shown = ", ".join(f"{job.id} ({job.state})" for job in wrong[:10])
            raise ValueError(
                f"cannot {action} queue.job {shown}: only {', '.join(allowed)} jobs can"
            )

    def requeue(self) -> bool:
        """failed/cancelled/done -> pending, attempts reset and error cleared."""
        self._check_states("requeue")
        for job in self:
            if job.identity_key:
                holder = self.search(
                    [
                        ("identity_key", "=", job.identity_key),
                        ("state", "in", list(ACTIVE)),
                        ("id", "!=", job.id),
                    ],
                    limit=1,
                )
                if holder:
                    raise ValueError(
                        f"cannot requeue queue.job {job.id}: job {holder.id} is {holder.state} "
                        f"with the same identity key {job.identity_key!r}"
                    )
        states.requeue(self.env.cr, self._ids)
        return True

    def cancel(self) -> bool:
        """waiting/pending/started -> cancelled (a started job's worker stops it and
        its writes are rolled back), and its dependents are cancelled."""
        self._check_states("cancel")
        states.force_state(self.env.cr, self._ids, JobState.CANCELLED)
        return True

    def set_done(self) -> bool:
        """Mark done by hand; on_done dependents are released."""
        self._check_states("set_done")
        states.force_state(self.env.cr, self._ids, JobState.DONE)
        return True

    def set_failed(self, message: str = "set failed by hand") -> bool:
        """Mark failed by hand; dependents fail or run (on_error) as for a real failure."""
        self._check_states("set_failed")
        states.force_state(self.env.cr, self._ids, JobState.FAILED, message)
        return True
