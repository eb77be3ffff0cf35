"""SQLite's compiler of metadata filters: a parsed filter (``memvault.filters``) to SQL.

Every piece of SQL text below is a constant of this module, a built-in column's SQL from the
store or the store's SQL for a row's metadata; every key and value goes into ``params``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from memvault.filters import (
    COLUMNS,
    And,
    Condition,
    FilterNode,
    Not,
    Or,
    encode_filter,
    kind_of,
    reads_metadata,
)

__all__ = ["MATCH_ARITY", "MATCH_FUNCTION", "to_sql"]


@dataclass(frozen=True, slots=True)
class _Sql:
    """SQL text and the parameters of its ``?`` marks, in order."""

    text: str
    params: tuple[Any, ...] = ()


def _cat(*pieces: _Sql | str) -> _Sql:
    """Concatenate; a ``str`` piece is SQL text of this module and has no parameters."""
    text = []
    params: list[Any] = []
    for piece in pieces:
        if isinstance(piece, str):
            text.append(piece)
        else:
            text.append(piece.text)
            params.extend(piece.params)
    return _Sql("".join(text), tuple(params))


def _balanced(operator: Literal["AND", "OR"], parts: Sequence[_Sql]) -> _Sql:
    """``a OR b OR c ...`` as a balanced tree of parentheses: depth log2(n), not n."""
    if len(parts) == 1:
        return parts[0]
    half = len(parts) // 2
    left, right = _balanced(operator, parts[:half]), _balanced(operator, parts[half:])
    return _cat("(", left, f" {operator} ", right, ")")


@dataclass(frozen=True, slots=True)
class _Field:
    """Where a condition reads a built-in column: SQL for the value and its type name."""

    value: str
    type: str


_COLUMN_TYPE = "typeof({})"  # SQLite's storage class: 'null', 'integer', 'real', 'text'
_KIND_TYPES = {"text": "('text')", "number": "('integer','real')"}
_COMPARE = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
# mv_match(<the row's decrypted metadata>, <every built-in column, in COLUMNS order>, <filter>)
MATCH_FUNCTION = "mv_match"
MATCH_ARITY = 1 + len(COLUMNS) + 1


def to_sql(
    node: FilterNode,
    column: Callable[[str], str],
    meta_json: str,
    bind: Callable[[FilterNode], Any] | None = None,
) -> tuple[str, list[Any]]:
    """Compile to a SQL condition, plus parameters.

    ``column(name)`` gives the SQL of a built-in column; ``meta_json`` is the SQL expression of a
    row's decrypted metadata (JSON text). Both are the store's constants; the text returned
    depends on them and on the filter's shape only.

    The top-level AND parts on built-in columns only are plain SQL (an index serves them). The
    rest -- every part that reads a metadata key -- is *one* call per row,
    ``mv_match(<meta_json>, <the columns>, ?)``, whose parameter is ``bind(rest)``: the store
    binds a token that names the parsed filter for this statement, and :func:`matches` evaluates
    it on the row's metadata, decrypted and parsed once, whatever the number of conditions (a
    condition per ``json_each`` scan re-read the metadata once per condition). By default the
    parameter is the filter as JSON (:func:`encode_filter`). Nothing the caller sent is SQL text.
    """
    parts = node.parts if isinstance(node, And) else (node,)
    plain = [p for p in parts if not reads_metadata(p)]
    rest = [p for p in parts if reads_metadata(p)]
    pieces = [_node_sql(p, column) for p in plain]
    if rest:
        matched = rest[0] if len(rest) == 1 else And(tuple(rest))
        columns = ", ".join(column(name) for name in COLUMNS)
        parameter = encode_filter(matched) if bind is None else bind(matched)
        pieces.append(_Sql(f"{MATCH_FUNCTION}({meta_json}, {columns}, ?)", (parameter,)))
    compiled = _balanced("AND", pieces)
    return compiled.text, list(compiled.params)


def _node_sql(node: FilterNode, column: Callable[[str], str]) -> _Sql:
    if isinstance(node, And):
        return _balanced("AND", [_node_sql(p, column) for p in node.parts])
    if isinstance(node, Or):
        return _balanced("OR", [_node_sql(p, column) for p in node.parts])
    if isinstance(node, Not):
        return _cat("(NOT ", _node_sql(node.part, column), ")")
    return _condition_sql(node, column)


def _condition_sql(node: Condition, column: Callable[[str], str]) -> _Sql:
    """A positive test that is false, never NULL, for a NULL column; ``ne``/``nin`` negate it."""
    value_sql = column(node.field)
    field = _Field(value_sql, _COLUMN_TYPE.format(value_sql))
    positive = _cat("coalesce(", _test_sql(node, field), ", 0)")
    return _cat("(NOT ", positive, ")") if node.op in ("ne", "nin") else positive


def _test_sql(node: Condition, field: _Field) -> _Sql:
    if node.op == "*":
        return _Sql(f"{field.type} <> 'null'")
    if node.op in ("in", "nin"):
        return _balanced("OR", [_value_sql("eq", value, field) for value in node.value])
    return _value_sql("eq" if node.op == "ne" else node.op, node.value, field)


def _value_sql(op: str, value: Any, field: _Field) -> _Sql:
    """One operator against one value (may be NULL for a NULL column: the caller coalesces)."""
    kind = kind_of(value)
    if kind == "bool":
        return _Sql("0")  # a built-in column never holds a boolean (nor a list to contain one)
    assert kind is not None
    types = _KIND_TYPES[kind]
    if op in _COMPARE:
        return _Sql(f"({field.type} IN {types} AND {field.value} {_COMPARE[op]} ?)", (value,))
    if kind != "text":
        return _Sql("0")  # contains a number: a built-in column never holds a list
    fold_sql = "mv_fold" if op == "icontains" else ""
    return _Sql(
        f"({field.type} = 'text' AND instr({fold_sql}({field.value}), {fold_sql}(?)) > 0)",
        (value,),
    )
