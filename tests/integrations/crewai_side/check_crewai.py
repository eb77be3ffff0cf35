"""memvault.integrations.crewai against the real CrewAI (1.15.30): through CrewAI's own
``Memory`` (remember, recall, update, forget, list, info, reset) and its storage protocol.

Runs in .venv-crewai, started by tests/integrations/test_crewai.py. No LLM is called: every
``remember`` gives scope, categories and importance, consolidation is off and recall explores no
further than the search (see conftest.crew).
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from crewai.memory.storage.backend import StorageBackend
from crewai.memory.storage.factory import set_memory_storage_factory
from crewai.memory.types import MemoryRecord
from crewai.memory.unified_memory import Memory as CrewMemory

from conftest import crew
from memvault import AsyncMemory, Memory
from memvault.errors import Forbidden, InvalidConfig, InvalidInput, MissingScope
from memvault.integrations.crewai import MemvaultEmbedder, MemvaultStorage

Make = Callable[..., tuple[MemvaultStorage, CrewMemory]]
FOREIGN = re.escape("embedder=storage.embedder")


def utcnow() -> datetime:
    """CrewAI's times: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def remember(crew_memory: CrewMemory, text: str, scope: str = "/crew", **kwargs: Any) -> Any:
    fields: dict[str, Any] = {"categories": [], "importance": 0.5}
    fields.update(kwargs)
    record = crew_memory.remember(text, scope=scope, **fields)
    assert record is not None
    return record


def contents(matches: list[Any]) -> list[str]:
    return [match.record.content for match in matches]


def test_the_network_guard_holds_here() -> None:
    # tests/netguard is on PYTHONPATH: CrewAI (telemetry, an LLM, a hub) reaches loopback only.
    # TEST-NET-1 (RFC 5737): refused by the guard before any packet is sent.
    with pytest.raises(ConnectionRefusedError, match="loopback"):
        socket.create_connection(("192.0.2.1", 80), timeout=2)


def test_it_is_a_crewai_storage_backend(memory: Memory) -> None:
    assert isinstance(MemvaultStorage(memory, user_id="alice"), StorageBackend)


def test_round_trip_through_crewai_memory(make_crew: Make, memory: Memory) -> None:
    storage, crew_memory = make_crew(user_id="alice")
    tea = remember(
        crew_memory,
        "Alice drinks green tea every morning",
        scope="/crew/helper",
        categories=["taste"],
        metadata={"source_doc": "chat", "turn": 3},
        importance=0.8,
        source="alice-chat",
    )
    bike = remember(crew_memory, "Alice rides her bike to work", scope="/crew/planner")

    # Each record is a memvault memory of alice's scope, CrewAI's fields in its metadata.
    stored = memory.get_all(user_id="alice")["results"]
    assert sorted(m["memory"] for m in stored) == sorted([tea.content, bike.content])

    for depth in ("shallow", "deep"):
        found = crew_memory.recall("green tea", depth=depth, limit=5)
        assert contents(found)[0] == "Alice drinks green tea every morning"
        record = found[0].record
        assert record.id == tea.id
        assert record.scope == "/crew/helper"
        assert record.categories == ["taste"]
        assert record.metadata == {"source_doc": "chat", "turn": 3}
        assert record.importance == 0.8
        assert record.source == "alice-chat"
        assert record.created_at == tea.created_at  # CrewAI's own time, naive UTC
    assert contents(crew_memory.recall("bike", scope="/crew/planner", depth="shallow")) == [
        "Alice rides her bike to work"
    ]
    assert crew_memory.recall("green tea", scope="/crew/planner", depth="shallow")[0].record.id == (
        bike.id
    )
    assert contents(crew_memory.recall("tea", categories=["taste"], depth="shallow")) == [
        tea.content
    ]

    # get_record, update (text re-embedded: the new words are found), list, count, info.
    updated = crew_memory.update(tea.id, content="Alice now drinks black coffee", importance=0.9)
    kept = storage.get_record(tea.id).model_dump(exclude={"last_accessed"})
    assert kept == updated.model_dump(exclude={"last_accessed"})
    assert kept["importance"] == 0.9
    assert contents(crew_memory.recall("black coffee", depth="shallow"))[0] == updated.content
    assert len(memory.history(stored[0]["id"])) >= 1
    assert [r.content for r in crew_memory.list_records()] == [
        "Alice rides her bike to work",
        "Alice now drinks black coffee",
    ]
    assert crew_memory.list_records(limit=1, offset=1)[0].id == tea.id
    assert storage.count() == 2 and storage.count("/crew/helper") == 1
    assert crew_memory.list_scopes() == ["/crew"]
    assert crew_memory.list_scopes("/crew") == ["/crew/helper", "/crew/planner"]
    assert crew_memory.list_categories() == {"taste": 1}
    info = crew_memory.info("/crew")
    assert (info.path, info.record_count, info.child_scopes) == (
        "/crew",
        2,
        ["/crew/helper", "/crew/planner"],
    )
    assert info.categories == ["taste"]
    assert info.oldest_record == tea.created_at and info.newest_record == bike.created_at
    assert "/crew/helper (1 records)" in crew_memory.tree()

    # forget by id, then reset of a subtree and of everything.
    assert crew_memory.forget(record_ids=[tea.id]) == 1
    assert storage.get_record(tea.id) is None
    remember(crew_memory, "Alice keeps a journal", scope="/crew/writer")
    crew_memory.reset("/crew/writer")
    assert [r.content for r in crew_memory.list_records()] == ["Alice rides her bike to work"]
    crew_memory.reset()
    assert storage.count() == 0
    assert crew_memory.recall("bike", depth="shallow") == []


