"""Fields: typed attributes of models, stored in columns (or relation tables).

A field converts values between three forms:

- the *record* form that user code reads and assigns (``False`` for an empty
  Char, a recordset for a Many2one, ...);
- the *cache* form held in the environment's record cache (``None`` when
  empty, an id for a Many2one, a tuple of ids for an x2many);
- the *column* form sent to the database.

Every value coming from user code goes through :meth:`Field.to_cache`, which
refuses wrong types with an error naming the model, the field and the value.
"""

from __future__ import annotations

import builtins
import itertools
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .recordset import Recordset

if TYPE_CHECKING:
    from .models import BaseModel

_counter = itertools.count()


#: one compact encoder for every Json column (json.dumps with options builds one per call)
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _json_text() -> Callable[[Any], str]:
    """The text of a JSON value, as ``_JSON_ENCODER.encode`` gives it.

    ``JSONEncoder.encode`` builds a new C encoder on every call, which costs more
    than encoding a small value: this one is built once. Values in cache form
    have been through ``json.dumps`` already (no cycles to look for).
    """
    make = getattr(json.encoder, "c_make_encoder", None)  # not in the typeshed stubs
    if make is None:  # a Python without the C accelerator
        return _JSON_ENCODER.encode
    encoder = make(
        None,  # no cycle markers
        _JSON_ENCODER.default,
        json.encoder.encode_basestring_ascii,
        None,  # no indent
        ":",
        ",",
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )
    return lambda value: "".join(encoder(value, 0))


_to_json_text = _json_text()
#: the text of an empty list or dict, as the encoder writes it
_EMPTY_JSON_TEXT: dict[type, str] = {list: "[]", dict: "{}"}
#: the text a Json column stores for a value in cache form (compact, ASCII)
json_text = _to_json_text

#: the range of an INTEGER column (32 bits on PostgreSQL): Integer fields and record ids
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

#: what no text column can hold: NUL (PostgreSQL refuses it) and lone surrogates
#: (halves of UTF-16 pairs, which have no UTF-8 form)
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages: a refused
    value may be megabytes long, or an int too long to print."""
    try:
        text = repr(value)
    except ValueError:  # int beyond sys.get_int_max_str_digits()
        return f"<int of {value.bit_length()} bits>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


#: ``\u0000`` in JSON text, not preceded by an odd number of backslashes (an
#: escaped backslash followed by ``u0000`` is harmless text)
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def unstorable_char(value: str) -> str | None:
    """What in ``value`` a database cannot store as text (a NUL character, a lone
    surrogate), said in words; None when there is nothing."""
    if value.isascii():  # the common case, checked in C
        return None if "\x00" not in value else f"a NUL character at index {value.index(chr(0))}"
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    char = found.group()
    what = "a NUL character" if char == "\x00" else f"a lone surrogate {char!r}"
    return f"{what} at index {found.start()}"


def storable_text(value: str) -> str:
    """``value`` with what a database cannot store as text (NUL characters, lone
    surrogates) written as escapes (``\\x00``, ``\\ud800``): for text the engine stores
    without having chosen it, such as an exception's message, where refusing it would
    lose the failure."""
    if unstorable_char(value) is None:
        return value
    return _UNSTORABLE.sub(lambda found: found.group().encode("unicode_escape").decode(), value)


class Field:
    """Base class of every field type."""

    type: str = ""
    column_kind: str | None = None  # portable column kind, None when not stored in a column
    relational = False

    # set from ``options`` by __init__
    required: bool
    default: Any
    index: bool
    readonly: bool
    help: str | None

    #: the keyword arguments a field of this type accepts, with their defaults
    options: dict[str, Any] = {
        "required": False,
        "default": None,
        "index": False,
        "readonly": False,
        "help": None,
    }

    def __init__(self, string: str | None = None, **kwargs: Any):
        unknown = set(kwargs) - set(self.options)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}() got unknown option(s) {', '.join(sorted(unknown))}; "
                f"accepted: string, {', '.join(self.options)}"
            )
        self._sequence = next(_counter)
        #: the arguments given explicitly, merged when an extension redefines the field
        self.args: dict[str, Any] = (
            {"string": string, **kwargs} if string is not None else dict(kwargs)
        )
        self.string = string
        for key, default in self.options.items():
            setattr(self, key, kwargs.get(key, default))
        self.name = ""
        self.model_name = ""

    def __set_name__(self, owner: builtins.type, name: str) -> None:
        self.name = name

    def setup(self, name: str, model: builtins.type[BaseModel]) -> None:
        """Bind a registry's copy of the field to its model class."""
        self.name = name
        self.model_name = model._name
        if self.string is None:
            self.string = name.replace("_id", "").replace("_", " ").strip().capitalize()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_name}.{self.name})"

    # -- descriptor -------------------------------------------------------------

    def __get__(self, record: BaseModel | None, owner: builtins.type) -> Any:
        if record is None:
            return self
        ids = record._ids
        if not ids:
            return self.to_record(None, record)
        if len(ids) > 1:
            raise ValueError(f"expected a single record to read {self.name!r}, got {record!r}")
        values = record.env.cache.get(self.model_name, {}).get(self.name)
        if values is None or ids[0] not in values:
            record._fetch_field(self)
            values = record.env.cache[self.model_name][self.name]
        return self.to_record(values[ids[0]], record)

    def __set__(self, record: BaseModel, value: Any) -> None:
        record.write({self.name: value})

    # -- conversions --------------------------------------------------------------

    def _bad(
        self, value: Any, expected: str, error: builtins.type[Exception] = TypeError
    ) -> Exception:
        return error(f"{self.model_name}.{self.name}: expected {expected}, got {short_repr(value)}")

    def to_cache(self, value: Any, model: BaseModel) -> Any:
        """Validate a value given by user code; return its cache form."""
        return None if value is None or value is False else value

    def to_record(self, value: Any, record: BaseModel) -> Any:
        return False if value is None else value

    def to_column(self, value: Any) -> Any:
        """Cache form to the value sent to the database."""
        return value

    def from_column(self, value: Any) -> Any:
        """Database value to cache form."""
        return value

    @property
    def converts_from_column(self) -> bool:
        """Whether :meth:`from_column` does anything (reading skips it when not)."""
        return type(self).from_column is not Field.from_column

    def to_read(self, value: Any, record: BaseModel) -> Any:
        """Cache form to what ``read()`` returns."""
        return self.to_record(value, record)

    def default_value(self, model: BaseModel) -> Any:
        default = self.default
        if callable(default):
            default = default(model)
        return default


