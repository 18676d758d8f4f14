"""Writing x2many fields, and keeping the record cache true across relations.

A One2many is the other side of a Many2one: creating a lead for a partner,
or moving it to another partner, changes ``partner.lead_ids``. A Many2many
relation table may be read from both of its models. So a write on one field
forgets the cached values of the fields that show the same rows from the
other side (:func:`inverse_map` lists them once per registry).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import domains
from . import fields as ofields

if TYPE_CHECKING:
    from .models import BaseModel

#: (model, field) -> the (model, field) pairs whose cached values it changes
InverseMap = dict[tuple[str, str], list[tuple[str, str]]]


def inverse_map(models: Iterable[type[BaseModel]]) -> InverseMap:
    """For each field, the fields of the registry that show its rows from the other side."""
    inverses: InverseMap = {}
    relations: dict[str, list[tuple[str, str]]] = {}
    for model in models:
        for name, field in model._fields.items():
            if isinstance(field, ofields.One2many):
                key = (field.comodel_name, field.inverse_name)
                inverses.setdefault(key, []).append((model._name, name))
            elif isinstance(field, ofields.Many2many) and field.relation:
                relations.setdefault(field.relation, []).append((model._name, name))
    for sharing in relations.values():
        for key in sharing:
            others = [other for other in sharing if other != key]
            if others:
                inverses.setdefault(key, []).extend(others)
    return inverses


def invalidate_inverses(model: BaseModel, fnames: Iterable[str]) -> None:
    """Forget the cached values that a write of ``fnames`` on ``model`` made stale."""
    inverses = model.pool.inverses
    for fname in fnames:
        forget_cached(model.env.cache, inverses.get((model._name, fname), ()))


def forget_cached(cache: dict[str, dict[str, Any]], fields: Iterable[tuple[str, str]]) -> None:
    """Forget the cached values of ``fields`` (``(model, field)`` pairs) in ``cache``."""
    for other_model, other_field in fields:
        cache.get(other_model, {}).pop(other_field, None)


def write_x2many(record: BaseModel, field: ofields._X2many, commands: list[tuple]) -> None:
    """Apply checked command tuples (see :class:`~job_worker.orm.fields.Command`) to
    ``field`` of one record."""
    comodel = record.env[field.comodel_name]
    if isinstance(field, ofields.One2many):
        _write_one2many(record, field, comodel, commands)
    else:
        assert isinstance(field, ofields.Many2many)
        _write_many2many(record, field, comodel, commands)
        invalidate_inverses(record, [field.name])
    record.invalidate_recordset([field.name])


def _write_one2many(
    record: BaseModel, field: ofields.One2many, comodel: BaseModel, commands: list[tuple]
) -> None:
    # every change goes through the comodel's Many2one, which invalidates this field
    inverse, rid = field.inverse_name, record.id
    for code, target, values in commands:
        if code == 0:
            comodel.create({**values, inverse: rid})
        elif code == 1:
            comodel.browse(target).write(values)
        elif code == 2:
            comodel.browse(target).unlink()
        elif code == 3:
            comodel.browse(target).write({inverse: False})
        elif code == 4:
            comodel.browse(target).write({inverse: rid})
        elif code == 5:
            comodel.search([(inverse, "=", rid)]).write({inverse: False})
        elif code == 6:
            keep = comodel.browse(values)
            (comodel.search([(inverse, "=", rid)]) - keep).write({inverse: False})
            keep.write({inverse: rid})


def _write_many2many(
    record: BaseModel, field: ofields.Many2many, comodel: BaseModel, commands: list[tuple]
) -> None:
    cr = record.env.cr
    rel, c1, c2, rid = field.relation, field.column1, field.column2, record.id
    cr.execute(f'SELECT "{c2}" FROM "{rel}" WHERE "{c1}" = %s', [rid])
    current = {row[0] for row in cr.fetchall()}

    def link(ids: Iterable[int]) -> None:
        new = [i for i in dict.fromkeys(ids) if i not in current]
        if new:
            cr.executemany(
                f'INSERT INTO "{rel}" ("{c1}", "{c2}") VALUES (%s, %s)', [(rid, i) for i in new]
            )
            current.update(new)

    def unlink(ids: Iterable[int]) -> None:
        gone = [i for i in ids if i in current]
        if gone:
            sql, params = cr.backend.in_ids(f'"{c2}"', gone)
            cr.execute(f'DELETE FROM "{rel}" WHERE "{c1}" = %s AND {sql}', [rid, *params])
            current.difference_update(gone)

    for code, target, values in commands:
        if code == 0:
            link(comodel.create(values)._ids)
        elif code == 1:
            comodel.browse(target).write(values)
        elif code == 2:
            unlink([target])
            comodel.browse(target).unlink()
        elif code == 3:
            unlink([target])
        elif code == 4:
            link([target])
        elif code == 5:
            unlink(list(current))
        elif code == 6:
            wanted = set(values)
            unlink([i for i in current if i not in wanted])
            link(values)


def fetch_x2many(records: BaseModel, field: ofields._X2many, ids: list[int]) -> None:
    """Cache the targets of ``field`` for the records ``ids`` of ``records``' model, in
    the comodel's order (ids that do not exist are left out of the cache)."""
    cr = records.env.cr
    comodel = records.env[field.comodel_name]
    order = domains.parse_order(comodel, None)
    if isinstance(field, ofields.One2many):
        sql, params = cr.backend.in_ids(f'"{field.inverse_name}"', ids)
        cr.execute(
            f'SELECT "{field.inverse_name}", id FROM "{comodel._table}" WHERE {sql}'
            f" ORDER BY {order}",
            params,
        )
    else:
        assert isinstance(field, ofields.Many2many)
        table = comodel._table
        sql, params = cr.backend.in_ids(f'r."{field.column1}"', ids)
        cr.execute(
            f'SELECT r."{field.column1}", "{table}".id FROM "{field.relation}" r'
            f' JOIN "{table}" ON "{table}".id = r."{field.column2}" WHERE {sql} ORDER BY {order}',
            params,
        )
    found: dict[int, list[int]] = {id_: [] for id_ in ids}
    for owner, target in cr.fetchall():
        found[owner].append(target)
    values = records._field_cache(field.name)
    for id_ in records.browse(ids).exists()._ids:
        values[id_] = tuple(found[id_])


def check_restrict(records: BaseModel) -> None:
    """Refuse to delete records that an ``ondelete="restrict"`` Many2one points to."""
    cr = records.env.cr
    for model in records.pool.models.values():
        if model._abstract:
            continue
        for field in model._column_fields:
            if not (
                isinstance(field, ofields.Many2one)
                and field.comodel_name == records._name
                and field.ondelete == "restrict"
            ):
                continue
            sql, params = cr.backend.in_ids(f'"{field.name}"', records._ids)
            if model._name == records._name:  # rows deleted together do not protect each other
                others, more = cr.backend.in_ids("id", records._ids)
                sql, params = f"{sql} AND NOT {others}", params + more
            cr.execute(
                f'SELECT DISTINCT "{field.name}" FROM "{model._table}" WHERE {sql} LIMIT 20',
                params,
            )
            used = sorted(row[0] for row in cr.fetchall())
            if used:
                raise ValueError(
                    f"cannot delete {records._name}{tuple(used)}: "
                    f"{model._name}.{field.name} points to it (ondelete='restrict')"
                )