def test_remember_many_saves_in_the_background(make_crew: Make) -> None:
    storage, crew_memory = make_crew(user_id="alice")
    crew_memory.remember_many(
        ["Alice plays chess", "Alice learns Rust"], scope="/crew", categories=["x"], importance=0.5
    )
    # recall waits for the pending saves (CrewAI's read barrier).
    assert contents(crew_memory.recall("chess", depth="shallow", limit=1)) == ["Alice plays chess"]
    assert storage.count() == 2


def test_recall_by_meaning_with_the_local_model(tmp_path: Any) -> None:
    # memvault's real model (memvault[local]), what the docs install beside CrewAI: a question
    # that shares no word with the memory finds it by meaning.
    from memvault.embedding.onnx import OnnxEmbedder

    with Memory(tmp_path / "local", embedder=OnnxEmbedder()) as memory:
        storage = MemvaultStorage(memory, user_id="alice")
        crew_memory = crew(storage)
        remember(crew_memory, "Alice is allergic to peanuts", scope="/crew/health")
        remember(crew_memory, "Alice works as a nurse in Lyon", scope="/crew/work")
        found = crew_memory.recall("what can't alice eat?", depth="shallow", limit=1)
        assert contents(found) == ["Alice is allergic to peanuts"]
        crew_memory.close()


def test_update_of_a_missing_record_is_refused(make_crew: Make) -> None:
    _, crew_memory = make_crew(user_id="alice")
    with pytest.raises(ValueError, match="Record not found"):
        crew_memory.update("no-such-id", content="x")


def test_a_scope_prefix_matches_whole_segments(make_crew: Make) -> None:
    storage, crew_memory = make_crew(user_id="alice")
    remember(crew_memory, "in crew", scope="/crew/a")
    remember(crew_memory, "in crewx", scope="/crewx")
    remember(crew_memory, "at the root", scope="/")
    assert contents(crew_memory.recall("in", scope="/crew", depth="shallow")) == ["in crew"]
    assert storage.count("/crew") == 1 and storage.count("/") == 3 and storage.count(None) == 3
    assert crew_memory.list_scopes("/") == ["/crew", "/crewx"]
    # A scoped view of CrewAI's Memory (root_scope) stays in its subtree, reset included.
    view = crew_memory.scope("/crew")
    assert contents(view.recall("in", depth="shallow")) == ["in crew"]
    assert view.info().record_count == 1
    view.remember("in crew too", categories=[], importance=0.5)
    assert storage.count("/crew") == 2
    view.reset()
    assert sorted(r.content for r in crew_memory.list_records()) == ["at the root", "in crewx"]


