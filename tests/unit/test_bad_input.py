"""Bad input: a documented error with a stable code, and nothing half-written."""

from __future__ import annotations

from typing import Any

import pytest

from memvault import Memory, MemvaultError

BIG = "x" * (32 * 1024 + 1)

ADD_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("empty text", {"messages": "", "user_id": "u"}, "empty_text"),
    ("blank text", {"messages": "  \n\t ", "user_id": "u"}, "empty_text"),
    ("text over the limit", {"messages": BIG, "user_id": "u"}, "text_too_long"),
    ("not a string", {"messages": 42, "user_id": "u"}, "invalid_input"),
    ("NUL inside", {"messages": "a\x00b", "user_id": "u"}, "invalid_input"),
    ("missing scope", {"messages": "hello"}, "missing_scope"),
    ("whitespace in user id", {"messages": "hello", "user_id": "al ice"}, "invalid_id"),
    ("empty user id", {"messages": "hello", "user_id": ""}, "invalid_id"),
    ("control char in agent id", {"messages": "hello", "agent_id": "a\x07"}, "invalid_id"),
    ("id too long", {"messages": "hello", "run_id": "r" * 129}, "invalid_id"),
    (
        "metadata not an object",
        {"messages": "hello", "user_id": "u", "metadata": ["a"]},
        "invalid_metadata",
    ),
    (
        "metadata a string",
        {"messages": "hello", "user_id": "u", "metadata": "{}"},
        "invalid_metadata",
    ),
    (
        "metadata too big",
        {"messages": "hello", "user_id": "u", "metadata": {"k": "v" * 17000}},
        "invalid_metadata",
    ),
    (
        "identity key in metadata",
        {"messages": "hello", "user_id": "u", "metadata": {"user_id": "bob"}},
        "invalid_metadata",
    ),
    (
        "metadata with NaN",
        {"messages": "hello", "user_id": "u", "metadata": {"k": float("nan")}},
        "invalid_metadata",
    ),
    (
        "metadata not JSON",
        {"messages": "hello", "user_id": "u", "metadata": {"k": object()}},
        "invalid_metadata",
    ),
    (
        "unknown memory type",
        {"messages": "hello", "user_id": "u", "memory_type": "dream"},
        "invalid_input",
    ),
    (
        "bad expiry",
        {"messages": "hello", "user_id": "u", "expiration_date": "next tuesday"},
        "invalid_input",
    ),
    (
        "bad role",
        {"messages": [{"role": "wizard", "content": "hi"}], "user_id": "u"},
        "invalid_input",
    ),
    (
        "unknown message key",
        {"messages": [{"role": "user", "content": "hi", "x": 1}], "user_id": "u"},
        "invalid_input",
    ),
    (
        "only system messages",
        {"messages": [{"role": "system", "content": "be nice"}], "user_id": "u"},
        "empty_text",
    ),
    ("empty message list", {"messages": [], "user_id": "u"}, "invalid_input"),
    (
        "infer without an LLM",
        {"messages": "hello", "user_id": "u", "infer": True},
        "invalid_config",
    ),
]


@pytest.mark.parametrize(("case", "item", "code"), ADD_CASES, ids=[c[0] for c in ADD_CASES])
def test_bad_add_raises_its_code_and_writes_nothing(
    memory: Memory, case: str, item: dict[str, Any], code: str
) -> None:
    good = {"messages": "a valid memory", "user_id": "u"}
    with pytest.raises(MemvaultError) as caught:
        memory.add_many([good, item])  # the good item comes first and must not be stored either
    assert caught.value.code == code, case
    assert memory.get_all(user_id="u")["results"] == []


def test_unknown_item_key_in_add_many(memory: Memory) -> None:
    with pytest.raises(MemvaultError) as caught:
        memory.add_many([{"messages": "x", "user_id": "u", "colour": "red"}])
    assert caught.value.code == "invalid_input"


def test_error_messages_never_echo_the_text(memory: Memory) -> None:
    secret = "sk-live-" + "s3cr3t" * 10
    for item in (
        {"messages": secret + BIG, "user_id": "u"},
        {"messages": secret, "user_id": "u u"},
        {"messages": secret, "user_id": "u", "metadata": {"user_id": secret}},
    ):
        with pytest.raises(MemvaultError) as caught:
            memory.add_many([item])
        assert "s3cr3t" not in str(caught.value)


SEARCH_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown operator", {"filters": {"n": {"between": [1, 2]}}}, "invalid_filter"),
    ("unknown logical", {"filters": {"XOR": [{"a": 1}]}}, "invalid_filter"),
    ("lower-case logical", {"filters": {"and": [{"a": 1}]}}, "invalid_filter"),
    ("empty AND", {"filters": {"AND": []}}, "invalid_filter"),
    ("in with a scalar", {"filters": {"n": {"in": 3}}}, "invalid_filter"),
    ("gt with a list", {"filters": {"n": {"gt": [1]}}}, "invalid_filter"),
    ("null value", {"filters": {"n": None}}, "invalid_filter"),
    ("filters not an object", {"filters": ["n"]}, "invalid_filter"),
    ("icontains a number", {"filters": {"n": {"icontains": 3}}}, "invalid_filter"),
    ("top_k zero", {"top_k": 0}, "invalid_input"),
    ("top_k huge", {"top_k": 10**6}, "invalid_input"),
    ("bad mode", {"mode": "psychic"}, "invalid_input"),
    ("threshold text", {"threshold": "high"}, "invalid_input"),
    ("conflicting scope", {"filters": {"user_id": "v"}}, "invalid_input"),
    ("number over 64 bits", {"filters": {"n": 10**30}}, "invalid_filter"),
    ("number over 64 bits in a list", {"filters": {"n": {"in": [1, -(10**30)]}}}, "invalid_filter"),
    ("NaN in a filter", {"filters": {"n": {"gt": float("nan")}}}, "invalid_filter"),
]


@pytest.mark.parametrize(("case", "kwargs", "code"), SEARCH_CASES, ids=[c[0] for c in SEARCH_CASES])
def test_bad_search_raises_its_code(
    memory: Memory, case: str, kwargs: dict[str, Any], code: str
) -> None:
    memory.add("something to find", user_id="u")
    with pytest.raises(MemvaultError) as caught:
        memory.search("find", user_id="u", **kwargs)
    assert caught.value.code == code, case


def test_empty_query_is_an_error(memory: Memory) -> None:
    with pytest.raises(MemvaultError) as caught:
        memory.search("   ", user_id="u")
    assert caught.value.code == "empty_text"


def test_update_errors(memory: Memory) -> None:
    memory_id = memory.add("one", user_id="u")["results"][0]["id"]
    other = memory.add("two", user_id="u")["results"][0]["id"]
    for kwargs, code in (
        ({}, "invalid_input"),
        ({"text": ""}, "empty_text"),
        ({"metadata": {"agent_id": "x"}}, "invalid_metadata"),
        ({"text": "TWO"}, "invalid_input"),  # would duplicate another memory of the scope
    ):
        with pytest.raises(MemvaultError) as caught:
            memory.update(memory_id, **kwargs)
        assert caught.value.code == code
    assert memory.get(memory_id)["memory"] == "one"
    assert memory.get(other)["memory"] == "two"
    with pytest.raises(MemvaultError) as caught:
        memory.get("not an id")
    assert caught.value.code == "invalid_id"
