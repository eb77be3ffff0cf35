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

Fields are the built-in columns (``user_id``, ``created_at``, ...) or metadata keys. A metadata
field is one key of the metadata object, compared exactly: ``a.b``, ``x[0]``, ``it's`` or
``say "hi"`` name a key, never a path. An unknown operator, a bad value or an empty list raises
``InvalidFilter``: a filter is never ignored.

The binding rule: nothing a caller sent is ever part of the SQL text. The SQL is a function of the
filter's *shape* only (which top-level AND parts are on built-in columns only, and for those the
tree of AND/OR/NOT, each condition's operator and column and the kind of each value); values are
bound parameters. Everything that reads a metadata key is evaluated by :func:`matches` in one
function call per row (``mv_match``, see :func:`to_sql`): the row's metadata is decrypted and
parsed once per row and statement, whatever the number of conditions, and a metadata field is a
key of the parsed object, never a JSON path, whose syntax gives ``.``, ``[`` and ``"`` a meaning.
The filter reaches that function as a bound parameter.

Limits, refused with ``InvalidFilter`` (a filter is never cut short):
- at most ``MAX_CONDITIONS`` (1,000) conditions, counting every item of an ``in``/``nin`` list;
- at most ``MAX_DEPTH`` (16) levels of nested AND/OR/NOT;
- a field name is 1 to ``MAX_FIELD_LENGTH`` (128) characters, does not start with ``$`` and is
  not ``and``/``or``/``not`` in another case (they read as operators);
- every text (field names, operators, values) is valid Unicode without NUL: a lone surrogate
  has no UTF-8 form, and SQLite's JSON functions end a text at NUL (``"a\\u0000b"`` reads as
  ``"a"``), so such a filter could not mean what it says;