def test_two_users_never_see_each_others_records(make_crew: Make, memory: Memory) -> None:
    alice_storage, alice = make_crew(user_id="alice")
    bob_storage, bob = make_crew(user_id="bob")
    secret = remember(alice, "Alice's locker code is 4711", scope="/crew/shared")
    remember(bob, "Bob likes jazz", scope="/crew/shared")

    # The same CrewAI paths, recall at every depth, prefix and category.
    for scope in (None, "/", "/crew", "/crew/shared"):
        assert contents(bob.recall("locker code 4711", scope=scope, depth="shallow")) == [
            "Bob likes jazz"
        ]
        assert [r.content for r in bob.list_records(scope=scope)] == ["Bob likes jazz"]
    assert contents(bob.recall("locker code 4711", depth="deep")) == ["Bob likes jazz"]
    assert bob_storage.count() == 1 and bob.info("/").record_count == 1

    # Bob's storage cannot read, change or delete alice's record by its id.
    assert bob_storage.get_record(secret.id) is None
    with pytest.raises(ValueError, match="Record not found"):
        bob.update(secret.id, content="Alice's locker code is 0000")
    assert bob.forget(record_ids=[secret.id]) == 0
    assert bob_storage.delete(record_ids=[secret.id], scope_prefix="/") == 0
    with pytest.raises(InvalidInput):
        bob_storage.update(secret.model_copy(update={"content": "overwritten"}))

    # Bob's reset, whole or of the shared path, empties bob's scope only.
    bob.reset("/crew/shared")
    bob.reset_all()
    assert bob_storage.count() == 0
    assert alice_storage.get_record(secret.id).content == "Alice's locker code is 4711"
    assert [m["memory"] for m in memory.get_all(user_id="alice")["results"]] == [secret.content]


def test_a_storage_without_a_scope_is_refused(memory: Memory) -> None:
    with pytest.raises(InvalidConfig):
        MemvaultStorage(memory)
    with pytest.raises(InvalidConfig):
        MemvaultStorage(memory, scope=lambda path: {"user_id": path.split("/")[1]})


def test_a_path_rule_narrows_and_never_widens(make_crew: Make, memory: Memory) -> None:
    def by_agent(path: str) -> dict[str, str]:
        parts = path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "agent":
            raise KeyError(path)
        return {"agent_id": parts[1]}

    storage, crew_memory = make_crew(user_id="alice", scope=by_agent)
    remember(crew_memory, "the writer's draft", scope="/agent/writer/notes")
    remember(crew_memory, "the editor's remark", scope="/agent/editor")
    assert [m["agent_id"] for m in memory.get_all(user_id="alice")["results"]] == [
        "editor",
        "writer",
    ]
    assert contents(crew_memory.recall("draft", scope="/agent/writer", depth="shallow")) == [
        "the writer's draft"
    ]
    # A prefix the rule cannot map reads the bound scope (still alice's only).
    assert storage.count("/agent") == 2 and storage.count() == 2
    # A path the rule cannot map is not written; a rule answering another user is Forbidden.
    with pytest.raises(MissingScope):
        storage.save([MemoryRecord(content="nowhere", scope="/elsewhere")])
    # Moving a record to a path of another memvault scope is refused, never half done.
    draft = crew_memory.list_records(scope="/agent/writer")[0]
    with pytest.raises(InvalidInput, match="another memvault scope"):
        storage.update(draft.model_copy(update={"scope": "/agent/editor"}))
    assert storage.get_record(draft.id).scope == "/agent/writer/notes"
    storage.update(draft.model_copy(update={"scope": "/agent/writer/archive"}))
    assert storage.get_record(draft.id).scope == "/agent/writer/archive"
    hostile = MemvaultStorage(memory, user_id="alice", scope=lambda path: {"user_id": "bob"})
    with pytest.raises(Forbidden):
        hostile.save([MemoryRecord(content="to bob", scope="/x")])
    with pytest.raises(Forbidden):
        hostile.count("/x")
    assert memory.get_all(user_id="bob")["results"] == []


