"""mem0's metadata filter grammar: parsed once, compiled to SQL, and evaluated in Python.

Grammar::

    filter   := {field: value | {op: value}, ...}      several keys mean AND
              | {"AND": [filter, ...]} | {"OR": [filter, ...]} | {"NOT": [filter, ...]}
    op       := eq ne gt gte lt lte in nin contains icontains
    value    := string | number | boolean | "*" (the field is present)

Semantics, the same in SQL and in :func:`matches` (a property test holds them together):
- a value compares only with a value of the same kind (text, number, boolean); ``"1"`` never
  equals ``1`` and a text is never greater than a number;
- a missing field (or JSON null) fails every positive test; ``ne`` and ``nin`` are true for it;
- ``contains`` is a substring test on text and a membership test on a list; ``icontains`` is the
  same, case-insensitive (Unicode case folding, done by :func:`fold` on both sides);
- ``NOT [a, b]`` is ``NOT (a AND b)``.

Fields are the built-in columns (``user_id``, ``created_at``, ...) or metadata keys. An unknown
operator, a bad value or an empty list raises ``InvalidFilter``: a filter is never ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from memvault.errors import InvalidFilter

__all__ = [
    "COLUMNS",
    "And",
    "Condition",
    "FilterNode",
    "Not",
    "Or",
    "fold",
    "matches",
    "parse_filter",
    "scope_ids",
    "to_sql",
]

Operator = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "icontains", "*"]
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "icontains")
COLUMNS = (
    "id",
    "user_id",
    "agent_id",
    "run_id",
    "actor_id",
    "role",
    "memory_type",
    "created_at",
    "updated_at",
    "expires_at",
    "importance",
)
SCOPE_FIELDS = ("user_id", "agent_id", "run_id")
_MAX_DEPTH = 16
_MAX_LIST = 1000


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: Operator
    value: Any


@dataclass(frozen=True, slots=True)
class And:
    parts: tuple[FilterNode, ...]


@dataclass(frozen=True, slots=True)
class Or:
    parts: tuple[FilterNode, ...]


@dataclass(frozen=True, slots=True)
class Not:
    part: FilterNode


FilterNode = Condition | And | Or | Not


def fold(text: str) -> str:
    """Case folding for ``icontains``: registered in SQLite so both sides agree on Unicode."""
    return text.casefold()


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return None


def parse_filter(raw: object) -> FilterNode | None:
    """Parse mem0's filter dict; ``None`` or ``{}`` means no filter."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidFilter("filters must be a JSON object")
    if not raw:
        return None
    return _parse(raw, 0)


def _parse(raw: Mapping[Any, Any], depth: int) -> FilterNode:
    if depth > _MAX_DEPTH:
        raise InvalidFilter(f"filters nest deeper than {_MAX_DEPTH} levels")
    parts: list[FilterNode] = []
    for key, value in raw.items():
        if not isinstance(key, str) or not key:
            raise InvalidFilter("filter keys must be non-empty strings")
        if key in ("AND", "OR", "NOT"):
            if not isinstance(value, list) or not value:
                raise InvalidFilter(f"{key} takes a non-empty list of filters")
            children = []
            for child in value:
                if not isinstance(child, Mapping) or not child:
                    raise InvalidFilter(f"each item of {key} must be a non-empty filter object")
                children.append(_parse(child, depth + 1))
            if key == "AND":
                parts.append(And(tuple(children)))
            elif key == "OR":
                parts.append(Or(tuple(children)))
            else:
                parts.append(Not(children[0] if len(children) == 1 else And(tuple(children))))
        elif key.upper() in ("AND", "OR", "NOT") or key.startswith("$"):
            raise InvalidFilter(f"unknown logical operator {key!r}: use AND, OR or NOT")
        else:
            parts.extend(_parse_field(key, value))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _parse_field(field: str, value: Any) -> list[FilterNode]:
    if '"' in field or "\\" in field or len(field) > 128:
        raise InvalidFilter("filter field names must be at most 128 characters without quotes")
    if not isinstance(value, Mapping):
        return [_condition(field, "eq", value)]
    if not value:
        raise InvalidFilter(f"field {field!r} has an empty operator object")
    return [_condition(field, op, operand) for op, operand in value.items()]


