"""Models and recordsets.

Application code defines models as classes (``_name`` for a new model,
``_inherit`` to extend one or mix others in). A :class:`~job_worker.orm.registry.Registry`
composes, for each model, one class per registry out of every definition of the
modules it loads, so that ``super()`` chains through all of them in load order.

An instance of a composed class is a *recordset*: an environment plus an
ordered tuple of ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..exceptions import MissingError
from . import domains, relations
from . import fields as ofields
from .recordset import Recordset

if TYPE_CHECKING:
    from ..db.backend import Backend
    from .api import Environment
    from .registry import Registry

#: how many records are read from the database at once when a field is missing
PREFETCH_MAX = 20000
#: how many rows one INSERT statement carries
INSERT_BATCH = 500
#: how many parameters one statement carries at most
MAX_PARAMS = 30000

_INT = frozenset({int})


@dataclass(frozen=True)
class Index:
    """An extra index of a model's table, declared in ``_indexes``.

    ``where`` makes it partial; it is portable SQL over the table's columns.
    ``dialects``: the databases that get it (None: every one), for an index whose
    worth depends on the database (SQLite writes each index page a transaction
    touches at its commit, one writer at a time).
    """

    name: str
    columns: tuple[str, ...]
    unique: bool = False
    where: str | None = None
    dialects: tuple[str, ...] | None = None


class MetaModel(type):
    """Records every model definition class, in the order Python runs them."""

    definitions: ClassVar[list[type]] = []

    def __init__(cls, name: str, bases: tuple, attrs: dict) -> None:
        super().__init__(name, bases, attrs)
        if attrs.get("_composed") or attrs.get("_register") is False:
            return
        if "_name" not in attrs and "_inherit" not in attrs:
            raise TypeError(f"model class {name} needs a _name or an _inherit")
        MetaModel.definitions.append(cls)


class BaseModel(Recordset, metaclass=MetaModel):
    """What every model has. Use :class:`Model` or :class:`AbstractModel`."""

    _register = False
    _name: str = ""
    _description: str | None = None
    _inherit: str | list[str] | tuple = ()
    _table: str = ""
    _order: str = "id"
    _rec_name: str | None = None
    _abstract = True
    _indexes: ClassVar[list[Index]] = []

    # set on composed classes by the registry
    pool: ClassVar[Registry]
    _fields: ClassVar[dict[str, ofields.Field]] = {}
    _column_fields: ClassVar[tuple[ofields.Field, ...]] = ()
    _insert_sql_cache: ClassVar[dict[tuple[int, str, bool], str]] = {}
    #: a row's values (cache form) in the order of ``_column_fields``
    _column_values: ClassVar[Callable[[dict[str, Any]], tuple]] = staticmethod(lambda row: ())
    #: (position, to_column) of the columns whose cache form is not what the database takes
    _column_converters: ClassVar[tuple[tuple[int, Callable[[Any], Any]], ...]] = ()
    #: the names of the columns that hold relations (Many2one)
    _relational_columns: ClassVar[tuple[str, ...]] = ()
    #: the (model, field) pairs whose cached values a new row of this model makes stale
    #: (:func:`~job_worker.orm.relations.inverse_map` of ``_relational_columns``)
    _relational_inverses: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: what ``_select_columns`` gives, once it has worked it out
    _select_columns_cache: ClassVar[Any] = None

    id = ofields.Id()

    __slots__ = ("_ids", "_prefetch_ids", "env")

    if TYPE_CHECKING:
        # fields are attributes that only a registry knows: let type checkers read them
        def __getattr__(self, name: str) -> Any: ...

    def __init__(
        self, env: Environment, ids: tuple[int, ...] = (), prefetch_ids: Iterable[int] | None = None
    ):
        self.env = env
        self._ids = ids
        self._prefetch_ids = ids if prefetch_ids is None else prefetch_ids

    # -- recordset basics -------------------------------------------------------

    @property
    def ids(self) -> list[int]:
        return list(self._ids)

    def browse(self, ids: Any = ()) -> BaseModel:
        """Records of this model by id; nothing is read until a field is."""
        if ids is None or ids is False:
            ids = ()
        elif isinstance(ids, int) and not isinstance(ids, bool):
            ids = (ids,)
        else:
            ids = tuple(ids)
            if not set(map(type, ids)) <= _INT:  # checked in C: sets of 10^5 ids are common
                for id_ in ids:
                    if isinstance(id_, bool) or not isinstance(id_, int):
                        raise TypeError(f"{self._name}.browse() takes ids (ints), got {id_!r}")
        return type(self)(self.env, ids)

    def _with_prefetch(self, prefetch_ids: Iterable[int]) -> BaseModel:
        return type(self)(self.env, self._ids, prefetch_ids)

    def with_env(self, env: Environment) -> BaseModel:
        return type(self)(env, self._ids, self._prefetch_ids)

    def with_context(self, *args: dict, **kwargs: Any) -> BaseModel:
        """Same records, context replaced by ``args[0]`` (if given) updated with ``kwargs``."""
        context = dict(args[0] if args else self.env.context, **kwargs)
        return self.with_env(self.env(context=context))

    def with_user(self, user: Any) -> BaseModel:
        uid = user.id if isinstance(user, BaseModel) else user
        return self.with_env(self.env(user=uid, su=False))

    def with_company(self, company: Any) -> BaseModel:
        """Same records with ``company`` first in the context's allowed companies."""
        cid = company.id if isinstance(company, BaseModel) else company
        if isinstance(cid, bool) or not isinstance(cid, int):
            raise TypeError(f"with_company() takes a res.company record or id, got {company!r}")
        allowed = [c for c in self.env.context.get("allowed_company_ids", ()) if c != cid]
        return self.with_context(allowed_company_ids=[cid, *allowed])

    def sudo(self, flag: bool = True) -> BaseModel:
        return self.with_env(self.env(su=flag))

    def ensure_one(self) -> BaseModel:
        if len(self._ids) != 1:
            raise ValueError(f"expected a single record, got {self!r}")
        return self

    def exists(self) -> BaseModel:
        """The records of this set that are still in the database, in order."""
        if not self._ids:
            return self
        sql, params = self.env.cr.backend.in_ids("id", self._ids)
        self.env.cr.execute(f'SELECT id FROM "{self._table}" WHERE {sql}', params)
        found = {row[0] for row in self.env.cr.fetchall()}
        return self.browse([i for i in self._ids if i in found])

    @property
    def display_name(self) -> str:
        self.ensure_one()
        if self._rec_name:
            return str(self[self._rec_name] or "")
        return f"{self._name},{self.id}"

    def __bool__(self) -> bool:
        return bool(self._ids)

    def __iter__(self) -> Iterator[BaseModel]:
        cls, env, prefetch = type(self), self.env, self._prefetch_ids
        for id_ in self._ids:
            yield cls(env, (id_,), prefetch)

    def __reversed__(self) -> Iterator[BaseModel]:
        cls, env, prefetch = type(self), self.env, self._prefetch_ids
        for id_ in reversed(self._ids):
            yield cls(env, (id_,), prefetch)

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            field = self._fields.get(key)
            if field is None:
                raise KeyError(f"{self._name} has no field {key!r}")
            return field.__get__(self, type(self))
        if isinstance(key, slice):
            return type(self)(self.env, self._ids[key], self._prefetch_ids)
        return type(self)(self.env, (self._ids[key],), self._prefetch_ids)

    def __setitem__(self, key: str, value: Any) -> None:
        self.write({key: value})

    def __contains__(self, item: Any) -> bool:
        if isinstance(item, str):
            return item in self._fields
        self._check_same_model(item, "in")
        return len(item) == 1 and item._ids[0] in self._ids

    def _check_same_model(self, other: Any, op: str) -> None:
        if not isinstance(other, BaseModel) or other._name != self._name:
            raise TypeError(f"cannot use {op!r} between {self!r} and {other!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseModel):
            return NotImplemented
        return self._name == other._name and set(self._ids) == set(other._ids)

    def __hash__(self) -> int:
        return hash((self._name, frozenset(self._ids)))

    def __add__(self, other: BaseModel) -> BaseModel:
        self._check_same_model(other, "+")
        return self.browse(self._ids + other._ids)

    def __or__(self, other: BaseModel) -> BaseModel:
        self._check_same_model(other, "|")
        return self.browse(tuple(dict.fromkeys(self._ids + other._ids)))

    def __and__(self, other: BaseModel) -> BaseModel:
        self._check_same_model(other, "&")
        keep = set(other._ids)
        return self.browse(tuple(dict.fromkeys(i for i in self._ids if i in keep)))

    def __sub__(self, other: BaseModel) -> BaseModel:
        self._check_same_model(other, "-")
        drop = set(other._ids)
        return self.browse(tuple(i for i in self._ids if i not in drop))

    def __repr__(self) -> str:
        return f"{self._name}{self._ids!r}"

    # -- functional helpers -----------------------------------------------------

    def mapped(self, func: str | Callable[[BaseModel], Any]) -> Any:
        """Values of a field path for every record: a recordset for relational
        fields (duplicates removed), else a list."""
        if callable(func):
            values = [func(rec) for rec in self]
            if values and all(isinstance(v, BaseModel) for v in values):
                result = values[0].browse(())
                for value in values:
                    result = result | value
                return result
            return values
        if not isinstance(func, str):
            raise TypeError(f"mapped() takes a field path or a function, got {func!r}")
        recs: Any = self
        for name in func.split("."):
            field = recs._fields.get(name) if isinstance(recs, BaseModel) else None
            if name == "id":
                return list(recs._ids)
            if field is None:
                raise ValueError(
                    f"mapped(): unknown field {name!r} on {getattr(recs, '_name', recs)!r}"
                )
            if field.relational:
                comodel = recs.env[field.comodel_name]  # type: ignore[attr-defined]
                ids: list[int] = []
                for rec in recs:
                    ids.extend(rec[name]._ids)
                recs = comodel.browse(tuple(dict.fromkeys(ids)))
            else:
                return recs._values_of(field)
        return recs

    def _values_of(self, field: ofields.Field) -> list[Any]:
        """The values of a field for every record, fetched together, in order."""
        values, to_record = self._field_cache(field.name), field.to_record
        result = []
        for id_ in self._ids:
            if id_ not in values:
                field.__get__(type(self)(self.env, (id_,), self._prefetch_ids), type(self))
            result.append(to_record(values[id_], self))
        return result

    def filtered(self, func: str | Callable[[BaseModel], Any]) -> BaseModel:
        """The records for which ``func`` (or the field path) is truthy."""
        if isinstance(func, str):
            path = func
            func = lambda rec: any(rec.mapped(path))  # noqa: E731
        return self.browse(tuple(rec.id for rec in self if func(rec)))

    def sorted(
        self, key: str | Callable[[BaseModel], Any] | None = None, reverse: bool = False
    ) -> BaseModel:
        """Records sorted by ``key`` (a function, or a field name: empty values last),
        or by the model's ``_order`` in the database."""
        if key is None:
            result = self.search([("id", "in", self._ids)])
            return result.browse(tuple(reversed(result._ids))) if reverse else result
        if isinstance(key, str):
            name = key

            def key(rec: BaseModel) -> Any:
                value = rec[name]
                empty = value is False or value is None
                return (empty, None if empty else value)  # empty values last, as in SQL

        return self.browse(tuple(rec.id for rec in sorted(self, key=key, reverse=reverse)))

    # -- reading ----------------------------------------------------------------

    def _cache(self) -> dict[str, dict[int, Any]]:
        """This model's part of the record cache: field name -> record id -> value."""
        return self.env.cache.setdefault(self._name, {})

    def _field_cache(self, name: str) -> dict[int, Any]:
        """The cached values of one field of this model, by record id."""
        return self.env.cache.setdefault(self._name, {}).setdefault(name, {})

    def _fetch_field(self, field: ofields.Field) -> None:
        """Fill the cache for ``field`` on this record and, in one query, on the
        records it was read with (its prefetch set)."""
        values = self._field_cache(field.name)
        want = self._ids[0]
        ids = [want]
        for id_ in self._prefetch_ids:
            if id_ != want and id_ not in values:
                ids.append(id_)
                if len(ids) >= PREFETCH_MAX:
                    break
        ids = list(dict.fromkeys(ids))
        if isinstance(field, ofields._X2many):
            relations.fetch_x2many(self, field, ids)
        else:
            self._fetch_columns(ids)
        if want not in values:
            raise MissingError(f"record {self._name}({want},) does not exist or was deleted")

    def _fetch_columns(self, ids: list[int]) -> None:
        query, params = self._fetch_columns_query(ids)
        self.env.cr.execute(query, params)
        self._cache_fetched(self.env.cr.fetchall())

    def _fetch_columns_query(self, ids: list[int]) -> tuple[str, list[Any]]:
        """The statement that reads every column of the records ``ids`` (its rows go to
        :meth:`_cache_fetched`): a caller may send it together with others."""
        backend = self.env.cr.backend
        select, _readers = self._select_columns(backend)
        sql, params = backend.in_ids("id", ids)
        return f"{select} WHERE {sql}", params

    def _cache_fetched(self, rows: list[tuple[Any, ...]]) -> None:
        """Cache the rows that :meth:`_fetch_columns_query` read."""
        if not rows:
            return
        _select, readers = self._select_columns(self.env.cr.backend)
        ids_read, *values = zip(*rows, strict=True)  # column by column
        cache = self._cache()
        for (name, from_column), column in zip(readers, values, strict=True):
            if from_column is not None:
                column = tuple(map(from_column, column))
            cache.setdefault(name, {}).update(zip(ids_read, column, strict=True))

    @classmethod
    def _select_columns(
        cls, backend: Backend
    ) -> tuple[str, tuple[tuple[str, Callable[[Any], Any] | None], ...]]:
        """The SELECT of every column of the table, and for each column its field's
        name and ``from_column`` (None when the value needs no converting); built
        once per model (a composed class belongs to one registry, so one backend)."""
        known = cls._select_columns_cache
        if known is None:
            fields_ = cls._column_fields
            columns = ", ".join(
                backend.select_column(f'"{f.name}"', f.column_kind) for f in fields_
            )
            readers = tuple(
                (f.name, f.from_column if f.converts_from_column else None) for f in fields_
            )
            known = (f'SELECT id, {columns} FROM "{cls._table}"', readers)
            cls._select_columns_cache = known
        return known

    def read(self, fields: list[str] | None = None) -> list[dict[str, Any]]:
        """The records as dicts: Many2one as ``(id, display name)``, x2many as id lists."""
        # without names: every field but the aliases (they repeat their targets)
        names = fields or [
            n for n, f in self._fields.items() if n != "id" and not isinstance(f, ofields.Alias)
        ]
        selected = []
        aliases = {}  # alias name -> its target's name
        for name in names:
            field = self._fields.get(name)
            if field is None:
                raise ValueError(f"{self._name} has no field {name!r}")
            if isinstance(field, ofields.Alias):
                field = field.resolve(self)
                aliases[name] = field.name
            if name != "id":
                selected.append(field)
        cache = self._cache()
        rows = []
        for rec in self:
            for field in selected:
                field.__get__(rec, type(rec))  # fills the cache for the whole set at once
            rows.append((rec, {f.name: cache[f.name][rec.id] for f in selected}))
        display: dict[str, dict[int, str]] = {}
        for field in selected:
            if isinstance(field, ofields.Many2one):  # display names in one query per comodel
                targets = {values[field.name] for _rec, values in rows} - {None}
                comodel = self.env[field.comodel_name].browse(tuple(targets))
                display[field.name] = {t.id: t.display_name for t in comodel}
        result = []
        for rec, values in rows:
            row: dict[str, Any] = {"id": rec.id}
            for field in selected:
                value = values[field.name]
                if field.name in display:
                    row[field.name] = (
                        False if value is None else (value, display[field.name][value])
                    )
                else:
                    row[field.name] = field.to_read(value, rec)
            for alias, target in aliases.items():
                row[alias] = row.pop(target) if target not in names else row[target]
            result.append(row)
        return result

    def invalidate_recordset(self, fnames: list[str] | None = None) -> None:
        """Forget cached values of these records (all fields, or ``fnames``)."""
        cache = self._cache()
        for name in cache if fnames is None else fnames:
            values = cache.get(name)
            if values:
                for id_ in self._ids:
                    values.pop(id_, None)

    def invalidate_model(self) -> None:
        self.env.cache.pop(self._name, None)

    # -- searching --------------------------------------------------------------

    def search(
        self, domain: Any = (), order: str | None = None, limit: int | None = None, offset: int = 0
    ) -> BaseModel:
        """Records matching ``domain``, in ``order`` (default ``_order``)."""
        where, params = domains.to_sql(self, domain)
        order_by = domains.parse_order(self, order)
        sql = f'SELECT "{self._table}".id FROM "{self._table}" WHERE {where} ORDER BY {order_by}'
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(f"limit must be an int >= 0, got {limit!r}")
        if offset and (isinstance(offset, bool) or not isinstance(offset, int) or offset < 0):
            raise ValueError(f"offset must be an int >= 0, got {offset!r}")
        sql += self.env.cr.backend.limit_offset(limit, offset)
        self.env.cr.execute(sql, params)
        return self.browse(tuple(row[0] for row in self.env.cr.fetchall()))

    def search_count(self, domain: Any = ()) -> int:
        where, params = domains.to_sql(self, domain)
        self.env.cr.execute(f'SELECT COUNT(*) FROM "{self._table}" WHERE {where}', params)
        row = self.env.cr.fetchone()
        return int(row[0]) if row else 0

    # -- writing ----------------------------------------------------------------

    def _check_stored(self) -> None:
        if self._abstract:
            raise TypeError(f"{self._name} is abstract: it has no table to store records in")

    def _split_values(self, vals: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate ``vals``; return (column values in cache form, x2many commands)."""
        if not isinstance(vals, dict):
            raise TypeError(f"{self._name}: values must be a dict, got {vals!r}")
        columns: dict[str, Any] = {}
        x2many: dict[str, Any] = {}
        for name, value in vals.items():
            field = self._fields.get(name)
            if field is None:
                raise ValueError(f"{self._name} has no field {name!r}")
            if name == "id":
                raise ValueError(f"{self._name}: the id of a record is not written")
            if isinstance(field, ofields.Alias):
                field = field.resolve(self)
                name = field.name
            if isinstance(field, ofields._X2many):
                x2many[name] = field.commands(value, self)
            else:
                cached = field.to_cache(value, self)
                if field.required and cached is None:
                    raise ValueError(f"{self._name}.{name} is required, got {value!r}")
                if name in columns and columns[name] != cached:  # a field and its alias
                    raise ValueError(
                        f"{self._name}.{name} is given twice, under an alias, with different"
                        f" values: {columns[name]!r} and {cached!r}; give one of them"
                    )
                columns[name] = cached
        return columns, x2many

    def create(self, vals_list: dict[str, Any] | list[dict[str, Any]]) -> BaseModel:
        """Create records from one dict or a list of dicts, in a few INSERTs.

        Every value is checked before anything is written: bad input raises and
        leaves the database as it was.
        """
        self._check_stored()
        if isinstance(vals_list, dict):
            vals_list = [vals_list]
        elif not isinstance(vals_list, list | tuple):
            raise TypeError(
                f"{self._name}.create() takes a dict or a list of dicts, got {vals_list!r}"
            )
        if not vals_list:
            return self.browse(())
        now = ofields.Datetime.now()
        x2many_fields = [f for f in self._fields.values() if isinstance(f, ofields._X2many)]
        rows: list[dict[str, Any]] = []
        x2many_list: list[dict[str, Any]] = []
        for vals in vals_list:
            columns, x2many = self._split_values(vals)
            for field in self._column_fields:
                if field.name in columns:
                    continue
                if field.name in ("create_date", "write_date"):
                    columns[field.name] = now
                    continue
                columns[field.name] = value = field.to_cache(field.default_value(self), self)
                if value is None and field.required:
                    raise ValueError(f"{self._name}.{field.name} is required")
            for field in x2many_fields:
                if field.name not in x2many and field.default is not None:
                    x2many[field.name] = field.commands(field.default_value(self), self)
            rows.append(columns)
            x2many_list.append(x2many)
        if any(x2many_list):
            # commands create and write other records: all of it happens, or none
            with self.env.cr.savepoint():
                return self._create(rows, x2many_list)
        return self._create(rows, x2many_list)

    def _create(
        self, rows: list[dict[str, Any]], x2many_list: list[dict[str, Any]], *, defer: bool = False
    ) -> BaseModel:
        """Insert ``rows`` (every column, cache form) and cache them; with ``defer`` (on
        a database whose cursor defers inserts), their ids are taken at once and the rows
        written with the cursor's next statement (:meth:`Cursor.defer_insert`)."""
        ids = self._defer_rows(rows) if defer else self._insert_rows(rows)
        cache = self._cache()
        pairs = zip(ids, rows, strict=True)
        if not cache and ids:
            # the transaction's first records of this model (a single enqueue's job): the
            # columns' dicts made at once, with the first row's values
            id_, row = next(pairs)
            cache.update({name: {id_: value} for name, value in row.items()})
        for id_, row in pairs:
            # a row holds a value for each column, unless _insert_rows emptied it
            # (it resolved to an existing record): that one is not cached
            try:  # the columns' dicts are there but for the first rows of a transaction
                for name, value in row.items():
                    cache[name][id_] = value
            except KeyError:
                for name, value in row.items():
                    values = cache.get(name)
                    if values is None:
                        values = cache[name] = {}
                    values[id_] = value
        # (relations.invalidate_inverses of the relational columns, worked out per registry)
        relations.forget_cached(self.env.cache, self._relational_inverses)
        records = type(self)(self.env, tuple(ids))
        if any(x2many_list):
            for record, x2many in zip(records, x2many_list, strict=True):
                for name, commands in x2many.items():
                    relations.write_x2many(record, self._fields[name], commands)  # type: ignore[arg-type]
        return records

    def _insert_rows(self, rows: list[dict[str, Any]], conflict: str = "") -> list[int]:
        """INSERT rows (cache form) in batches; ``conflict`` is an ON CONFLICT clause,
        with which fewer ids than rows may come back."""
        fields_ = self._column_fields
        # stay under the parameters one statement may carry (SQLite: 32766)
        batch_size = max(1, min(INSERT_BATCH, MAX_PARAMS // max(1, len(fields_))))
        ids: list[int] = []
        cr = self.env.cr
        values_of, converters = type(self)._column_values, self._column_converters
        # where RETURNING costs more than the INSERT of a row itself (SQLite), a single
        # row goes without it and its id is the rowid
        rowid = cr.backend.rowid_inserts
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            params: list[Any] = []
            for row in batch:
                values = list(values_of(row))
                for i, convert in converters:
                    values[i] = convert(values[i])
                params += values
            if rowid and len(batch) == 1:
                cr.execute(self._insert_sql(1, conflict, returning=False), params)
                if cr.rowcount:  # 0: the conflict clause skipped the row
                    ids.append(cr.lastrowid)
                continue
            cr.execute(self._insert_sql(len(batch), conflict), params)
            # ids come from one sequence in row order within a statement
            ids.extend(sorted(row[0] for row in cr.fetchall()))
        return ids

    def _defer_rows(self, rows: list[dict[str, Any]]) -> list[int]:
        """Take ids for ``rows`` and hand them to the cursor, which writes them with its
        next statement or at commit; the ids."""
        cr = self.env.cr
        ids = cr.take_ids(self._table, len(rows))
        values_of, converters = type(self)._column_values, self._column_converters
        params: list[Sequence[Any]] = []
        for id_, row in zip(ids, rows, strict=True):
            values = [id_, *values_of(row)]
            for i, convert in converters:
                values[i + 1] = convert(values[i + 1])
            params.append(values)
        cr.defer_insert(self._table, type(self)._deferred_columns(), params, self._describe_row)
        return ids

    @classmethod
    def _deferred_columns(cls) -> tuple[str, ...]:
        """``id``, then the columns in the order of ``_column_fields`` (once per registry)."""
        columns = cls.__dict__.get("_deferred_columns_cache")
        if columns is None:
            columns = ("id", *(f.name for f in cls._column_fields))
            cls._deferred_columns_cache = columns  # type: ignore[attr-defined]
        return columns

    def _describe_row(self, values: Sequence[Any]) -> str:
        """One row given to :meth:`_defer_rows` (its values), as an error names it."""
        return f"{self._name} {values[0]}"

    @classmethod
    def _insert_sql(cls, count: int, conflict: str, returning: bool = True) -> str:
        """The INSERT of ``count`` rows, built once per model and shape."""
        key = (count, conflict, returning)
        sql = cls._insert_sql_cache.get(key)
        if sql is None:
            columns = ", ".join(f'"{f.name}"' for f in cls._column_fields)
            one = "(" + ", ".join(["%s"] * len(cls._column_fields)) + ")"
            sql = (
                f'INSERT INTO "{cls._table}" ({columns}) VALUES {", ".join([one] * count)}'
                f" {conflict}{' RETURNING id' if returning else ''}"
            )
            if len(cls._insert_sql_cache) < 64:
                cls._insert_sql_cache[key] = sql
        return sql

    def write(self, vals: dict[str, Any]) -> bool:
        """Write the same values on every record of the set.

        Every value is checked before anything is written; a record that does not
        exist raises :class:`~job_worker.exceptions.MissingError`.
        """
        self._check_stored()
        columns, x2many = self._split_values(vals)
        if not self._ids:
            return True
        if x2many:
            with self.env.cr.savepoint():
                self._write(columns, x2many)
        else:
            self._write(columns, x2many)
        return True

    def _write(self, columns: dict[str, Any], x2many: dict[str, Any]) -> None:
        cr = self.env.cr
        if columns:
            if "write_date" in self._fields and "write_date" not in columns:
                columns["write_date"] = ofields.Datetime.now()
            names = list(columns)
            assignments = ", ".join(f'"{n}" = %s' for n in names)
            params = [self._fields[n].to_column(columns[n]) for n in names]
            ids = tuple(dict.fromkeys(self._ids))
            sql, id_params = cr.backend.in_ids("id", ids)
            cr.execute(f'UPDATE "{self._table}" SET {assignments} WHERE {sql}', params + id_params)
            relations.invalidate_inverses(self, names)
            if cr.rowcount != len(ids):
                self.invalidate_recordset()
                missing = sorted(set(ids) - set(self.exists()._ids))
                raise MissingError(
                    f"cannot write on {self._name}{tuple(missing)}: deleted or never created"
                )
            cache = self._cache()
            for name, value in columns.items():
                cache.setdefault(name, {}).update(dict.fromkeys(ids, value))
        for record in self:
            for name, commands in x2many.items():
                relations.write_x2many(record, self._fields[name], commands)  # type: ignore[arg-type]

    def unlink(self) -> bool:
        """Delete the records; their Many2many links go with them, and the records
        pointing to them are deleted, detached or protect them, as each Many2one's
        ``ondelete`` says."""
        self._check_stored()
        if not self._ids:
            return True
        relations.check_restrict(self)
        sql, params = self.env.cr.backend.in_ids("id", self._ids)
        self.env.cr.execute(f'DELETE FROM "{self._table}" WHERE {sql}', params)
        # deletes cascade and set null in other tables: forget everything cached
        self.env.cache.clear()
        return True

    def default_get(self, names: list[str]) -> dict[str, Any]:
        return {name: self._fields[name].default_value(self) for name in names}


class AbstractModel(BaseModel):
    """A mixin: fields and methods for other models, no table of its own."""

    _register = False
    _abstract = True


class Model(BaseModel):
    """A model stored in a table (``_table``, default ``_name`` with dots as underscores)."""

    _register = False
    _abstract = False

    create_date = ofields.Datetime("Created on", readonly=True)
    write_date = ofields.Datetime("Last updated on", readonly=True)
