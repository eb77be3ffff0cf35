"""The filter compiler splices nothing a caller sent into SQL: its text is a function of the
filter's shape, every key and value is a bound parameter, and big filters stay within SQLite's
limits (balanced trees, a cap on conditions) or are refused with ``InvalidFilter``."""

from __future__ import annotations

import string
import unicodedata
from contextlib import suppress
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memvault import HashEmbedder, InvalidFilter, Memory
from memvault.filters import (
    COLUMNS,
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_FIELD_LENGTH,
    Condition,
    FilterNode,
    Not,
    decode_filter,
    parse_filter,
)
from memvault.storage.sqlite.filter_sql import to_sql
from tests.hostile import (
    INJECTION_KEY,
    fuzz_examples,
    hostile_filters,
    hostile_keys,
    hostile_texts,
    long_texts,
)

META = "mv_meta(m.scope_id, m.id, m.metadata_box)"
# Every character the compiler's own SQL uses: no quote but ', no ; - / * | \ or non-ASCII.
SQL_ALPHABET = frozenset(string.ascii_letters + string.digits + " ()',.=<>?_")


def compile_sql(raw: dict[str, Any]) -> tuple[str, list[Any]]:
    node = parse_filter(raw)
    assert node is not None
    return to_sql(node, lambda name: f"m.{name}", META)


def _texts(node: FilterNode) -> list[Any]:
    if isinstance(node, Condition):
        values = node.value if isinstance(node.value, tuple) else (node.value,)
        return [node.field, *values]
    if isinstance(node, Not):
        return _texts(node.part)
    return [text for part in node.parts for text in _texts(part)]


def bound(params: list[Any]) -> list[Any]:
    """Every value bound: the parameters, and the keys and values of the metadata part of the
    filter, which is bound whole (as JSON here; as a token naming it in the store) to the one
    ``mv_match`` call per row."""
    found = list(params)
    for param in params:
        if isinstance(param, str) and param.startswith('["'):
            with suppress(ValueError, LookupError, TypeError):  # a column value like '["x'
                found.extend(_texts(decode_filter(param)))
    return found


# --- shapes: a filter with its keys and values left open ---------------------------------------

KINDS = ("text", "number", "bool")
Shape = Any  # ("leaf", field, op, kinds) | (logic, [Shape, ...])

