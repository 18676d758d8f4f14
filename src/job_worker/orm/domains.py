"""Domains: Odoo's search conditions, compiled to SQL.

A domain is a list of terms ``(field_path, operator, value)`` and the prefix
operators ``'&'``, ``'|'`` and ``'!'`` (Polish notation; terms side by side are
joined with ``'&'``). A dotted path goes through relational fields:
``("company_id.name", "=", "Acme")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import fields
from .recordset import Recordset

if TYPE_CHECKING:
    from .models import BaseModel

COMPARISONS = ("=", "!=", "<", ">", "<=", ">=")
LIKES = ("like", "ilike", "not like", "not ilike", "=like", "=ilike")
OPERATORS = (*COMPARISONS, "in", "not in", *LIKES)


def normalize(domain: Any) -> list:
    """Check the shape of a domain and make the implicit '&' explicit."""
    if not isinstance(domain, list | tuple):
        raise ValueError(f"a domain is a list of terms, got {domain!r}")
    result: list = []
    expected = 1  # how many terms are still needed to close the expression
    for item in domain:
        if expected == 0:  # a new term after a complete expression: implicit '&'
            result.insert(0, "&")
            expected = 1
        if item in ("&", "|"):
            expected += 1
        elif item == "!":
            pass
        elif isinstance(item, list | tuple) and len(item) == 3:
            path, operator, _value = item
            if not isinstance(path, str) or not path:
                raise ValueError(f"bad domain term {item!r}: the field must be a name")
            if operator not in OPERATORS:
                raise ValueError(
                    f"bad domain operator {operator!r} in {tuple(item)!r}; "
                    f"accepted: {', '.join(OPERATORS)}"
                )
            expected -= 1
        else:
            raise ValueError(
                f"bad domain term {item!r}: expected (field, operator, value), '&', '|' or '!'"
            )
        result.append(tuple(item) if isinstance(item, list) else item)
    if expected > (1 if not domain else 0):
        raise ValueError(f"incomplete domain {domain!r}: an operator lacks its terms")
    return result


def to_sql(model: BaseModel, domain: Any, alias: str | None = None) -> tuple[str, list[Any]]:
    """Compile ``domain`` on ``model`` into a WHERE clause and its parameters."""
    terms = normalize(domain)
    if not terms:
        return "TRUE", []
    sql, params, _end = _compile(model, alias or model._table, terms, 0, False)
    return sql, params


#: the operator a '!' turns a term's operator into (as Odoo does: '!' then '=' is '!=',
#: which also matches empty values, unlike SQL's NOT)
NEGATIONS = {
    "=": "!=",
    "!=": "=",
    "<": ">=",
    ">=": "<",
    ">": "<=",
    "<=": ">",
    "in": "not in",
    "not in": "in",
    "like": "not like",
    "not like": "like",
    "ilike": "not ilike",
    "not ilike": "ilike",
}


def _compile(
    model: BaseModel, alias: str, terms: list, start: int, negate: bool
) -> tuple[str, list[Any], int]:
    """The expression starting at ``terms[start]`` (negated if asked): SQL, parameters,
    and where the next expression starts. '!' is pushed down to the terms."""
    item = terms[start]
    if item == "!":
        return _compile(model, alias, terms, start + 1, not negate)
    if item in ("&", "|"):
        left, left_params, end = _compile(model, alias, terms, start + 1, negate)
        right, right_params, end = _compile(model, alias, terms, end, negate)
        op = "AND" if (item == "&") != negate else "OR"  # De Morgan
        return f"({left} {op} {right})", left_params + right_params, end
    path, operator, value = item
    if negate and operator in NEGATIONS:
        sql, params = _term(model, alias, path, NEGATIONS[operator], value)
    elif negate:
        sql, params = _term(model, alias, path, operator, value)
        sql = f"(NOT {sql})"
    else:
        sql, params = _term(model, alias, path, operator, value)
    return sql, params, start + 1


def _field(model: BaseModel, name: str) -> fields.Field:
    field = model._fields.get(name)
    if field is None:
        raise ValueError(f"unknown field {name!r} on model {model._name!r} in domain")
    if isinstance(field, fields.Alias):
        return field.resolve(model)
    return field


def _ids(value: Any, what: str) -> list:
    if isinstance(value, Recordset):
        return list(value._ids)
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    raise ValueError(f"operator {what!r} needs a list of values, got {value!r}")


def _term(model: BaseModel, alias: str, path: str, operator: str, value: Any) -> tuple[str, list]:
    operator, value = _records_value(operator, value)
    name, _, rest = path.partition(".")
    if name == "id" and not rest:
        return _id_term(model, f'"{alias}"."id"', operator, value)
    field = _field(model, name)
    if rest:
        if not field.relational:
            raise ValueError(f"{model._name}.{name} is not relational: cannot follow {path!r}")
        comodel = model.env[field.comodel_name]  # type: ignore[attr-defined]
        sub_alias = f"{comodel._table}_{len(path)}"
        sub_sql, sub_params = to_sql(comodel, [(rest, operator, value)], alias=sub_alias)
        sub = f'SELECT "{sub_alias}".id FROM "{comodel._table}" AS "{sub_alias}" WHERE {sub_sql}'
        return _relational_in(model, alias, field, sub, sub_params)
    if isinstance(field, fields._X2many):
        return _x2many_term(model, alias, field, operator, value)
    return _column_term(model, field, f'"{alias}"."{field.name}"', operator, value)


def _records_value(operator: str, value: Any) -> tuple[str, Any]:
    """A recordset as a value: its ids for 'in', its id (or False when empty) for '=';
    '=' with several records means 'in', as in Odoo."""
    if not isinstance(value, Recordset):
        return operator, value
    if operator in ("in", "not in"):
        return operator, list(value._ids)
    if len(value) > 1 and operator in ("=", "!="):
        return ("in" if operator == "=" else "not in"), list(value._ids)
    if len(value) > 1:
        raise ValueError(f"operator {operator!r} compares with one record, got {value!r}")
    return operator, value._ids[0] if value._ids else False


def _check_ids(values: list, what: str) -> list[int]:
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{what} is compared with ids (ints), got {value!r}")
    return values


def _id_term(model: BaseModel, column: str, operator: str, value: Any) -> tuple[str, list]:
    if operator in ("in", "not in"):
        ids = [v for v in _ids(value, operator) if v is not None and v is not False]
        sql, params = model.env.cr.backend.in_ids(column, _check_ids(ids, "id"))
        return (f"(NOT {sql})" if operator == "not in" else sql), params
    if operator not in COMPARISONS:
        raise ValueError(f"operator {operator!r} does not apply to ids")
    if value is False or value is None:
        if operator not in ("=", "!="):
            raise ValueError(f"cannot compare ids with {operator!r} {value!r}")
        return ("FALSE", []) if operator == "=" else ("TRUE", [])
    _check_ids([value], "id")
    op = "<>" if operator == "!=" else operator
    return f"{column} {op} %s", [value]


def _relational_in(
    model: BaseModel, alias: str, field: fields.Field, sub: str, params: list
) -> tuple[str, list]:
    if isinstance(field, fields.Many2one):
        return f'"{alias}"."{field.name}" IN ({sub})', params
    if isinstance(field, fields.One2many):
        comodel = model.env[field.comodel_name]
        owners = f'SELECT "{field.inverse_name}" FROM "{comodel._table}" WHERE id IN ({sub})'
    else:
        assert isinstance(field, fields.Many2many)
        owners = (
            f'SELECT "{field.column1}" FROM "{field.relation}" WHERE "{field.column2}" IN ({sub})'
        )
    return f'"{alias}"."id" IN ({owners})', params


def _x2many_term(
    model: BaseModel, alias: str, field: fields._X2many, operator: str, value: Any
) -> tuple[str, list]:
    comodel = model.env[field.comodel_name]
    if isinstance(field, fields.One2many):
        inverse = f'"{field.inverse_name}"'
        linked = f'SELECT {inverse} FROM "{comodel._table}" WHERE {inverse} IS NOT NULL'
        target = "id"
    else:
        assert isinstance(field, fields.Many2many)
        linked = f'SELECT "{field.column1}" FROM "{field.relation}" WHERE TRUE'
        target = f'"{field.column2}"'
    if value is False or value is None:
        if operator not in ("=", "!="):
            raise ValueError(f"{field!r}: only = and != compare with {value!r}")
        negate = "NOT " if operator == "=" else ""
        return f'"{alias}"."id" {negate}IN ({linked})', []
    if operator in ("=", "!=", "in", "not in"):
        ids = [value] if operator in ("=", "!=") else _ids(value, operator)
        sql, params = model.env.cr.backend.in_ids(target, _check_ids(ids, repr(field)))
        negate = "NOT " if operator in ("!=", "not in") else ""
        return f'"{alias}"."id" {negate}IN ({linked} AND {sql})', params
    raise ValueError(f"{field!r}: operator {operator!r} is not supported on x2many fields")


#: the fields whose values like/ilike/=like match as text
_TEXTUAL = (fields.Char, fields.Selection)


def _column_term(
    model: BaseModel, field: fields.Field, column: str, operator: str, value: Any
) -> tuple[str, list]:
    backend = model.env.cr.backend
    boolean = isinstance(field, fields.Boolean)
    if operator in ("in", "not in"):
        values = _ids(value, operator)
        # an empty value matches NULL (for a Boolean, False is empty too)
        has_null = any(v is None or v is False for v in values)
        values = [_convert(model, field, v) for v in values if not (v is None or (v is False))] + (
            [False] if boolean and has_null else []
        )
        sql, params = backend.in_values(column, values) if values else ("FALSE", [])
        if operator == "in":
            return (f"({sql} OR {column} IS NULL)" if has_null else sql), params
        if has_null:
            return f"(NOT {sql} AND {column} IS NOT NULL)", params
        return f"(NOT {sql} OR {column} IS NULL)", params
    if operator in LIKES:
        if not isinstance(field, _TEXTUAL):
            raise ValueError(f"operator {operator!r} applies to text fields, not to {field!r}")
        if not isinstance(value, str):
            raise ValueError(f"operator {operator!r} needs a string, got {value!r}")
        pattern = value if operator.startswith("=") else f"%{value}%"
        sql = backend.ilike(column) if "ilike" in operator else f"{column} LIKE %s"
        if operator.startswith("not "):
            return f"(NOT {sql} OR {column} IS NULL)", [pattern]
        return sql, [pattern]
    # comparisons
    if value is None or value is False:
        if boolean and operator in ("=", "!="):
            if operator == "=":
                return f"({column} IS NULL OR {column} = %s)", [False]
            return f"{column} = %s", [True]
        if operator == "=":
            return f"{column} IS NULL", []
        if operator == "!=":
            return f"{column} IS NOT NULL", []
        raise ValueError(f"cannot compare {field!r} with {operator!r} {value!r}")
    converted = _convert(model, field, value)
    if boolean and operator == "=" and converted is False:
        return f"({column} IS NULL OR {column} = %s)", [False]
    if operator == "!=":
        return f"({column} <> %s OR {column} IS NULL)", [converted]
    return f"{column} {operator} %s", [converted]


def _convert(model: BaseModel, field: fields.Field, value: Any) -> Any:
    if isinstance(field, fields.Many2one):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{field!r} is compared with ids, got {value!r}")
        return value
    if isinstance(field, fields.Selection):
        if not isinstance(value, str):
            raise TypeError(f"{field!r}: expected a string, got {value!r}")
        return value
    return field.to_column(field.to_cache(value, model))


def parse_order(model: BaseModel, order: str | None) -> str:
    """Validate an order spec ("name desc, id") and return it as SQL."""
    if not order:
        order = model._order
    if not isinstance(order, str):
        raise ValueError(f"order must be a string like 'name desc, id', got {order!r}")
    nulls_sort_high = model.env.cr.backend.nulls_sort_high
    parts = []
    for item in order.split(","):
        words = item.split()
        if not words:
            raise ValueError(f"bad order {order!r}")
        name, *modifiers = words
        if name != "id":
            field = model._fields.get(name)
            if isinstance(field, fields.Alias):
                field = field.resolve(model)
                name = field.name
            if field is None or field.column_kind is None:
                raise ValueError(f"cannot order {model._name} by {name!r}: not a stored field")
        mods = " ".join(m.upper() for m in modifiers)
        direction, _, nulls = mods.partition("NULLS")
        direction, nulls = direction.strip(), nulls.strip()
        if (
            direction not in ("", "ASC", "DESC")
            or nulls not in ("", "FIRST", "LAST")
            or ("NULLS" in mods and not nulls)
        ):
            raise ValueError(f"bad order modifier {' '.join(modifiers)!r} in {order!r}")
        if not nulls and not nulls_sort_high:
            # empty values sort as the largest on every database, as on PostgreSQL
            nulls = "FIRST" if direction == "DESC" else "LAST"
        sql = f'"{model._table}"."{name}" {direction}'.rstrip()
        parts.append(f"{sql} NULLS {nulls}" if nulls else sql)
    return ", ".join(parts)