def _check_number(field: str, value: Any) -> None:
    """SQLite integers are 64-bit and NaN compares with nothing: refuse what cannot be bound."""
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise InvalidFilter(f"numbers in the filter on {field!r} must fit in 64 bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidFilter(f"numbers in the filter on {field!r} must be finite")


def _condition(field: str, op: Any, value: Any) -> Condition:
    if op not in OPERATORS:
        raise InvalidFilter(f"unknown operator {op!r} on {field!r}; known: {', '.join(OPERATORS)}")
    for item in value if isinstance(value, list) else [value]:
        _check_number(field, item)
    if op == "eq" and value == "*":
        return Condition(field, "*", None)
    if op in ("in", "nin"):
        if not isinstance(value, list) or not value or len(value) > _MAX_LIST:
            raise InvalidFilter(f"{op} on {field!r} takes a list of 1 to {_MAX_LIST} values")
        for item in value:
            if _kind(item) is None:
                raise InvalidFilter(f"{op} on {field!r}: values must be text, numbers or booleans")
        return Condition(field, op, tuple(value))
    kind = _kind(value)
    if kind is None:
        raise InvalidFilter(f"{op} on {field!r} takes a text, number or boolean")
    if op in ("gt", "gte", "lt", "lte") and kind == "bool":
        raise InvalidFilter(f"{op} on {field!r} takes a text or a number")
    if op == "icontains" and kind != "text":
        raise InvalidFilter(f"icontains on {field!r} takes a text")
    return Condition(field, op, value)


def scope_ids(node: FilterNode | None) -> dict[str, str]:
    """Scope ids that the filter pins with a top-level equality (mem0 2.x passes them there)."""
    found: dict[str, str] = {}
    tops = node.parts if isinstance(node, And) else (node,) if node is not None else ()
    for part in tops:
        if (
            isinstance(part, Condition)
            and part.field in SCOPE_FIELDS
            and part.op == "eq"
            and isinstance(part.value, str)
        ):
            found[part.field] = part.value
    return found


# --- SQL -------------------------------------------------------------------------------------

_SQL_KIND = {
    "text": "('text')",
    "number": "('integer','real')",
    "bool": "('true','false','integer')",
}
_COMPARE = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def to_sql(node: FilterNode, column: Callable[[str], str], meta_json: str) -> tuple[str, list[Any]]:
    """Compile to a SQL condition for SQLite with its JSON1 functions, plus parameters.

    ``column(name)`` gives the SQL of a built-in column; ``meta_json`` is the SQL expression of a
    row's decrypted metadata (JSON text).
    """
    params: list[Any] = []
    sql = _sql(node, column, meta_json, params)
    return sql, params


def _sql(node: FilterNode, column: Callable[[str], str], meta: str, params: list[Any]) -> str:
    if isinstance(node, And):
        return "(" + " AND ".join(_sql(p, column, meta, params) for p in node.parts) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(_sql(p, column, meta, params) for p in node.parts) + ")"
    if isinstance(node, Not):
        return "(NOT " + _sql(node.part, column, meta, params) + ")"
    if node.field in COLUMNS:
        value_sql = column(node.field)
        type_sql = f"typeof({value_sql})"
        array_sql = None
    else:
        path = f"'$.\"{node.field}\"'"
        value_sql = f"json_extract({meta}, {path})"
        type_sql = f"json_type({meta}, {path})"
        array_sql = (meta, path)
    return _condition_sql(node, value_sql, type_sql, array_sql, params)


def _bind(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _positive(
    op: str,
    value: Any,
    value_sql: str,
    type_sql: str,
    array: tuple[str, str] | None,
    params: list[Any],
) -> str:
    """The SQL test for one operator and value that is false (never NULL) for a missing field."""
    kind = _kind(value)
    assert kind is not None
    if kind == "bool":
        type_test = f"{type_sql} = '{'true' if value else 'false'}'"
    else:
        type_test = f"coalesce({type_sql} IN {_SQL_KIND[kind]}, 0)"
    if op in _COMPARE:
        if kind == "bool":
            return f"coalesce({type_test}, 0)"
        params.append(value)
        return f"coalesce(({type_test} AND {value_sql} {_COMPARE[op]} ?), 0)"
    # contains / icontains: substring on text, membership on a list.
    fold_sql = "mv_fold" if op == "icontains" else ""
    parts = []
    if kind == "text":
        params.append(value)
        parts.append(
            f"coalesce(({type_sql} = 'text'"
            f" AND instr({fold_sql}({value_sql}), {fold_sql}(?)) > 0), 0)"
        )
    if array is not None:
        meta, path = array
        if kind == "bool":
            element = f"j.type = '{'true' if value else 'false'}'"
        else:
            params.append(_bind(value))
            element = (
                f"j.type IN {_SQL_KIND[kind]} AND {fold_sql}(j.value) = {fold_sql}(?)"
                if kind == "text"
                else f"j.type IN {_SQL_KIND[kind]} AND j.value = ?"
            )
        parts.append(
            f"coalesce(({type_sql} = 'array' AND EXISTS "
            f"(SELECT 1 FROM json_each({meta}, {path}) AS j WHERE {element})), 0)"
        )
    return "(" + " OR ".join(parts) + ")" if parts else "0"


def _condition_sql(
    node: Condition, value_sql: str, type_sql: str, array: tuple[str, str] | None, params: list[Any]
) -> str:
    op = node.op
    if op == "*":
        return f"coalesce({type_sql} NOT IN ('null'), 0)"
    if op == "ne":
        return "(NOT " + _positive("eq", node.value, value_sql, type_sql, array, params) + ")"
    if op in ("in", "nin"):
        tests = [_positive("eq", v, value_sql, type_sql, array, params) for v in node.value]
        joined = "(" + " OR ".join(tests) + ")"
        return joined if op == "in" else f"(NOT {joined})"
    return _positive(op, node.value, value_sql, type_sql, array, params)


# --- Python ----------------------------------------------------------------------------------


def matches(node: FilterNode | None, record: Mapping[str, Any]) -> bool:
    """Evaluate the filter on a record: its built-in fields plus ``metadata`` (a dict)."""
    if node is None:
        return True
    if isinstance(node, And):
        return all(matches(p, record) for p in node.parts)
    if isinstance(node, Or):
        return any(matches(p, record) for p in node.parts)
    if isinstance(node, Not):
        return not matches(node.part, record)
    if node.field in COLUMNS:
        present, actual = (
            node.field in record and record[node.field] is not None,
            record.get(node.field),
        )
    else:
        metadata = record.get("metadata") or {}
        actual = metadata.get(node.field)
        present = actual is not None
    if node.op == "*":
        return present
    if node.op == "ne":
        return not _test("eq", node.value, actual, present)
    if node.op in ("in", "nin"):
        hit = any(_test("eq", v, actual, present) for v in node.value)
        return hit if node.op == "in" else not hit
    return _test(node.op, node.value, actual, present)


def _same_kind(a: Any, b: Any) -> bool:
    return _kind(a) is not None and _kind(a) == _kind(b)


def _test(op: str, value: Any, actual: Any, present: bool) -> bool:
    if not present:
        return False
    if op in ("contains", "icontains"):
        if isinstance(actual, list):
            for item in actual:
                if not _same_kind(item, value):
                    continue
                if fold(item) == fold(value) if op == "icontains" else item == value:
                    return True
            return False
        if isinstance(actual, str) and isinstance(value, str):
            return fold(value) in fold(actual) if op == "icontains" else value in actual
        return False
    if not _same_kind(actual, value):
        return False
    if op == "eq":
        return bool(actual == value)
    if op == "gt":
        return bool(actual > value)
    if op == "gte":
        return bool(actual >= value)
    if op == "lt":
        return bool(actual < value)
    return bool(actual <= value)