def test_metadata_filters(memory: Memory, make_crew: Make) -> None:
    storage, crew_memory = make_crew(user_id="alice")
    remember(crew_memory, "first note about tea", metadata={"kind": "note", "n": 1})
    remember(crew_memory, "second note about tea", metadata={"kind": "note", "n": "1"})
    remember(crew_memory, "a task about tea", metadata={"kind": "task", "n": 2})
    query = storage.embedder(["tea"])[0]

    def found(**filters: Any) -> list[str]:
        return sorted(r.content for r, _ in storage.search(query, metadata_filter=filters))

    assert found(kind="note") == ["first note about tea", "second note about tea"]
    assert found(kind="note", n=1) == ["first note about tea"]  # 1 is not "1"
    assert found(n="1") == ["second note about tea"]
    assert found(kind="none") == []
    assert storage.delete(metadata_filter={"kind": "task"}) == 1
    assert storage.delete(metadata_filter={"kind": "note"}, record_ids=["unknown"]) == 0
    assert storage.count() == 2
    # A metadata key named like the adapter's own fields is CrewAI's, never the adapter's.
    remember(crew_memory, "spoof", scope="/other", metadata={"crewai_scope": "/crew"})
    assert [r.content for r in crew_memory.list_records(scope="/crew")] == [
        "second note about tea",
        "first note about tea",
    ]
    assert storage.get_record(crew_memory.list_records(scope="/other")[0].id).metadata == {
        "crewai_scope": "/crew"
    }


def test_delete_older_than_and_by_category(make_crew: Make) -> None:
    storage, _ = make_crew(user_id="alice")
    old = MemoryRecord(
        content="an old fact",
        scope="/crew",
        categories=["a"],
        created_at=utcnow() - timedelta(days=3),
    )
    storage.save([old, MemoryRecord(content="a new fact", scope="/crew", categories=["b"])])
    assert storage.delete(older_than=utcnow() - timedelta(days=1)) == 1
    assert storage.get_record(old.id) is None
    assert storage.delete(categories=["zzz"]) == 0
    assert storage.delete(categories=["zzz", "b"]) == 1
    assert storage.count() == 0


def test_memories_crewai_did_not_write_are_left_alone(make_crew: Make, memory: Memory) -> None:
    memory.add("written through memvault's API", user_id="alice")
    memory.add("looks like one", user_id="alice", metadata={"crewai_depth": 0})
    _, crew_memory = make_crew(user_id="alice")
    remember(crew_memory, "written by the crew")
    assert [r.content for r in crew_memory.list_records()] == ["written by the crew"]
    assert contents(crew_memory.recall("written", depth="shallow")) == ["written by the crew"]
    crew_memory.reset_all()
    assert sorted(m["memory"] for m in memory.get_all(user_id="alice")["results"]) == [
        "looks like one",
        "written through memvault's API",
    ]


def test_a_vector_the_storage_did_not_make_is_refused(make_crew: Make, memory: Memory) -> None:
    storage, crew_memory = make_crew(user_id="alice")
    remember(crew_memory, "Alice drinks green tea")
    dims = len(storage.embedder(["x"])[0])
    with pytest.raises(InvalidInput, match=FOREIGN):
        storage.search([0.5] * dims)
    with pytest.raises(InvalidInput):
        storage.search([])
    # Another storage's embedder (even on the same model) is foreign too.
    other = MemvaultStorage(memory, user_id="alice")
    with pytest.raises(InvalidInput, match=FOREIGN):
        other.search(storage.embedder(["green tea"])[0])
    # CrewAI's Memory with another embedder: recall fails clearly, never answers by vector alone.
    foreign = CrewMemory(
        storage=storage,
        embedder=lambda texts: [[0.25] * dims for _ in texts],
        consolidation_threshold=1.0,
        exploration_budget=0,
    )
    with pytest.raises(InvalidInput, match=FOREIGN):
        foreign.recall("green tea", depth="shallow")
    foreign.close()