class Char(Field):
    type = "char"
    column_kind = "varchar"

    def to_cache(self, value: Any, model: BaseModel) -> Any:
        if value is None or value is False:
            return None
        if not isinstance(value, str):
            raise self._bad(value, "a string")
        problem = unstorable_char(value)
        if problem:
            raise ValueError(f"{self.model_name}.{self.name}: text with {problem} cannot be stored")
        return value


class Text(Char):
    type = "text"
    column_kind = "text"


class Integer(Field):
    type = "integer"
    column_kind = "int"

    def to_cache(self, value: Any, model: BaseModel) -> Any:
        if value is None or value is False:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(value, "an int")
        if not INT_MIN <= value <= INT_MAX:
            raise self._bad(value, f"an int from {INT_MIN} to {INT_MAX}", ValueError)
        return value

    def to_record(self, value: Any, record: BaseModel) -> Any:
        return 0 if value is None else value


class Float(Field):
    type = "float"
    column_kind = "float"

    def to_cache(self, value: Any, model: BaseModel) -> Any:
        if value is None or value is False:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(value, "a number")
        return float(value)

    def to_record(self, value: Any, record: BaseModel) -> Any:
        return 0.0 if value is None else value

    def from_column(self, value: Any) -> Any:
        return None if value is None else float(value)


class Boolean(Field):
    type = "boolean"
    column_kind = "bool"

    def to_cache(self, value: Any, model: BaseModel) -> Any:
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._bad(value, "True or False")
        return value

    def to_record(self, value: Any, record: BaseModel) -> Any:
        return bool(value)

    def from_column(self, value: Any) -> Any:
        return None if value is None else bool(value)


class Date(Field):
    type = "date"
    column_kind = "date"

    def to_cache(self, value: Any, model: BaseModel) -> Any:
        if value is None or value is False:
            return None
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise self._bad(value, "a date or 'YYYY-MM-DD'", ValueError) from None
        if isinstance(value, datetime) or not isinstance(value, date):
            raise self._bad(value, "a date or 'YYYY-MM-DD'")
        return value

    def from_column(self, value: Any) -> Any:
        return date.fromisoformat(value) if isinstance(value, str) else value


_EPOCH = datetime(1970, 1, 1)