- numbers are finite, integers fit in 64 bits (SQLite's integers).
AND, OR and ``in`` lists compile to balanced trees of parentheses, so SQLite's expression depth
grows with the logarithm of their length, not with the length.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from memvault.errors import InvalidFilter

__all__ = [
    "COLUMNS",
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "MAX_FIELD_LENGTH",
    "And",
    "Condition",
    "FilterNode",
    "Matcher",
    "Not",
    "Or",
    "compile_matcher",
    "decode_filter",
    "encode_filter",
    "fold",
    "kind_of",
    "matches",
    "parse_filter",
    "reads_metadata",
    "scope_ids",
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
_ID_COLUMNS = frozenset({*SCOPE_FIELDS, "actor_id", "id"})
MAX_CONDITIONS = 1000
MAX_DEPTH = 16
MAX_FIELD_LENGTH = 128


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


def kind_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return None


# --- parsing ---------------------------------------------------------------------------------


class _Budget:
    """Counts the conditions of one filter against ``MAX_CONDITIONS``."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_CONDITIONS

    def spend(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise InvalidFilter(
                f"a filter holds at most {MAX_CONDITIONS} conditions"
                " (each item of an in or nin list counts as one)"
            )


def _check_text(what: str, text: str) -> None:
    """SQLite stores UTF-8 (a lone surrogate has none) and its JSON functions end a text at NUL."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidFilter(f"{what} must be valid Unicode (no lone surrogates)") from None
    if "\x00" in text:
        raise InvalidFilter(f"{what} must not contain NUL characters")


def parse_filter(raw: object) -> FilterNode | None:
    """Parse mem0's filter dict; ``None`` or ``{}`` means no filter."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidFilter("filters must be a JSON object")
    if not raw:
        return None
    return _parse(raw, 0, _Budget())


def _parse(raw: Mapping[Any, Any], depth: int, budget: _Budget) -> FilterNode:
    if depth > MAX_DEPTH:
        raise InvalidFilter(f"filters nest deeper than {MAX_DEPTH} levels")
    parts: list[FilterNode] = []
    for key, value in raw.items():
        if not isinstance(key, str) or not key:
            raise InvalidFilter("filter keys must be non-empty strings")
        if key in ("AND", "OR", "NOT"):
            parts.append(_parse_logical(key, value, depth, budget))
        else:
            parts.extend(_parse_field(key, value, budget))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _parse_logical(key: str, value: Any, depth: int, budget: _Budget) -> FilterNode:
    if not isinstance(value, list) or not value:
        raise InvalidFilter(f"{key} takes a non-empty list of filters")
    children = []
    for child in value:
        if not isinstance(child, Mapping) or not child:
            raise InvalidFilter(f"each item of {key} must be a non-empty filter object")
        children.append(_parse(child, depth + 1, budget))
    if key == "AND":
        return And(tuple(children))
    if key == "OR":
        return Or(tuple(children))
    return Not(children[0] if len(children) == 1 else And(tuple(children)))


def _check_field(field: str) -> None:
    if len(field) > MAX_FIELD_LENGTH:
        raise InvalidFilter(f"filter field names are at most {MAX_FIELD_LENGTH} characters")
    _check_text("filter field names", field)
    if field.upper() in ("AND", "OR", "NOT") or field.startswith("$"):
        raise InvalidFilter(f"unknown logical operator {field!r}: use AND, OR or NOT")


def _parse_field(field: str, value: Any, budget: _Budget) -> list[FilterNode]:
    _check_field(field)
    if not isinstance(value, Mapping):
        return [_condition(field, "eq", value, budget)]
    if not value:
        raise InvalidFilter(f"field {field!r} has an empty operator object")
    return [_condition(field, op, operand, budget) for op, operand in value.items()]


def _check_value(field: str, value: Any) -> None:
    """What SQLite cannot bind or compare is refused: 64-bit integers, no NaN, valid Unicode."""
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise InvalidFilter(f"numbers in the filter on {field!r} must fit in 64 bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidFilter(f"numbers in the filter on {field!r} must be finite")
    if isinstance(value, str):
        _check_text(f"texts in the filter on {field!r}", value)


def _stored_form(value: Any) -> Any:
    """Ids are stored in NFC (``validation.check_id``): a filter on one matches any spelling."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, list):
        return [_stored_form(item) for item in value]
    return value


def _condition(field: str, op: Any, value: Any, budget: _Budget) -> Condition:
    if op not in OPERATORS:
        if isinstance(op, str):
            _check_text("filter operators", op)
        raise InvalidFilter(f"unknown operator {op!r} on {field!r}; known: {', '.join(OPERATORS)}")
    items = value if isinstance(value, list) else [value]
    budget.spend(len(items) if op in ("in", "nin") else 1)
    for item in items:
        _check_value(field, item)
    if field in _ID_COLUMNS:
        value = _stored_form(value)
    if op == "eq" and value == "*":
        return Condition(field, "*", None)
    if op in ("in", "nin"):
        if not isinstance(value, list) or not value:
            raise InvalidFilter(f"{op} on {field!r} takes a non-empty list of values")
        for item in value:
            if kind_of(item) is None:
                raise InvalidFilter(f"{op} on {field!r}: values must be text, numbers or booleans")
        return Condition(field, op, tuple(value))
    kind = kind_of(value)
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


# --- encoding --------------------------------------------------------------------------------
def reads_metadata(node: FilterNode) -> bool:
    """Whether any condition of the filter is on a metadata key (not a built-in column)."""
    if isinstance(node, And | Or):
        return any(reads_metadata(p) for p in node.parts)
    if isinstance(node, Not):
        return reads_metadata(node.part)
    return node.field not in COLUMNS


def encode_filter(node: FilterNode) -> str:
    """A parsed filter as JSON (the inverse of :func:`decode_filter`)."""
    return json.dumps(_encode(node), ensure_ascii=False, allow_nan=False)


def _encode(node: FilterNode) -> Any:
    if isinstance(node, And | Or):
        return ["AND" if isinstance(node, And) else "OR", [_encode(p) for p in node.parts]]
    if isinstance(node, Not):
        return ["NOT", _encode(node.part)]
    value = list(node.value) if isinstance(node.value, tuple) else node.value
    return ["C", node.field, node.op, value]


def decode_filter(text: str) -> FilterNode:
    """A filter encoded by :func:`encode_filter` (already parsed and checked once)."""
    return _decode(json.loads(text))


def _decode(item: Any) -> FilterNode:
    tag = item[0]
    if tag == "AND":
        return And(tuple(_decode(p) for p in item[1]))
    if tag == "OR":
        return Or(tuple(_decode(p) for p in item[1]))
    if tag == "NOT":
        return Not(_decode(item[1]))
    _, field, op, value = item
    return Condition(field, op, tuple(value) if isinstance(value, list) else value)


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
    return kind_of(a) is not None and kind_of(a) == kind_of(b)


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


Matcher = Callable[[Mapping[str, Any]], bool]


def compile_matcher(node: FilterNode) -> Matcher:
    """:func:`matches` for one filter, compiled once to closures (no dispatch on the tree per
    row): what ``mv_match`` runs per row. It agrees with :func:`matches` on every record."""
    if isinstance(node, And):
        parts = tuple(compile_matcher(p) for p in node.parts)
        return lambda record: all(part(record) for part in parts)
    if isinstance(node, Or):
        parts = tuple(compile_matcher(p) for p in node.parts)
        return lambda record: any(part(record) for part in parts)
    if isinstance(node, Not):
        inner = compile_matcher(node.part)
        return lambda record: not inner(record)
    field, op, value = node.field, node.op, node.value
    if field in COLUMNS:

        def actual(record: Mapping[str, Any]) -> Any:
            return record.get(field)

    else:

        def actual(record: Mapping[str, Any]) -> Any:
            return (record.get("metadata") or {}).get(field)

    if op == "*":
        return lambda record: actual(record) is not None
    if op == "ne":
        return lambda record: not _present_test("eq", value, actual(record))
    if op in ("in", "nin"):
        wanted = value

        def hit(record: Mapping[str, Any]) -> bool:
            found = actual(record)
            return found is not None and any(_test("eq", v, found, True) for v in wanted)

        return hit if op == "in" else lambda record: not hit(record)
    return lambda record: _present_test(op, value, actual(record))


def _present_test(op: str, value: Any, actual: Any) -> bool:
    return actual is not None and _test(op, value, actual, True)