def test_the_query_cache_is_bounded(memory: Memory) -> None:
    embedder = MemvaultEmbedder(memory, max_entries=2)
    first, second, third = embedder(["one", "two", "three"])
    assert embedder.text_of(third) == "three" and embedder.text_of(second) == "two"
    with pytest.raises(InvalidInput):
        embedder.text_of(first)
    with pytest.raises(InvalidConfig):
        MemvaultEmbedder(memory, max_entries=0)


def test_the_same_text_twice_in_a_scope_is_refused_whole(make_crew: Make) -> None:
    storage, crew_memory = make_crew(user_id="alice")
    remember(crew_memory, "Alice drinks green tea", scope="/a")
    with pytest.raises(InvalidInput, match="one memory per text and scope"):
        storage.save(
            [
                MemoryRecord(content="a fresh fact", scope="/b"),
                MemoryRecord(content="Alice drinks green tea", scope="/b"),
            ]
        )
    assert [r.content for r in crew_memory.list_records()] == ["Alice drinks green tea"]


def test_private_records_follow_crewais_rule(make_crew: Make) -> None:
    _, crew_memory = make_crew(user_id="alice")
    remember(crew_memory, "a private diary entry", source="alice-diary", private=True)
    remember(crew_memory, "a public diary note")
    assert contents(crew_memory.recall("diary", depth="shallow")) == ["a public diary note"]
    assert sorted(contents(crew_memory.recall("diary", depth="shallow", source="alice-diary"))) == [
        "a private diary entry",
        "a public diary note",
    ]


def test_async_variants(make_crew: Make) -> None:
    storage, _ = make_crew(user_id="alice")
    record = MemoryRecord(content="saved asynchronously", scope="/async", categories=["x"])

    async def run() -> None:
        await storage.asave([record])
        hits = await storage.asearch(storage.embedder(["asynchronously"])[0], scope_prefix="/async")
        assert [r.id for r, _ in hits] == [record.id]
        assert await storage.adelete(scope_prefix="/async") == 1

    asyncio.run(run())
    assert storage.count() == 0


def test_an_async_memory_and_a_slice_view(memory: Memory) -> None:
    storage = MemvaultStorage(AsyncMemory.from_memory(memory), user_id="alice")
    assert storage.memory is memory
    crew_memory = crew(storage)
    remember(crew_memory, "a research finding", scope="/research")
    remember(crew_memory, "a writing tip", scope="/writing")
    remember(crew_memory, "a sales figure", scope="/sales")
    both = crew_memory.slice(["/research", "/writing"])
    assert sorted(contents(both.recall("a", depth="shallow"))) == [
        "a research finding",
        "a writing tip",
    ]
    crew_memory.close()


def test_the_storage_factory_hook(memory: Memory) -> None:
    storage = MemvaultStorage(memory, user_id="alice")
    set_memory_storage_factory(lambda spec: storage if spec == "memvault" else None)
    try:
        crew_memory = CrewMemory(
            storage="memvault",
            embedder=storage.embedder,
            consolidation_threshold=1.0,
            exploration_budget=0,
        )
        remember(crew_memory, "made through the factory")
        assert storage.count() == 1
        crew_memory.close()
    finally:
        set_memory_storage_factory(None)


