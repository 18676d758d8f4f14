"""Bringing a database up to date with the models of a registry.

Tables, columns and indexes are created from the model definitions. What that
cannot express (renames, data rewrites, changed index definitions) is done by
numbered migrations that a module lists in ``MIGRATIONS``; the versions a
database has reached are recorded in ``job_worker_module`` and each applied
step in ``job_worker_migration``.

A fresh database gets the current schema straight from the models and records
every migration as applied; an older one runs its pending migrations' ``pre``
steps, then the schema sync, then their ``post`` steps — all in one
transaction, under a lock that serialises processes starting together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as _field
from typing import TYPE_CHECKING, Any

from ..db import Column, Cursor, Index
from . import fields as _fields
from .api import SUPERUSER_ID, Environment

if TYPE_CHECKING:
    from .models import BaseModel
    from .registry import Registry

_logger = logging.getLogger(__name__)

#: the table that says which modules a database was set up for: it exists once
#: ``job-worker init`` (or any registry built with ``init``) ran
BOOKKEEPING_TABLE = "job_worker_module"


@dataclass(frozen=True)
class Migration:
    """One numbered step of a module's schema history.

    ``pre(cr)`` runs before tables and columns are synced from the models (rename
    a column here so the sync does not add an empty one), ``post(env)`` after
    (fill a new column).
    """

    version: int
    description: str
    pre: Callable[[Cursor], Any] | None = None
    post: Callable[[Environment], Any] | None = None


@dataclass
class SchemaChanges:
    """What :func:`upgrade` changed in the database (``job-worker init`` reports it)."""

    #: the database had no job_worker tables before: the schema was created
    created: bool = False
    #: modules recorded for the first time
    installed: list[str] = _field(default_factory=list)
    #: migrations run, as ``"module N: description"``
    migrated: list[str] = _field(default_factory=list)
    #: tables and columns (``table.column``) created by the sync
    tables: list[str] = _field(default_factory=list)
    columns: list[str] = _field(default_factory=list)
    indexes: list[str] = _field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.created
            or self.installed
            or self.migrated
            or self.tables
            or self.columns
            or self.indexes
        )


_BOOKKEEPING = [
    """CREATE TABLE IF NOT EXISTS job_worker_module (
           name VARCHAR PRIMARY KEY,
           version INTEGER NOT NULL,
           installed_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS job_worker_migration (
           module VARCHAR NOT NULL,
           version INTEGER NOT NULL,
           description VARCHAR NOT NULL,
           applied_at TIMESTAMP NOT NULL,
           fresh BOOLEAN NOT NULL,
           PRIMARY KEY (module, version))""",
]


def migrations_of(module: Any) -> list[Migration]:
    steps = list(getattr(module, "MIGRATIONS", ()))
    versions = [m.version for m in steps]
    if versions != sorted(set(versions)) or any(v < 1 for v in versions):
        raise ValueError(
            f"{module.__name__}.MIGRATIONS must have increasing versions from 1, got {versions}"
        )
    return steps


def installed_modules(cr: Cursor) -> dict[str, int]:
    """The modules the database has been set up for, with the version each reached."""
    cr.execute("SELECT name, version FROM job_worker_module", ())
    return dict(cr.fetchall())


def upgrade(registry: Registry) -> SchemaChanges:
    """Create or upgrade the schema of every loaded module, then run their data hooks;
    return what changed."""
    changes = SchemaChanges()
    with registry.cursor() as cr:
        backend = registry.backend
        backend.lock_schema(cr)
        changes.created = BOOKKEEPING_TABLE not in backend.existing_tables(cr)
        for statement in _BOOKKEEPING:
            cr.execute(statement)
        installed = installed_modules(cr)
        env = Environment(cr, SUPERUSER_ID, {})
        pending: dict[str, list[Migration]] = {}
        for module in registry.modules:
            if module.__name__ in installed:
                pending[module.__name__] = [
                    m for m in migrations_of(module) if m.version > installed[module.__name__]
                ]
        for name, steps in pending.items():
            for step in steps:
                if step.pre:
                    _logger.info(
                        "migrating %s to %s (pre): %s",
                        name,
                        step.version,
                        step.description,
                        extra={"event": "schema.migrate"},
                    )
                    step.pre(cr)
        sync_tables(registry, cr, changes)
        now = _fields.Datetime.now()
        for name, steps in pending.items():
            for step in steps:
                if step.post:
                    step.post(env)
                _record(cr, name, step, now, fresh=False)
                changes.migrated.append(f"{name} {step.version}: {step.description}")
            if steps:
                cr.execute(
                    "UPDATE job_worker_module SET version = %s WHERE name = %s",
                    (steps[-1].version, name),
                )
        for module in registry.modules:
            if module.__name__ in installed:
                continue
            steps = migrations_of(module)
            cr.execute(
                "INSERT INTO job_worker_module (name, version, installed_at) VALUES (%s, %s, %s)",
                (module.__name__, steps[-1].version if steps else 0, now),
            )
            for step in steps:
                _record(cr, module.__name__, step, now, fresh=True)
            changes.installed.append(module.__name__)
            init = getattr(module, "init_data", None)
            if init is not None:
                init(env)
        for module in registry.modules:
            # data the modules keep in step with their code (periodic jobs declared in it)
            sync = getattr(module, "sync_data", None)
            if sync is not None:
                sync(env)
    return changes


def _record(cr: Cursor, module: str, step: Migration, now: Any, *, fresh: bool) -> None:
    cr.execute(
        "INSERT INTO job_worker_migration (module, version, description, applied_at, fresh)"
        " VALUES (%s, %s, %s, %s, %s)",
        (module, step.version, step.description, now, fresh),
    )


def table_columns(model: type[BaseModel]) -> list[Column]:
    columns = [Column("id", "id", not_null=True)]
    for field in model._column_fields:
        references = None
        ondelete = "set null"
        if isinstance(field, _fields.Many2one):
            references = model.pool[field.comodel_name]._table
            ondelete = field.ondelete
        columns.append(
            Column(field.name, field.column_kind or "", field.required, references, ondelete)
        )
    return columns


def table_indexes(model: type[BaseModel], dialect: str | None = None) -> list[Index]:
    """The indexes of ``model``'s table (on ``dialect``: those it gets)."""
    table = model._table
    indexes = [
        Index(f"{table}_{f.name}_index", table, (f.name,)) for f in model._column_fields if f.index
    ]
    for index in model._indexes:
        if dialect is None or index.dialects is None or dialect in index.dialects:
            indexes.append(
                Index(index.name, table, tuple(index.columns), index.unique, index.where)
            )
    return indexes


def _fill_value(field: _fields.Field, model: BaseModel) -> Any:
    """What an added column is set to in existing rows: a constant default, if any."""
    if field.default is None or callable(field.default):
        return None
    return field.to_column(field.to_cache(field.default, model))


def sync_tables(registry: Registry, cr: Cursor, changes: SchemaChanges | None = None) -> None:
    """Create missing tables, columns and indexes; never drop anything. What is
    created is listed in ``changes``."""
    changes = changes if changes is not None else SchemaChanges()
    backend = registry.backend
    env = Environment(cr, SUPERUSER_ID, {})
    existing = backend.existing_tables(cr)
    relations: dict[str, _fields.Many2many] = {}
    deferred: list[tuple[str, Column]] = []
    missing_indexes: list[Index] = []
    for model in registry.models.values():
        if model._abstract:
            continue
        for field in model._fields.values():
            if isinstance(field, _fields.Many2many) and field.relation:
                relations.setdefault(field.relation, field)
        table = model._table
        if table not in existing:
            # a foreign key to a table not created yet is added once it exists
            columns = table_columns(model)
            now = [
                c
                for c in columns
                if c.references in (None, table)
                or c.references in existing
                or backend.forward_references
            ]
            deferred.extend((table, c) for c in columns if c not in now)
            backend.create_table(cr, table, now)
            changes.tables.append(table)
            existing.add(table)
            present: set[str] = set()
        else:
            schema = backend.describe_table(cr, table)
            for column in table_columns(model):
                if column.name not in schema.columns:
                    field = model._fields[column.name]
                    _logger.info(
                        "adding column %s.%s",
                        table,
                        column.name,
                        extra={"event": "schema.add_column"},
                    )
                    backend.add_column(cr, table, column, _fill_value(field, model(env, ())))
                    changes.columns.append(f"{table}.{column.name}")
            present = set(schema.indexes)
        missing_indexes.extend(
            i for i in table_indexes(model, backend.dialect) if i.name not in present
        )
    for table, column in deferred:
        backend.add_column(cr, table, column)
    for index in missing_indexes:  # after the deferred columns they may cover
        backend.create_index(cr, index)
        changes.indexes.append(index.name)
    for relation, field in relations.items():
        if relation in existing:
            continue
        model = registry[field.model_name]
        comodel = registry[field.comodel_name]
        assert field.column1 and field.column2
        changes.tables.append(relation)
        backend.create_table(
            cr,
            relation,
            [
                Column(field.column1, "fk", True, model._table, "cascade"),
                Column(field.column2, "fk", True, comodel._table, "cascade"),
            ],
        )
        backend.create_index(
            cr, Index(f"{relation}_pair", relation, (field.column1, field.column2), unique=True)
        )
        backend.create_index(
            cr, Index(f"{relation}_{field.column2}_index", relation, (field.column2,))
        )
