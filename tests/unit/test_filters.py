"""mem0's filter grammar: SQL and the pure-Python evaluator agree on every generated case."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memvault import HashEmbedder, InvalidFilter, Memory
from memvault.filters import And, Condition, Not, matches, parse_filter
from tests.hostile import fuzz_examples

TEXTS = ["alpha", "Alpha", "ALPHA beta", "straße", "STRASSE", "Ärger", "ärger", "", "b", "é"]
scalars = st.one_of(
    st.integers(min_value=-5, max_value=5),
    st.floats(min_value=-5, max_value=5, allow_nan=False, allow_infinity=False),
    st.sampled_from(TEXTS),
    st.booleans(),
)
values = st.one_of(scalars, st.none(), st.lists(scalars, max_size=3))
metadata = st.dictionaries(st.sampled_from(["a", "b", "c", "tags"]), values, max_size=4)
FIELDS = ["a", "b", "c", "tags", "missing", "memory_type", "role", "actor_id", "importance"]
OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "icontains"]


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    field = draw(st.sampled_from(FIELDS))
    op = draw(st.sampled_from([*OPS, "bare", "*"]))
    if op == "bare":
        return {field: draw(scalars)}
    if op == "*":
        return {field: "*"}
    if op in ("in", "nin"):
        return {field: {op: draw(st.lists(scalars, min_size=1, max_size=3))}}
    if op == "icontains":
        return {field: {op: draw(st.sampled_from(TEXTS))}}
    if op in ("gt", "gte", "lt", "lte"):
        return {field: {op: draw(st.one_of(st.integers(-5, 5), st.sampled_from(TEXTS)))}}
    return {field: {op: draw(scalars)}}


def filter_trees(leaves: st.SearchStrategy[Any], max_leaves: int) -> st.SearchStrategy[Any]:
    """AND/OR/NOT trees over ``leaves``."""
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.builds(lambda xs: {"AND": xs}, st.lists(children, min_size=1, max_size=3)),
            st.builds(lambda xs: {"OR": xs}, st.lists(children, min_size=1, max_size=3)),
            st.builds(lambda xs: {"NOT": xs}, st.lists(children, min_size=1, max_size=2)),
        ),
        max_leaves=max_leaves,
    )


filters = filter_trees(conditions(), max_leaves=6)
records = st.lists(
    st.fixed_dictionaries(
        {
            "metadata": metadata,
            "memory_type": st.sampled_from(["semantic", "episodic", "procedural"]),
            "importance": st.one_of(st.none(), st.floats(0, 1)),
            "actor_id": st.one_of(st.none(), st.sampled_from(["alpha", "b", "Ärger"])),
        }
    ),
    min_size=1,
    max_size=8,
)


@pytest.fixture(scope="module")
def shared_memory(tmp_path_factory: pytest.TempPathFactory) -> Memory:
    m = Memory(tmp_path_factory.mktemp("filters"), embedder=HashEmbedder(), synchronous="NORMAL")
    yield m
    m.close()


_users = itertools.count()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=records, raw_filter=filters)
def test_sql_and_python_agree(
    shared_memory: Memory, rows: list[dict[str, Any]], raw_filter: dict[str, Any]
) -> None:
    user = f"user{next(_users)}"
    shared_memory.add_many(
        [
            {
                "messages": f"record {i}",
                "user_id": user,
                "metadata": r["metadata"],
                "memory_type": r["memory_type"],
                "importance": r["importance"],
                "actor_id": r["actor_id"],
            }
            for i, r in enumerate(rows)
        ]
    )
    stored = shared_memory.get_all(user_id=user, top_k=100)["results"]
    node = parse_filter(raw_filter)
    expected = sorted(m["memory"] for m in stored if matches(node, m))
    got = sorted(
        m["memory"]
        for m in shared_memory.get_all(user_id=user, filters=raw_filter, top_k=100)["results"]
    )
    assert got == expected, raw_filter
    hits = shared_memory.search("record", user_id=user, filters=raw_filter, top_k=100)["results"]
    assert sorted(h["memory"] for h in hits) == expected


def test_examples_from_mem0_docs(memory: Memory) -> None:
    memory.add(
        "pizza night", user_id="u", metadata={"categories": ["food", "friends"], "rating": 4}
    )
    memory.add("tax return", user_id="u", metadata={"categories": ["finance"], "rating": 2})
    memory.add("Sushi with Bob", user_id="u", metadata={"place": "Tokyo Sushi Bar", "rating": 5})

    def get(f: dict[str, Any]) -> list[str]:
        return sorted(m["memory"] for m in memory.get_all(user_id="u", filters=f)["results"])

    assert get({"categories": {"contains": "food"}}) == ["pizza night"]
    assert get({"rating": {"gte": 4}}) == ["Sushi with Bob", "pizza night"]
    assert get({"OR": [{"rating": 2}, {"place": {"icontains": "sushi"}}]}) == [
        "Sushi with Bob",
        "tax return",
    ]
    assert get({"NOT": [{"rating": {"in": [4, 5]}}]}) == ["tax return"]
    assert get({"place": "*"}) == ["Sushi with Bob"]
    assert get({"AND": [{"rating": {"gt": 1}}, {"rating": {"lt": 5}}]}) == [
        "pizza night",
        "tax return",
    ]
    assert get({"rating": {"ne": 4}}) == ["Sushi with Bob", "tax return"]
    assert get({"created_at": {"gte": "2000-01-01"}}) == [
        "Sushi with Bob",
        "pizza night",
        "tax return",
    ]
    assert get({"memory_type": "semantic", "rating": {"nin": [2, 5]}}) == ["pizza night"]


def test_parse_shapes() -> None:
    assert parse_filter(None) is None and parse_filter({}) is None
    assert parse_filter({"a": 1}) == Condition("a", "eq", 1)
    assert parse_filter({"a": 1, "b": {"gt": 2}}) == And(
        (Condition("a", "eq", 1), Condition("b", "gt", 2))
    )
    assert parse_filter({"NOT": [{"a": 1}]}) == Not(Condition("a", "eq", 1))
    assert parse_filter({"a": "*"}) == Condition("a", "*", None)
    with pytest.raises(InvalidFilter):
        parse_filter({"a": {}})
    assert parse_filter({'we"ird': 1}) == Condition('we"ird', "eq", 1)
    with pytest.raises(InvalidFilter):
        parse_filter({"k" * 129: 1})
    deep: dict[str, Any] = {"a": 1}
    for _ in range(20):
        deep = {"AND": [deep]}
    with pytest.raises(InvalidFilter):
        parse_filter(deep)


def test_home_fixture_is_private(home: Path) -> None:
    assert "home" in str(home)


def test_icontains_folds_unicode_case_on_both_sides(memory: Memory) -> None:
    memory.add("street", user_id="u", metadata={"a": "Hauptstraße 5", "tags": ["ÄRGER"]})
    for raw in ({"a": {"icontains": "STRASSE"}}, {"tags": {"icontains": "ärger"}}):
        assert len(memory.get_all(user_id="u", filters=raw)["results"]) == 1
        assert matches(parse_filter(raw), memory.get_all(user_id="u")["results"][0])
    assert memory.get_all(user_id="u", filters={"a": {"contains": "STRASSE"}})["results"] == []


# Metadata keys that a JSON path would read as syntax: here each is one plain key.
ODD_KEYS = [
    "a.b",
    "a",
    "x[0]",
    "it's",
    'say "hi"',
    "back\\slash",
    "' OR 1 OR '",
    "char(34)",
    " ",
    "\u200b",
    "é",
    "e\u0301",
    "$.a",
]
odd_metadata = st.dictionaries(
    st.sampled_from(ODD_KEYS),
    st.one_of(values, st.just({"b": 1})),
    max_size=5,
)


@st.composite
def odd_conditions(draw: st.DrawFn) -> dict[str, Any]:
    field = draw(st.sampled_from([k for k in ODD_KEYS if not k.startswith("$")]))
    op = draw(st.sampled_from(["eq", "ne", "in", "nin", "contains", "icontains", "gt", "*"]))
    if op == "*":
        return {field: "*"}
    if op in ("in", "nin"):
        return {field: {op: draw(st.lists(scalars, min_size=1, max_size=3))}}
    if op == "icontains":
        return {field: {op: draw(st.sampled_from(TEXTS))}}
    if op == "gt":
        return {field: {op: draw(st.one_of(st.integers(-5, 5), st.sampled_from(TEXTS)))}}
    return {field: {op: draw(scalars)}}


odd_filters = filter_trees(odd_conditions(), max_leaves=4)


@settings(
    max_examples=fuzz_examples(100),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rows=st.lists(odd_metadata, min_size=1, max_size=6), raw_filter=odd_filters)
def test_keys_with_quotes_dots_and_brackets_are_plain_keys(
    shared_memory: Memory, rows: list[dict[str, Any]], raw_filter: dict[str, Any]
) -> None:
    """SQL and Python agree on keys a JSON path would parse: ``a.b`` is not ``a`` -> ``b``."""
    user = f"odd{next(_users)}"
    shared_memory.add_many(
        [{"messages": f"odd {i}", "user_id": user, "metadata": r} for i, r in enumerate(rows)]
    )
    stored = shared_memory.get_all(user_id=user, top_k=100)["results"]
    node = parse_filter(raw_filter)
    expected = sorted(m["memory"] for m in stored if matches(node, m))
    got = shared_memory.get_all(user_id=user, filters=raw_filter, top_k=100)["results"]
    assert sorted(m["memory"] for m in got) == expected, raw_filter


def test_a_dotted_key_is_one_key_not_a_path(memory: Memory) -> None:
    memory.add("dotted", user_id="u", metadata={"a.b": 2, "a": {"b": 1}, 'q"': ["x'y"]})
    assert len(memory.get_all(user_id="u", filters={"a.b": 2})["results"]) == 1
    assert memory.get_all(user_id="u", filters={"a.b": 1})["results"] == []
    assert len(memory.get_all(user_id="u", filters={'q"': {"contains": "x'y"}})["results"]) == 1
    assert memory.get_all(user_id="u", filters={"a[0]": "*"})["results"] == []