HOSTILE = [
    "' OR 1=1 --",
    "%",
    "_",
    "\\",
    '"); DROP TABLE memories; --',
    "' || char(34)) IN ('x'), 0) OR 1 OR coalesce(json_type('{}', '$.a",
    "$.a[0]",
    "a.b",
    "*",
    "ünïcødé ✓ 🧠",
    "\u202eevil",
    "line\nbreak\ttab",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_are_values(make_crew: Make, value: str) -> None:
    alice_storage, alice = make_crew(user_id="alice")
    bob_storage, bob = make_crew(user_id="bob")
    scope = "/crew/" + value.replace("/", "")
    record = remember(
        alice,
        f"alice note {value}",
        scope=scope,
        categories=[value],
        metadata={value: value},
        source=value,
    )
    remember(bob, "bob note", scope="/crew/b")
    got = alice_storage.get_record(record.id)
    assert (got.content, got.scope, got.categories, got.metadata, got.source) == (
        f"alice note {value}",
        scope.rstrip("/") if scope != "/crew/" else "/crew",
        [value],
        {value: value},
        value,
    )
    query = alice_storage.embedder([value])[0]
    assert [r.id for r, _ in alice_storage.search(query, scope_prefix=scope)] == [record.id]
    assert [r.id for r, _ in alice_storage.search(query, categories=[value])] == [record.id]
    assert [r.id for r, _ in alice_storage.search(query, metadata_filter={value: value})] == [
        record.id
    ]
    # The value as bob's prefix, category, filter or record id finds and deletes nothing.
    assert bob_storage.delete(scope_prefix=scope) == 0
    assert bob_storage.delete(categories=[value]) == 0
    assert bob_storage.delete(metadata_filter={value: value}) == 0
    assert bob_storage.delete(record_ids=[value, record.id]) == 0
    bob.reset(scope)
    assert bob_storage.get_record(value) is None
    assert alice_storage.count() == 1 and bob_storage.count() == 1


def test_a_star_inside_the_bound_scope_is_a_value_never_a_wildcard(make_crew: Make) -> None:
    """Within one storage's own scope, a "*" path segment, category, metadata value or record
    id (which memvault's filter grammar would read as "the field is present" in an ``eq``)
    matches only itself: deleting "/crew/*" leaves "/crew/a", and so on."""
    storage, crew_memory = make_crew(user_id="alice")
    star = remember(
        crew_memory, "the star note", scope="/crew/*", categories=["*"], metadata={"k": "*"}
    )
    plain = remember(
        crew_memory, "the plain note", scope="/crew/a", categories=["a"], metadata={"k": "a"}
    )
    query = storage.embedder(["note"])[0]
    assert [r.id for r, _ in storage.search(query, scope_prefix="/crew/*")] == [star.id]
    assert [r.id for r, _ in storage.search(query, categories=["*"])] == [star.id]
    assert [r.id for r, _ in storage.search(query, metadata_filter={"k": "*"})] == [star.id]
    assert storage.count("/crew/*") == 1 and storage.list_scopes("/crew") == ["/crew/*", "/crew/a"]
    assert storage.get_record("*") is None
    assert storage.delete(record_ids=["*"]) == 0
    assert storage.delete(metadata_filter={"k": "*"}) == 1
    assert [r.id for r in storage.list_records()] == [plain.id]
    remember(crew_memory, "another star note", scope="/crew/*")
    storage.reset("/crew/*")
    assert [r.id for r in storage.list_records()] == [plain.id]


def test_bad_input_is_refused_clearly(make_crew: Make) -> None:
    storage, crew_memory = make_crew(user_id="alice")
    remember(crew_memory, "the only record")
    query = storage.embedder(["record"])[0]
    # CrewAI asks for twice its limit: past memvault's 1,000 the best 1,000 come back.
    assert len(storage.search(query, limit=5000)) == 1
    assert storage.search(query, limit=0) == []
    with pytest.raises(InvalidInput):
        storage.search(query, limit="10")  # type: ignore[arg-type]
    storage.reset()
    with pytest.raises(InvalidInput):
        storage.count("/" + "/".join(["x"] * 65))  # deeper than 64 segments
    with pytest.raises(InvalidInput):
        storage.save([MemoryRecord(content="x", scope="/a", metadata={"bad": object()})])
    with pytest.raises(InvalidInput):
        storage.save([MemoryRecord(content="\ud800", scope="/a")])
    assert storage.count() == 0
