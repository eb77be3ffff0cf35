"""A batch of adds reads and writes per scope in bulk (on Postgres one round trip for every
scope's key generation, context window, lock and version bump): it must do exactly what the
same adds do one by one."""

from __future__ import annotations

from collections.abc import Callable

from memvault import Memory
from memvault.validation import Scope

SCOPES = [
    {"user_id": "alice"},
    {"user_id": "bob"},
    {"agent_id": "helper"},
    {"user_id": "alice", "agent_id": "helper"},
    {"run_id": "run-1"},
]


def _items(start: int, count: int) -> list[dict[str, object]]:
    return [
        {"messages": f"fact {i} about scope {i % len(SCOPES)}", **SCOPES[i % len(SCOPES)]}
        for i in range(start, start + count)
    ]


def _contexts(m: Memory) -> dict[str, str]:
    """Each memory's decrypted context (the texts added to its scope just before it), by text."""
    engine = m.engine
    found = {}
    for owners in SCOPES:
        for row in engine.store.list_rows(
            m.namespace, Scope(**owners), None, now=None, limit=-1, exact=True
        ):
            text = engine.codec.open_text(row)
            found[text] = engine.codec.open_field(row, "context", row.context_box).decode()
    return found


def _versions(m: Memory) -> dict[str, int]:
    codec = m.engine.codec
    return {
        str(owners): m.engine.store.scope_version(codec.live_scopes(Scope(**owners))[0])
        for owners in SCOPES
    }


def test_a_batch_over_many_scopes_writes_what_single_adds_write(
    open_memory: Callable[..., Memory],
) -> None:
    batched = open_memory(namespace="batched")
    single = open_memory(namespace="single")
    first, second = _items(0, 12), _items(12, 13)  # the second batch reads windows written
    batched.add_many(first)
    batched.add_many(second, batch_size=7)  # and batches that split scopes unevenly
    for item in first + second:
        single.add(**item)  # type: ignore[arg-type]
    expected = _contexts(single)
    assert len(expected) == 25
    assert _contexts(batched) == expected
    assert any(expected.values())  # the windows are not all empty
    # A version grows once per transaction that touched the scope: 1 + 2 batches of 7.
    assert set(_versions(batched).values()) == {3}
    assert _versions(single)[str({"user_id": "bob"})] == 5  # bob's 5 adds, one by one


def test_key_generations_read_at_once_match_those_read_one_by_one(
    open_memory: Callable[..., Memory],
) -> None:
    m = open_memory()
    m.add_many(_items(0, 10))
    m.erase_user("bob")  # a new generation for bob
    m.rotate_user_key("alice")
    m.add_many(_items(10, 10))
    codec = m.engine.codec
    scopes = [Scope(**owners) for owners in SCOPES] + [Scope(user_id="nobody")]
    many = codec.current_many(scopes)
    assert many == [codec.current(scope) for scope in scopes]
    generations = {k.owner: k for k in many}
    assert generations["bob"] != codec.key_scope(Scope(user_id="bob"))  # not generation 1
    # The contexts stay readable with the current keys after the erase and the rotation.
    assert _contexts(m)