leaf_shapes = st.tuples(
    st.just("leaf"),
    st.sampled_from(["meta", "meta", "meta", *COLUMNS]),
    st.sampled_from(["bare", "eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "*"]),
    st.lists(st.sampled_from(KINDS), min_size=1, max_size=4),
).map(
    lambda t: (
        t[0],
        t[1],
        t[2],
        ["text" if k == "bool" and t[2] in ("gt", "gte", "lt", "lte") else k for k in t[3]],
    )
)
shapes = st.recursive(
    leaf_shapes,
    lambda children: st.tuples(
        st.sampled_from(["AND", "OR", "NOT"]), st.lists(children, min_size=1, max_size=4)
    ),
    max_leaves=12,
)


def value_of(kind: str) -> st.SearchStrategy[Any]:
    if kind == "text":
        return st.one_of(hostile_texts, long_texts).filter(lambda t: t != "*")
    if kind == "number":
        return st.one_of(
            st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False)
        )
    return st.booleans()


def fill(shape: Shape, data: st.DataObject, texts: list[str]) -> dict[str, Any]:
    """A filter of this shape with fresh hostile keys and values (texts collects them)."""
    if shape[0] != "leaf":
        return {shape[0]: [fill(child, data, texts) for child in shape[1]]}
    _, field, op, kinds = shape
    key = data.draw(hostile_keys) if field == "meta" else field
    if field == "meta":
        texts.append(key)
    if op == "*":
        return {key: "*"}
    values = [data.draw(value_of(kind)) for kind in kinds[: 4 if op in ("in", "nin") else 1]]
    texts.extend(v for v in values if isinstance(v, str))
    if op in ("in", "nin"):
        return {key: {op: values}}
    return {key: values[0]} if op == "bare" else {key: {op: values[0]}}


@settings(
    max_examples=fuzz_examples(100),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(shape=shapes, data=st.data())
def test_sql_is_a_function_of_the_filter_shape_only(shape: Shape, data: st.DataObject) -> None:
    first_texts: list[str] = []
    first = fill(shape, data, first_texts)
    second = fill(shape, data, [])
    sql, params = compile_sql(first)
    # (a) other keys and values of the same kinds: the very same SQL text.
    assert compile_sql(second)[0] == sql
    # (b) none of them is in it: the text uses the compiler's alphabet only, and every hostile
    # key and text value is a parameter.
    assert set(sql) <= SQL_ALPHABET, set(sql) - SQL_ALPHABET
    for text in first_texts:
        # ids are compared in NFC (validation.check_id): a value on an id column is bound so
        assert text in bound(params) or unicodedata.normalize("NFC", text) in bound(params)
        if not set(text) <= SQL_ALPHABET:
            assert text not in sql


@settings(max_examples=fuzz_examples(200), deadline=None)
@given(raw=hostile_filters)
def test_any_filter_compiles_to_alphabet_only_sql_or_is_refused(raw: dict[str, Any]) -> None:
    try:
        sql, _ = compile_sql(raw)
    except InvalidFilter:
        return
    assert set(sql) <= SQL_ALPHABET


def test_the_review_exploit_key_is_a_bound_parameter() -> None:
    sql, params = compile_sql({INJECTION_KEY: "*"})
    assert "char" not in sql and "OR" not in sql
    assert bound(params)[1:] == [INJECTION_KEY, None] and len(params) == 1


# --- limits ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_row(tmp_path_factory: pytest.TempPathFactory) -> Memory:
    m = Memory(tmp_path_factory.mktemp("limits"), embedder=HashEmbedder())
    m.add("hello", user_id="u", metadata={"k0": "v", "tags": ["a", "b"], "n": 3})
    yield m
    m.close()


def nested(inner: dict[str, Any], levels: int, logic: str) -> dict[str, Any]:
    for _ in range(levels):
        inner = {"NOT": [inner]} if logic == "NOT" else {logic: [inner, {"n": 3}]}
    return inner


BIG = MAX_CONDITIONS - MAX_DEPTH  # room for the one extra condition of each nesting level
AT_THE_LIMITS = {
    "OR of contains": {"OR": [{f"k{i}": {"contains": "v"}} for i in range(MAX_CONDITIONS)]},
    "AND of icontains": {f"k{i}": {"icontains": "V"} for i in range(MAX_CONDITIONS)},
    "in list": {"k0": {"in": [f"v{i}" for i in range(MAX_CONDITIONS - 1)] + ["v"]}},
    "nin list of numbers": {"n": {"nin": list(range(4, MAX_CONDITIONS + 3))}},
    "columns": {"OR": [{"memory_type": {"in": ["x", 1, True]}}] * (MAX_CONDITIONS // 3)},
    "deep OR": nested({"OR": [{"tags": {"contains": "a"}}] * BIG}, MAX_DEPTH - 1, "OR"),
    "deep AND": nested({"k0": {"nin": ["w"] * BIG}}, MAX_DEPTH - 1, "AND"),
    "deep NOT": nested(
        {"OR": [{"tags": {"contains": "z"}}] * (MAX_CONDITIONS - 1) + [{"n": 3}]},
        MAX_DEPTH - 1,
        "NOT",
    ),
    "a text of 1 MiB": {"k0": {"contains": "x" * (1 << 20)}},
}


@pytest.mark.parametrize("raw", AT_THE_LIMITS.values(), ids=AT_THE_LIMITS.keys())
def test_filters_at_the_limits_run(one_row: Memory, raw: dict[str, Any]) -> None:
    """SQLite's expression depth (1,000) and parser stack hold for the largest filters allowed."""
    expected = len(one_row.get_all(user_id="u")["results"])  # the filter decides; 0 or 1
    got = one_row.get_all(user_id="u", filters=raw)["results"]
    assert len(got) <= expected
    assert one_row.count(user_id="u", filters=raw) == len(got)
    assert len(one_row.search("hello", user_id="u", filters=raw)["results"]) == len(got)


def test_the_answers_at_the_limits_are_right(one_row: Memory) -> None:
    get = lambda raw: len(one_row.get_all(user_id="u", filters=raw)["results"])  # noqa: E731
    assert get(AT_THE_LIMITS["OR of contains"]) == 1  # k0 contains "v"
    assert get(AT_THE_LIMITS["AND of icontains"]) == 0  # k1 is missing
    assert get(AT_THE_LIMITS["in list"]) == 1
    assert get(AT_THE_LIMITS["nin list of numbers"]) == 1
    assert get(AT_THE_LIMITS["deep NOT"]) == 0  # 15 NOTs of a true OR


OVER_THE_LIMITS = {
    "one condition too many": {"OR": [{f"k{i}": 1} for i in range(MAX_CONDITIONS + 1)]},
    "in list too long": {"k": {"in": list(range(MAX_CONDITIONS + 1))}},
    "in items count with the rest": {"a": 1, "k": {"nin": list(range(MAX_CONDITIONS))}},
    "too deep": nested({"a": 1}, MAX_DEPTH + 1, "NOT"),
    "field name too long": {"k" * (MAX_FIELD_LENGTH + 1): 1},
    "lone surrogate in a key": {"\ud800": 1},
    "lone surrogate in a value": {"a": "\udfff"},
    "lone surrogate in a list": {"a": {"in": ["ok", "x\ud800"]}},
    "lone surrogate in an operator": {"a": {"\ud800": 1}},
    "NUL in a key": {"a\x00b": 1},
    "NUL in a value": {"a": {"contains": "\x00"}},
    "NaN": {"a": {"gt": float("nan")}},
    "infinity in a list": {"a": {"in": [1, float("inf")]}},
    "integer over 64 bits": {"a": {"lt": 2**63}},
    "an empty key": {"": 1},
    "a $ operator": {"$or": [{"a": 1}]},
}


@pytest.mark.parametrize("raw", OVER_THE_LIMITS.values(), ids=OVER_THE_LIMITS.keys())
def test_over_the_limits_is_invalid_filter(one_row: Memory, raw: dict[str, Any]) -> None:
    with pytest.raises(InvalidFilter):
        one_row.get_all(user_id="u", filters=raw)
    with pytest.raises(InvalidFilter):
        one_row.search("hello", user_id="u", filters=raw)


def test_limit_messages_say_what_to_change() -> None:
    with pytest.raises(InvalidFilter, match="at most 1000 conditions"):
        parse_filter(OVER_THE_LIMITS["in list too long"])
    with pytest.raises(InvalidFilter, match="deeper than 16"):
        parse_filter(OVER_THE_LIMITS["too deep"])
    with pytest.raises(InvalidFilter, match="lone surrogates"):
        parse_filter(OVER_THE_LIMITS["lone surrogate in a key"])


def test_sql_depth_grows_with_the_logarithm_of_an_or() -> None:
    sql, _ = compile_sql({"OR": [{"memory_type": str(i)} for i in range(MAX_CONDITIONS)]})
    depth = deepest = 0
    for char in sql:
        depth += {"(": 1, ")": -1}.get(char, 0)
        deepest = max(deepest, depth)
    assert deepest <= 16  # log2(1000) = 10 levels of OR, plus the leaf's own parentheses
