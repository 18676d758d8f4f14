"""The registry: the models of a set of modules, composed for one database."""

from __future__ import annotations

import importlib
import logging
import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, cast

from .. import db
from ..exceptions import DatabaseOpenError
from . import fields as _fields
from . import relations
from .api import SUPERUSER_ID, Environment
from .models import BaseModel, MetaModel
from .schema import BOOKKEEPING_TABLE

if TYPE_CHECKING:
    from .schema import SchemaChanges

_logger = logging.getLogger(__name__)


class Registry:
    """Models composed from ``modules`` for the database at ``database_url``.

    Building it imports the modules, composes one class per model (every
    definition of the model in load order, so that ``super()`` chains through
    all of them) and brings the database schema up to date.

    With ``create=False`` the database must exist already and hold job_worker's
    tables (``job-worker init`` makes them); otherwise, and when the database cannot
    be opened at all, :class:`~job_worker.exceptions.DatabaseOpenError` is raised
    with a one-line reason. ``init=False`` leaves the schema as it is.
    """

    #: modules loaded before the ones given: users, companies and partners, which
    #: every environment speaks of (a subclass adds the modules of a product)
    builtin_modules: ClassVar[tuple[str, ...]] = ("job_worker.base",)

    def __init__(
        self,
        database_url: str,
        modules: list[str] | tuple[str, ...] = (),
        *,
        init: bool = True,
        create: bool = True,
        pooled: bool = True,
    ):
        if isinstance(modules, str):
            raise TypeError(f"modules must be a list of module names, got the string {modules!r}")
        self.database_url = database_url
        self.backend = db.connect(database_url, create=create, pooled=pooled)
        self.modules: list[ModuleType] = load_modules([*self.builtin_modules, *modules])
        self.models: dict[str, type[BaseModel]] = {}
        #: (model, field) -> the fields showing the same rows from the other side
        self.inverses: relations.InverseMap = {}
        self._build_models()
        #: what building the registry changed in the schema (None: ``init=False``)
        self.schema_changes: SchemaChanges | None = None
        try:
            if not create:
                self._check_initialised(upgrading=init)
            if init:
                from .schema import upgrade

                self.schema_changes = upgrade(self)
        except BaseException:
            self.backend.close()
            raise

    def _check_initialised(self, upgrading: bool) -> None:
        """The database was set up (its module bookkeeping exists); unless this build is
        about to upgrade the schema, every table of the loaded models too (a database set
        up by an older version, or without one of these modules, is upgraded by
        ``job-worker init``)."""
        from .schema import installed_modules, migrations_of

        with self.cursor(readonly=True) as cr:
            tables = self.backend.existing_tables(cr)
            installed = installed_modules(cr) if BOOKKEEPING_TABLE in tables else {}
        if BOOKKEEPING_TABLE not in tables:
            raise DatabaseOpenError(
                f"no job_worker tables in {self.backend.name}: run `job-worker init` first"
            )
        if upgrading:
            return
        missing = sorted(
            model._table
            for model in self.models.values()
            if not model._abstract and model._table not in tables
        )
        if missing:
            raise DatabaseOpenError(
                f"the schema of {self.backend.name} is older than the loaded modules (no"
                f" table {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}):"
                " run `job-worker init` to upgrade it"
            )
        behind = [
            f"{module.__name__} {installed[module.__name__]} < {steps[-1].version}"
            for module in self.modules
            if module.__name__ in installed
            and (steps := migrations_of(module))
            and installed[module.__name__] < steps[-1].version
        ]
        if behind:
            raise DatabaseOpenError(
                f"the schema of {self.backend.name} is older than the loaded modules"
                f" (migrations not run: {', '.join(behind)}): run `job-worker init` to"
                " upgrade it"
            )

    def __repr__(self) -> str:
        return f"<Registry {db.redact_url(self.database_url)} modules={[m.__name__ for m in self.modules]}>"

    # -- models -------------------------------------------------------------------

    def __getitem__(self, model_name: str) -> type[BaseModel]:
        try:
            return self.models[model_name]
        except KeyError:
            raise KeyError(f"unknown model {model_name!r}") from None

    def __contains__(self, model_name: object) -> bool:
        return model_name in self.models

    def _build_models(self) -> None:
        names = {m.__name__ for m in self.modules}
        definitions = [
            cls
            for cls in MetaModel.definitions
            if cls.__module__ in names or any(cls.__module__.startswith(n + ".") for n in names)
        ]
        order = {m.__name__: i for i, m in enumerate(self.modules)}

        def rank(cls: type) -> int:
            top = max(
                (n for n in names if cls.__module__ == n or cls.__module__.startswith(n + ".")),
                key=len,
            )
            return order[top]

        definitions.sort(key=rank)  # stable: keeps definition order within a module
        defs: dict[str, list[type]] = {}
        parents: dict[str, list[str]] = {}
        for cls in definitions:
            name = cls.__dict__.get("_name") or ""
            inherit = cls.__dict__.get("_inherit", ())
            inherit = [inherit] if isinstance(inherit, str) else list(inherit)
            model = name or (inherit[0] if inherit else "")
            if not model:
                raise TypeError(f"{cls.__qualname__} needs a _name or an _inherit")
            if model not in defs:
                if not name and model in inherit:
                    raise TypeError(
                        f"{cls.__module__}.{cls.__qualname__} extends unknown model {model!r} "
                        f"(is the module defining it loaded first?)"
                    )
                defs[model], parents[model] = [], []
            defs[model].append(cls)
            for parent in inherit:
                if parent != model and parent not in parents[model]:
                    parents[model].append(parent)
        for model in defs:
            self._build_model(model, defs, parents, ())
        self._setup_relations()

    def _build_model(
        self, model: str, defs: dict, parents: dict, building: tuple
    ) -> type[BaseModel]:
        if model in self.models:
            return self.models[model]
        if model in building:
            raise TypeError(
                f"models inherit from each other in a cycle: {' -> '.join((*building, model))}"
            )
        if model not in defs:
            raise KeyError(f"unknown model {model!r} (inherited by {building[-1]!r})")
        bases = [*reversed(defs[model])]
        # as in Odoo, every model inherits the abstract model "base" (if a module defines it)
        extra = (
            ["base"] if model != "base" and "base" in defs and "base" not in parents[model] else []
        )
        for parent in [*parents[model], *extra]:
            bases.append(self._build_model(parent, defs, parents, (*building, model)))
        attrs: dict[str, Any] = {
            "_composed": True,
            "_name": model,
            "pool": self,
            "__module__": __name__,
        }
        # _table, _order, ... come from the latest definition that sets them
        cls = cast(type[BaseModel], type(model.replace(".", "_"), tuple(bases), attrs))
        # a model is abstract or not as its first definition says, whatever extends it
        cls._abstract = defs[model][0]._abstract
        # extra indexes add up over every definition (an extension does not drop them)
        cls._indexes = list(
            {
                index.name: index
                for klass in reversed(cls.__mro__)
                for index in vars(klass).get("_indexes", ())
            }.values()
        )
        if not cls._abstract:
            explicit = next(
                (d.__dict__["_table"] for d in reversed(defs[model]) if "_table" in d.__dict__),
                None,
            )
            cls._table = explicit or model.replace(".", "_")
        if not cls._rec_name:
            cls._rec_name = "name" if _has_field(cls, "name") else None
        self.models[model] = cls
        self._setup_fields(cls)
        return cls

    def _setup_fields(self, cls: type[BaseModel]) -> None:
        found: dict[str, _fields.Field] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, _fields.Field) and not isinstance(value, _fields.Id):
                    found[name] = _fields.merge(found.get(name), value)
        cls._fields = {"id": BaseModel.id}
        cls._column_fields = ()
        ordered = sorted(found.items(), key=lambda item: item[1]._sequence)
        for name, field in ordered:
            setattr(cls, name, field)
            cls._fields[name] = field

    def _setup_relations(self) -> None:
        """Bind every field to its model, once every model exists (comodels are checked)."""
        for cls in self.models.values():
            for name, field in cls._fields.items():
                if name != "id":
                    field.setup(name, cls)
            cls._column_fields = tuple(
                f for f in cls._fields.values() if f.column_kind is not None and f.name != "id"
            )
            cls._insert_sql_cache = {}
            cls._select_columns_cache = None
            cls._column_values = staticmethod(_row_values([f.name for f in cls._column_fields]))
            cls._column_converters = tuple(
                (i, convert)
                for i, f in enumerate(cls._column_fields)
                if (convert := self._column_converter(f)) is not None
            )
            cls._relational_columns = tuple(f.name for f in cls._column_fields if f.relational)
        self.inverses = relations.inverse_map(self.models.values())
        for cls in self.models.values():
            cls._relational_inverses = tuple(
                pair
                for name in cls._relational_columns
                for pair in self.inverses.get((cls._name, name), ())
            )

    def _column_converter(self, field: _fields.Field) -> Callable[[Any], Any] | None:
        """What turns a value of ``field`` in cache form into what the database binds
        (None: nothing to do): the field's own ``to_column``, then the backend's writer."""
        own = field.to_column if type(field).to_column is not _fields.Field.to_column else None
        write = self.backend.column_writer(field.column_kind) if field.column_kind else None
        if own is not None and write is not None:
            return lambda value: write(own(value))
        return own or write

    # -- transactions -------------------------------------------------------------

    def cursor(self, *, readonly: bool = False) -> db.Cursor:
        """A new transaction: ``with registry.cursor() as cr:`` commits at the end
        of the block, or rolls back if it raises."""
        cr = self.backend.cursor(readonly=readonly)
        cr.registry = self
        return cr

    @contextmanager
    def environment(
        self, uid: int = SUPERUSER_ID, context: dict | None = None
    ) -> Iterator[Environment]:
        """An environment on a new cursor, committed when the block ends."""
        with self.cursor() as cr:
            yield Environment(cr, uid, context or {})

    def close(self) -> None:
        self.backend.close()


