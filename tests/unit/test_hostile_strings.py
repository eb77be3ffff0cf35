"""Hostile strings and shapes are a 4xx ``InvalidInput``, never a crash (5xx) further down.

Lone surrogates anywhere a string is accepted, metadata nested until ``json`` recurses too deep,
and ids that only look like other ids (invisible, bidi, unnormalised characters).
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memvault import HashEmbedder, Memory
from memvault.errors import (
    InvalidId,
    InvalidInput,
    InvalidMetadata,
    MemvaultError,
    NotFound,
    Unauthorized,
)
from memvault.validation import (
    MAX_METADATA_DEPTH,
    MAX_METADATA_ELEMENTS,
    check_id,
    check_metadata,
    check_namespace,
    parse_messages,
)

LONE = "\ud800"
EXAMPLES = int(os.environ.get("MEMVAULT_FUZZ_EXAMPLES", "200"))
UNKNOWN_ID = "0191a2b3-0000-7000-8000-000000000000"


def nested(depth: int, leaf: Any = "x", kind: str = "dict") -> Any:
    """``depth`` levels of objects (or lists), built without recursion."""
    value = leaf
    for _ in range(depth):
        value = {"k": value} if kind == "dict" else [value]
    return value


SURROGATE_CALLS: dict[str, Callable[[Memory], object]] = {
    "text": lambda m: m.add(f"hello {LONE}", user_id="u"),
    "message content": lambda m: m.add([{"role": "user", "content": f"hi {LONE}"}], user_id="u"),
    "message name": lambda m: m.add([{"role": "user", "content": "hi", "name": LONE}], user_id="u"),
    "metadata value": lambda m: m.add("hi", user_id="u", metadata={"k": LONE}),
    "metadata key": lambda m: m.add("hi", user_id="u", metadata={LONE: 1}),
    "deep metadata value": lambda m: m.add("hi", user_id="u", metadata=nested(20, [1, LONE])),
    "deep metadata key": lambda m: m.add("hi", user_id="u", metadata=nested(20, {LONE: 1})),
    "user_id": lambda m: m.add("hi", user_id=f"u{LONE}"),
    "agent_id": lambda m: m.add("hi", agent_id=LONE),
    "run_id": lambda m: m.add("hi", run_id=LONE),
    "actor_id": lambda m: m.add("hi", user_id="u", actor_id=LONE),
    "namespace": lambda m: m.namespaced(f"ns{LONE}"),
    "search query": lambda m: m.search(f"q{LONE}", user_id="u"),
    "search user_id": lambda m: m.search("q", user_id=LONE),
    "get_all user_id": lambda m: m.get_all(user_id=LONE),
    "get memory id": lambda m: m.get(LONE),
    "history memory id": lambda m: m.history(LONE),
    "delete memory id": lambda m: m.delete(LONE),
    "update memory id": lambda m: m.update(LONE, "new"),
    "update text": lambda m: m.update(UNKNOWN_ID, f"new {LONE}"),
    "update metadata": lambda m: m.update(UNKNOWN_ID, metadata={"k": LONE}),
    "delete_all user_id": lambda m: m.delete_all(user_id=LONE),
    "export user_id": lambda m: m.export_user(LONE),
    "erase user_id": lambda m: m.erase_user(LONE),
    "rotate user_id": lambda m: m.rotate_user_key(LONE),
    "filter value": lambda m: m.get_all(user_id="u", filters={"topic": LONE}),
    "filter key": lambda m: m.get_all(user_id="u", filters={LONE: 1}),
    "filter in-list": lambda m: m.search("q", user_id="u", filters={"t": {"in": ["a", LONE]}}),
    "filter user_id": lambda m: m.get_all(filters={"user_id": LONE}),
    "api key name": lambda m: m.api_keys.create("default", "read", name=LONE),
    "api key user": lambda m: m.api_keys.create("default", "read", user_id=LONE),
}


@pytest.mark.parametrize("call", SURROGATE_CALLS.values(), ids=SURROGATE_CALLS.keys())
def test_a_lone_surrogate_is_invalid_input_everywhere(
    memory: Memory, call: Callable[[Memory], object]
) -> None:
    with pytest.raises(InvalidInput) as caught:
        call(memory)
    assert 400 <= caught.value.http_status < 500
    assert LONE not in caught.value.message
    assert memory.get_all(user_id="u")["results"] == []


def test_a_non_ascii_api_key_id_names_no_key(memory: Memory) -> None:
    for key_id in (LONE, "\u00e9" * 12):
        with pytest.raises(NotFound) as caught:
            memory.api_keys.revoke(key_id)
        assert caught.value.http_status == 404 and key_id not in caught.value.message


@pytest.mark.parametrize("last", ["\u00e9", LONE, "\u0100"])
def test_a_non_ascii_api_key_is_unauthorized_not_a_crash(memory: Memory, last: str) -> None:
    key = memory.api_keys.create("default", "read").key
    with pytest.raises(Unauthorized):
        memory.api_keys.authenticate(key[:-1] + last)  # hmac.compare_digest refuses non-ASCII
    assert memory.api_keys.authenticate(key).role == "read"


@pytest.mark.parametrize("kind", ["dict", "list"])
@pytest.mark.parametrize("depth", [MAX_METADATA_DEPTH + 1, 900, 100_000])
def test_metadata_nested_too_deep_is_refused_before_json(depth: int, kind: str) -> None:
    with pytest.raises(InvalidMetadata, match="deeper than 32"):
        check_metadata({"k": nested(depth - 1, kind=kind)}, 16 * 1024)


def test_metadata_at_the_depth_limit_is_kept(memory: Memory) -> None:
    deepest = {"k": nested(MAX_METADATA_DEPTH - 1, kind="list")}
    added = memory.add("deep but fine", user_id="u", metadata=deepest)["results"][0]
    assert memory.get(added["id"])["metadata"] == deepest


def test_metadata_with_too_many_values_is_refused_without_walking_them_all() -> None:
    check_metadata({"k": list(range(MAX_METADATA_ELEMENTS - 2))}, 10**9)
    with pytest.raises(InvalidMetadata, match="more than 10000 values"):
        check_metadata({"k": list(range(MAX_METADATA_ELEMENTS))}, 10**9)
    with pytest.raises(InvalidMetadata, match="more than 10000 values"):
        check_metadata({"k": [0] * 1_000_000}, 16 * 1024)


def test_metadata_cycles_and_non_string_keys_are_refused() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(InvalidMetadata):
        check_metadata(loop, 16 * 1024)
    with pytest.raises(InvalidMetadata, match="keys must be strings"):
        check_metadata({"k": {1: "one"}}, 16 * 1024)  # json.dumps would silently make it "1"
    with pytest.raises(InvalidMetadata, match="finite"):
        check_metadata({"k": [float("nan")]}, 16 * 1024)


def test_a_list_valued_role_is_invalid_input_not_a_type_error() -> None:
    with pytest.raises(InvalidInput):
        parse_messages([{"role": ["user"], "content": "hi"}], 1024)


REFUSED_IDS = {
    "zero-width space": "ali\u200bce",
    "zero-width joiner": "ali\u200dce",
    "bidi override": "\u202eecila",
    "bidi isolate": "alice\u2066",
    "byte order mark": "\ufeffalice",
    "soft hyphen": "al\u00adice",
    "no-break space": "al\u00a0ice",
    "ideographic space": "al\u3000ice",
    "line separator": "al\u2028ice",
    "paragraph separator": "al\u2029ice",
    "trailing newline": "alice\n",
    "tab": "al\tice",
    "delete": "al\x7fice",
    "C1 control": "al\x85ice",
    "private use": "al\ue000ice",
    "unassigned": "al\U000e0fffice",
    "noncharacter": "al\ufffeice",
    "lone surrogate": "al\udc00ice",
    "empty": "",
    "too long after NFC": "é" * 129,
}


@pytest.mark.parametrize("value", REFUSED_IDS.values(), ids=REFUSED_IDS.keys())
def test_invisible_and_reordering_characters_are_refused_in_ids(value: str) -> None:
    with pytest.raises(InvalidId):
        check_id("user_id", value)


ACCEPTED_IDS = {
    "email": "alice@example.com",
    "hash": "team#42",
    "slashes": "org/team/alice",
    "dots": "..",
    "colons": "user:alice",
    "fullwidth (not folded)": "\uff41\uff4c\uff49\uff43\uff45",
    "cyrillic a (a different id)": "\u0430lice",
    "accents": "José",
    "cjk": "用户一",
    "emoji": "🦊",
    "combining mark": "e\u0301",
}


@pytest.mark.parametrize("value", ACCEPTED_IDS.values(), ids=ACCEPTED_IDS.keys())
def test_ordinary_punctuation_and_scripts_are_ids(value: str) -> None:
    assert check_id("user_id", value) == unicodedata.normalize("NFC", value)


def test_canonically_equal_ids_are_one_scope(memory: Memory) -> None:
    composed, decomposed = "Jos\u00e9", "Jose\u0301"
    memory.add("speaks Spanish", user_id=decomposed)
    [found] = memory.get_all(user_id=composed)["results"]
    assert found["user_id"] == composed
    assert memory.search("Spanish", user_id=decomposed)["results"]
    assert memory.export_user(decomposed)
    assert memory.erase_user(composed)["memories_deleted"] == 1
    assert memory.get_all(user_id=decomposed)["results"] == []
    # Compatibility forms stay apart: a fullwidth id is not "alice".
    memory.add("fullwidth", user_id="\uff41lice")
    assert memory.get_all(user_id="alice")["results"] == []


def test_message_names_and_actor_ids_are_stored_normalised(memory: Memory) -> None:
    [message] = parse_messages([{"role": "user", "content": "hi", "name": "Jose\u0301"}], 1024)
    assert message.name == "Jos\u00e9"
    added = memory.add("acted", user_id="u", actor_id="Rene\u0301")["results"][0]
    assert memory.get(added["id"])["actor_id"] == "Ren\u00e9"


@pytest.mark.parametrize("value", ["default\n", "a b", "ns/x", "..", "", "n" * 65, f"n{LONE}", 7])
def test_namespaces_are_plain_ascii_names(value: object) -> None:
    with pytest.raises(InvalidId):
        check_namespace(value)


REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"}
ANY_CODEPOINT = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
IDS = st.text(ANY_CODEPOINT, min_size=1, max_size=24) | st.sampled_from(
    [*REFUSED_IDS.values(), *ACCEPTED_IDS.values()]
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(IDS)
def test_check_id_refuses_or_returns_a_clean_nfc_id(value: str) -> None:
    try:
        checked = check_id("user_id", value)
    except InvalidId:
        return
    assert checked == unicodedata.normalize("NFC", value)
    assert 1 <= len(checked) <= 128
    assert not any(unicodedata.category(c) in REFUSED_CATEGORIES or c.isspace() for c in checked)
    checked.encode("utf-8")
    assert check_id("user_id", checked) == checked
    # Every canonically equivalent spelling is the same id.
    for form in ("NFD", "NFC"):
        assert check_id("user_id", unicodedata.normalize(form, value)) == checked


@pytest.fixture(scope="module")
def shared_memory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Memory]:
    with Memory(tmp_path_factory.mktemp("ids") / "home", embedder=HashEmbedder()) as m:
        yield m


@settings(
    max_examples=max(10, EXAMPLES // 4),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(IDS.filter(lambda v: _accepted(v)))
def test_every_accepted_id_round_trips_through_the_library(
    shared_memory: Memory, value: str
) -> None:
    memory = shared_memory
    user = unicodedata.normalize("NFD", value)  # stored and found as its NFC form
    memory.add("round trip fact", user_id=user, agent_id=value, metadata={"tag": "x"})
    [row] = memory.get_all(user_id=value)["results"]
    assert row["user_id"] == check_id("user_id", value) and row["agent_id"] == row["user_id"]
    assert [r["id"] for r in memory.search("round trip", user_id=user)["results"]] == [row["id"]]
    lines = list(memory.export_user(value))
    assert [line["id"] for line in lines if line["type"] == "memory"] == [row["id"]]
    assert memory.erase_user(user)["memories_deleted"] == 1
    assert memory.get_all(user_id=value)["results"] == []


def _accepted(value: str) -> bool:
    try:
        check_id("user_id", value)
    except MemvaultError:
        return False
    return True