def to_naive_utc(value: datetime) -> datetime:
    """Datetimes are stored naive, in UTC: an aware one is converted first."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


class Datetime(Field):
    """A point in time, naive UTC in Python; aware values are converted to UTC."""

    type = "datetime"
    column_kind = "datetime"

    @staticmethod
    def now() -> datetime:
        """The current time, naive UTC (half the cost of ``datetime.now(UTC)`` made naive;
        a timedelta's microseconds given by position cost less than by keyword)."""
        return _EPOCH + timedelta(0, 0, time.time_ns() // 1000)

    def to_cache(self, value: Any, model: BaseModel) -> Any:
        if value is None or value is False:
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise self._bad(value, "a datetime or 'YYYY-MM-DD HH:MM:SS'", ValueError) from None
        if not isinstance(value, datetime):
            raise self._bad(value, "a datetime or 'YYYY-MM-DD HH:MM:SS'")
        return to_naive_utc(value)

    def from_column(self, value: Any) -> Any:
        return datetime.fromisoformat(value) if isinstance(value, str) else value


class Selection(Field):
    """One value out of ``selection``: a list of ``(value, label)`` or a method name."""

    type = "selection"
    column_kind = "varchar"
    selection: Any = ()

    options = {**Field.options, "selection": ()}

    def __init__(self, selection: Any = (), string: str | None = None, **kwargs: Any):
        super().__init__(string, selection=selection, **kwargs)

    def get_values(self, model: BaseModel) -> list[str]:
        selection = self.selection
        if isinstance(selection, str):
            selection = getattr(model, selection)()
        elif callable(selection):
            selection = selection(model)
        return [key for key, _label in selection]

    def to_cache(self, value: Any, model: BaseModel) -> Any:
        if value is None or value is False:
            return None
        if not isinstance(value, str):
            raise self._bad(value, "a string")
        allowed = self.get_values(model)
        if value not in allowed:
            raise ValueError(
                f"{self.model_name}.{self.name}: {value!r} is not one of "
                f"{', '.join(map(repr, allowed))}"
            )
        return value


class Json(Field):
    """Any JSON value (dict, list, str, number, bool); ``None`` when empty."""

    type = "json"
    column_kind = "json"

    def to_cache(self, value: Any, model: BaseModel) -> Any:
        if value is None:
            return None
        try:
            text = json.dumps(value, ensure_ascii=False)  # NUL escaped, surrogates kept
        except (TypeError, ValueError) as exc:
            raise self._bad(value, f"a JSON value ({exc})") from None
        problem = unstorable_char(text)
        if problem is None and "\\u0000" in text and _JSON_NUL.search(text):
            problem = "a NUL character"
        if problem:
            where = problem.partition(" at index ")[0]  # an index in the JSON text would mislead
            raise ValueError(f"{self.model_name}.{self.name}: JSON with {where} cannot be stored")
        # a round trip gives the form the database would give back
        return json.loads(text)

    def to_record(self, value: Any, record: BaseModel) -> Any:
        return value

    def to_column(self, value: Any) -> Any:
        if value is None:
            return None
        if not value:  # an empty list or dict (a job's kwargs, usually): its text is known
            text = _EMPTY_JSON_TEXT.get(type(value))
            if text is not None:
                return text
        return _to_json_text(value)

    def from_column(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


class _Relational(Field):
    relational = True
    comodel_name: str = ""

    options = {**Field.options, "comodel_name": ""}

    def __init__(self, comodel_name: str, string: str | None = None, **kwargs: Any):
        super().__init__(string, comodel_name=comodel_name, **kwargs)

    def setup(self, name: str, model: builtins.type[BaseModel]) -> None:
        super().setup(name, model)
        if self.comodel_name not in model.pool:
            raise KeyError(f"{self!r}: unknown comodel {self.comodel_name!r}")

    def _ids_of(self, value: Any, model: BaseModel) -> list[int]:
        if isinstance(value, Recordset):
            if value._name != self.comodel_name:
                raise self._bad(value, f"{self.comodel_name} records")
            return list(value._ids)
        if isinstance(value, list | tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            return list(value)
        raise self._bad(value, f"{self.comodel_name} records or a list of ids")


class Many2one(_Relational):
    """A reference to one record of ``comodel_name``; ``ondelete`` set null, cascade or restrict."""

    type = "many2one"
    column_kind = "fk"
    ondelete = "set null"
    options = {**_Relational.options, "ondelete": "set null"}

    def __init__(self, comodel_name: str, string: str | None = None, **kwargs: Any):
        ondelete = kwargs.get("ondelete", "set null")
        if ondelete not in ("set null", "cascade", "restrict"):
            raise ValueError(
                f"ondelete must be 'set null', 'cascade' or 'restrict', got {ondelete!r}"
            )
        super().__init__(comodel_name, string, **kwargs)

    def to_cache(self, value: Any, model: BaseModel) -> Any:
        if value is None or value is False:
            return None
        if isinstance(value, Recordset):
            if value._name != self.comodel_name or len(value) > 1:
                raise self._bad(value, f"one {self.comodel_name} record")
            return value._ids[0] if value._ids else None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(value, f"a {self.comodel_name} record or id")
        if not 0 < value <= INT_MAX:
            raise self._bad(value, f"a {self.comodel_name} id from 1 to {INT_MAX}", ValueError)
        return value

    def to_record(self, value: Any, record: BaseModel) -> Any:
        comodel = record.env[self.comodel_name]
        if value is None:
            return comodel
        # the target is fetched together with the targets of the records read with this one
        targets = _Targets(record._field_cache(self.name), record._prefetch_ids)
        return comodel.browse((value,))._with_prefetch(targets)

    def to_read(self, value: Any, record: BaseModel) -> Any:
        if value is None:
            return False
        return (value, record.env[self.comodel_name].browse(value).display_name)


class _X2many(_Relational):
    def to_cache(self, value: Any, model: BaseModel) -> Any:
        raise TypeError(f"{self!r} is written with commands, not cached directly")

    def to_record(self, value: Any, record: BaseModel) -> Any:
        return record.env[self.comodel_name].browse(value or ())

    def to_read(self, value: Any, record: BaseModel) -> Any:
        return list(value or ())

    def commands(self, value: Any, model: BaseModel) -> list[tuple]:
        """Normalise a written value into a list of command tuples (see ``Command``)."""
        if value is None or value is False:
            return [(5, 0, 0)]
        if isinstance(value, Recordset):
            return [(6, 0, self._ids_of(value, model))]
        if not isinstance(value, list | tuple):
            raise self._bad(value, "a list of commands or ids")
        if all(_is_id(v) for v in value):
            return [(6, 0, list(value))]
        return [self._command(command) for command in value]

    def _command(self, command: Any) -> tuple:
        """Check one command tuple and pad it to three items."""
        if (
            not isinstance(command, list | tuple)
            or not command
            or len(command) > 3
            or isinstance(command[0], bool)
            or command[0] not in range(7)
        ):
            raise self._bad(command, "a command tuple (0..6, id, values) or an id", ValueError)
        code, target, values = (*command, 0, 0)[:3]
        if code in (1, 2, 3, 4) and not _is_id(target):
            raise self._bad(command, f"a {self.comodel_name} id as second item", ValueError)
        if code in (0, 1) and not isinstance(values, dict):
            raise self._bad(command, "a dict of values as third item", ValueError)
        if code == 6 and not (isinstance(values, list | tuple) and all(map(_is_id, values))):
            raise self._bad(command, "a list of ids as third item", ValueError)
        return (code, target, values)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class _Targets:
    """The records a Many2one points to over a prefetch set, listed when first iterated.

    Reading a Many2one on each record of a large set must not scan the whole set
    each time: the scan happens once, when the first target is fetched.
    """

    __slots__ = ("_cache", "_ids", "_source")

    def __init__(self, cache: dict[int, Any], source: Any):
        self._cache, self._source = cache, source
        self._ids: tuple[int, ...] | None = None

    def __iter__(self) -> Any:
        if self._ids is None:
            found = map(self._cache.get, self._source)
            self._ids = tuple(dict.fromkeys(t for t in found if t is not None))
        return iter(self._ids)


class One2many(_X2many):
    """The records of ``comodel_name`` whose ``inverse_name`` Many2one points here."""

    type = "one2many"
    inverse_name: str = ""
    options = {**_Relational.options, "inverse_name": ""}

    def __init__(
        self, comodel_name: str, inverse_name: str, string: str | None = None, **kwargs: Any
    ):
        super().__init__(comodel_name, string, inverse_name=inverse_name, **kwargs)

    def setup(self, name: str, model: builtins.type[BaseModel]) -> None:
        super().setup(name, model)
        inverse = model.pool[self.comodel_name]._fields.get(self.inverse_name)
        if not isinstance(inverse, Many2one) or inverse.comodel_name != model._name:
            raise ValueError(
                f"{self!r}: {self.comodel_name}.{self.inverse_name} must be a Many2one "
                f"to {model._name}"
            )


class Many2many(_X2many):
    """Records of ``comodel_name`` linked through a relation table of two id columns."""

    type = "many2many"
    relation: str | None = None
    column1: str | None = None
    column2: str | None = None
    options = {**_Relational.options, "relation": None, "column1": None, "column2": None}

    def __init__(
        self,
        comodel_name: str,
        relation: str | None = None,
        column1: str | None = None,
        column2: str | None = None,
        string: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(
            comodel_name, string, relation=relation, column1=column1, column2=column2, **kwargs
        )

    def setup(self, name: str, model: builtins.type[BaseModel]) -> None:
        super().setup(name, model)
        table1, table2 = model._table, model.pool[self.comodel_name]._table
        if table1 == table2 and not (self.relation and self.column1 and self.column2):
            raise ValueError(
                f"{self!r}: a Many2many to its own model needs relation, column1, column2"
            )
        self.relation = self.relation or f"{min(table1, table2)}_{max(table1, table2)}_rel"
        self.column1 = self.column1 or f"{table1}_id"
        self.column2 = self.column2 or f"{table2}_id"


class Alias(Field):
    """Another name of a field of the same model: ``eta = fields.Alias("scheduled_at")``.

    It has no column of its own. Reading, assigning, ``read()``, ``create()``,
    ``write()``, domains and ``order`` all take the alias for its target; giving
    both with different values is refused.
    """

    options = {**Field.options, "target": ""}

    def __init__(self, target: str = "", string: str | None = None, **kwargs: Any):
        if not isinstance(target, str) or not target:
            raise TypeError(f"Alias() needs the name of the field it stands for, got {target!r}")
        super().__init__(string, target=target, **kwargs)
        self.target: str = target

    def setup(self, name: str, model: builtins.type[BaseModel]) -> None:
        super().setup(name, model)
        target = model._fields.get(self.target)
        if target is None or isinstance(target, Alias | Id):
            raise KeyError(f"{self!r}: {model._name} has no field {self.target!r} to stand for")
        self.type = target.type

    def resolve(self, model: BaseModel) -> Field:
        """The field this alias stands for."""
        return model._fields[self.target]

    def __get__(self, record: BaseModel | None, owner: builtins.type) -> Any:
        if record is None:
            return self
        return record._fields[self.target].__get__(record, owner)

    def __set__(self, record: BaseModel, value: Any) -> None:
        record.write({self.target: value})


class Id(Field):
    type = "integer"

    def __get__(self, record: BaseModel | None, owner: builtins.type) -> Any:
        if record is None:
            return self
        ids = record._ids
        if not ids:
            return False
        if len(ids) > 1:
            raise ValueError(f"expected a single record to read 'id', got {record!r}")
        return ids[0]

    def __set__(self, record: BaseModel, value: Any) -> None:
        raise TypeError("the id of a record cannot be assigned")


class Command:
    """Names for the x2many write commands (Odoo's tuples)."""

    CREATE, UPDATE, DELETE, UNLINK, LINK, CLEAR, SET = range(7)

    @staticmethod
    def create(values: dict) -> tuple:
        return (0, 0, values)

    @staticmethod
    def update(id: int, values: dict) -> tuple:
        return (1, id, values)

    @staticmethod
    def delete(id: int) -> tuple:
        return (2, id, 0)

    @staticmethod
    def unlink(id: int) -> tuple:
        return (3, id, 0)

    @staticmethod
    def link(id: int) -> tuple:
        return (4, id, 0)

    @staticmethod
    def clear() -> tuple:
        return (5, 0, 0)

    @staticmethod
    def set(ids: list[int]) -> tuple:
        return (6, 0, list(ids))


def merge(previous: Field | None, field: Field) -> Field:
    """The field an extension ends with: a redefinition of the same type keeps the
    arguments it does not give again, as in Odoo."""
    args = dict(field.args)
    if previous is not None and type(previous) is type(field):
        args = {**previous.args, **args}
    new = _instantiate(type(field), args)
    new._sequence = previous._sequence if previous is not None else field._sequence
    return new


def _instantiate(cls: type[Field], args: dict[str, Any]) -> Field:
    args = dict(args)
    if issubclass(cls, _Relational):
        comodel = args.pop("comodel_name")
        if issubclass(cls, One2many):
            return cls(comodel, args.pop("inverse_name"), **args)
        return cls(comodel, **args)
    if issubclass(cls, Selection):
        return cls(args.pop("selection", ()), **args)
    return cls(**args)