def _has_field(cls: type, name: str) -> bool:
    return any(isinstance(vars(k).get(name), _fields.Field) for k in cls.__mro__)


def load_modules(names: list[str] | tuple[str, ...]) -> list[ModuleType]:
    """Import modules and their ``DEPENDS`` first, each once, in dependency order.

    A module that does not exist raises ``ValueError`` ("no such Python module");
    an error inside a module that exists is raised as it is."""
    loaded: dict[str, ModuleType] = {}

    def load(name: str, chain: tuple[str, ...]) -> None:
        if name in loaded:
            return
        if name in chain:
            raise ValueError(
                f"modules depend on each other in a cycle: {' -> '.join((*chain, name))}"
            )
        if not isinstance(name, str) or not name:
            raise TypeError(f"a module name is a non-empty string, got {name!r}")
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                raise ValueError(f"cannot load module {name!r}: no such Python module") from exc
            raise
        for dep in getattr(module, "DEPENDS", ()):
            load(dep, (*chain, name))
        loaded[name] = module

    for name in names:
        load(name, ())
    return list(loaded.values())


def _row_values(names: list[str]) -> Callable[[dict[str, Any]], tuple]:
    """A function giving a row's values in the order of ``names`` (one C call)."""
    if len(names) > 1:
        return operator.itemgetter(*names)
    return lambda row: tuple(row[name] for name in names)
