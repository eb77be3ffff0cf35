"""mem0's call shapes, behaviour by behaviour."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from memvault import InvalidInput, Memory, MissingScope, NotFound
from memvault.clock import now_iso


def test_add_returns_mem0_shape(mem: Memory) -> None:
    result = mem.add("Alice prefers green tea", user_id="alice")
    [item] = result["results"]
    assert item["event"] == "ADD"
    assert item["memory"] == "Alice prefers green tea"
    assert len(item["id"]) == 36 and item["id"][14] == "7"  # UUIDv7


def test_add_message_list_stores_each_non_system_message(mem: Memory) -> None:
    result = mem.add(
        [
            {"role": "system", "content": "You are a helpful assistant"},
            {"role": "user", "content": "I moved to Lisbon last month", "name": "alice"},
            {"role": "assistant", "content": "Lisbon is lovely in spring"},
        ],
        user_id="alice",
    )
    assert [r["memory"] for r in result["results"]] == [
        "I moved to Lisbon last month",
        "Lisbon is lovely in spring",
    ]
    stored = {m["memory"]: m for m in mem.get_all(user_id="alice")["results"]}
    assert stored["I moved to Lisbon last month"]["role"] == "user"
    assert stored["I moved to Lisbon last month"]["actor_id"] == "alice"
    assert stored["Lisbon is lovely in spring"]["role"] == "assistant"


def test_exact_duplicate_in_same_scope_is_none_with_existing_id(mem: Memory) -> None:
    first = mem.add("Alice prefers green tea", user_id="alice")["results"][0]
    again = mem.add("  alice prefers GREEN tea ", user_id="alice")["results"][0]
    assert again == {"id": first["id"], "memory": "  alice prefers GREEN tea ", "event": "NONE"}
    assert len(mem.get_all(user_id="alice")["results"]) == 1
    assert [e["event"] for e in mem.history(first["id"])] == ["ADD", "NONE"]


def test_dedup_never_crosses_owners(mem: Memory) -> None:
    """OpenMemory answered bob's fact with alice's id as a duplicate: never here."""
    alice = mem.add("I like jazz", user_id="alice")["results"][0]
    bob = mem.add("I like jazz", user_id="bob")["results"][0]
    agent = mem.add("I like jazz", user_id="alice", agent_id="dj")["results"][0]
    assert bob["event"] == "ADD" and agent["event"] == "ADD"
    assert len({alice["id"], bob["id"], agent["id"]}) == 3
    assert [m["id"] for m in mem.get_all(user_id="bob")["results"]] == [bob["id"]]


def test_dedup_keeps_distinct_texts(mem: Memory) -> None:
    """OpenMemory's order-blind 32-bit hash merged distinct texts; a keyed hash of the text does not."""
    texts = [f"fact {i} about {j}" for i in range(40) for j in ("cats", "dogs")]
    texts += ["dogs about 1 fact", "cats about 2 fact"]  # same words, other order
    result = mem.add_many([{"messages": t, "user_id": "u"} for t in texts])
    assert [r["event"] for r in result["results"]] == ["ADD"] * len(texts)


def test_add_many_keeps_order_and_dedups_inside_the_batch(mem: Memory) -> None:
    items = [{"messages": f"memory {i}", "user_id": "u"} for i in range(600)]
    items.insert(300, {"messages": "memory 7", "user_id": "u"})
    progress: list[tuple[int, int]] = []
    result = mem.add_many(items, batch_size=128, on_progress=lambda d, t: progress.append((d, t)))
    results = result["results"]
    assert [r["memory"] for r in results] == [i["messages"] for i in items]
    assert results[300]["event"] == "NONE" and results[300]["id"] == results[7]["id"]
    assert progress[-1] == (601, 601) and len(progress) == 5
    assert len(mem.get_all(user_id="u", top_k=1000)["results"]) == 600


def test_scope_is_required_everywhere(mem: Memory) -> None:
    with pytest.raises(MissingScope):
        mem.add("no owner")
    with pytest.raises(MissingScope):
        mem.search("anything")
    with pytest.raises(MissingScope):
        mem.get_all()
    with pytest.raises(MissingScope):
        mem.delete_all()
    with pytest.raises(MissingScope):
        mem.search("anything", filters={"topic": "x"})


def test_search_shape_and_scope_in_filters(mem: Memory) -> None:
    mem.add("Alice prefers green tea", user_id="alice", metadata={"topic": "drinks"})
    mem.add("Alice runs marathons", user_id="alice", metadata={"topic": "sport"})
    hits = mem.search("green tea", user_id="alice")["results"]
    assert hits[0]["memory"] == "Alice prefers green tea"
    keys = {
        "id",
        "memory",
        "score",
        "metadata",
        "user_id",
        "agent_id",
        "run_id",
        "memory_type",
        "created_at",
        "updated_at",
    }
    assert keys <= set(hits[0])
    # mem0 2.x passes the scope inside filters.
    via_filters = mem.search("green tea", filters={"user_id": "alice", "topic": "sport"})["results"]
    assert [h["memory"] for h in via_filters] == ["Alice runs marathons"]


def test_search_explain_threshold_and_top_k(mem: Memory) -> None:
    for i in range(30):
        mem.add(f"note {i} about gardening tomatoes", user_id="u")
    mem.add("quantum computing lecture notes", user_id="u")
    hits = mem.search("gardening tomatoes", user_id="u", top_k=5, explain=True)["results"]
    assert len(hits) == 5
    assert {"fused", "vector", "bm25", "vector_rank", "bm25_rank"} <= set(hits[0]["explain"])
    assert {"relevance"} <= set(hits[0]["explain"])
    strict = mem.search("gardening tomatoes", user_id="u", top_k=50, threshold=0.3, explain=True)
    assert strict["results"] and all(h["score"] >= 0.3 for h in strict["results"])
    assert "quantum computing lecture notes" not in [h["memory"] for h in strict["results"]]


def test_search_modes(mem: Memory) -> None:
    mem.add("The cat sat on the mat", user_id="u")
    for mode in ("vector", "bm25", "hybrid"):
        assert (
            mem.search("cat mat", user_id="u", mode=mode)["results"][0]["memory"]
            == "The cat sat on the mat"
        )


def test_get_update_history_delete(mem: Memory) -> None:
    memory_id = mem.add("Alice lives in Paris", user_id="alice", metadata={"city": "paris"})[
        "results"
    ][0]["id"]
    assert mem.get(memory_id)["memory"] == "Alice lives in Paris"
    updated = mem.update(memory_id, "Alice lives in Berlin")
    assert updated["result"]["memory"] == "Alice lives in Berlin"
    assert updated["result"]["metadata"] == {"city": "paris"}
    mem.update(memory_id, metadata={"city": "berlin"})
    assert mem.get(memory_id)["metadata"] == {"city": "berlin"}
    assert mem.search("Berlin", user_id="alice")["results"][0]["id"] == memory_id
    assert mem.search("Paris", user_id="alice", mode="bm25")["results"] == []
    mem.delete(memory_id)
    assert mem.get(memory_id) is None
    assert mem.search("Berlin", user_id="alice")["results"] == []
    events = mem.history(memory_id)
    assert [e["event"] for e in events] == ["ADD", "UPDATE", "UPDATE", "DELETE"]
    assert events[1]["old_memory"] == "Alice lives in Paris"
    assert events[1]["new_memory"] == "Alice lives in Berlin"
    assert events[3]["is_deleted"] is True
    with pytest.raises(NotFound):
        mem.delete(memory_id)
    with pytest.raises(NotFound):
        mem.update(memory_id, "again")


def test_delete_all_deletes_only_the_scope_and_says_how_many(mem: Memory) -> None:
    """SelfMemory's delete_all deleted nothing and said 0."""
    for i in range(5):
        mem.add(f"alice fact {i}", user_id="alice")
        mem.add(f"bob fact {i}", user_id="bob")
    mem.add("alice agent fact", user_id="alice", agent_id="planner")
    assert mem.delete_all(agent_id="planner")["deleted"] == 1
    assert mem.delete_all(user_id="alice")["deleted"] == 5
    assert mem.get_all(user_id="alice")["results"] == []
    assert mem.search("fact", user_id="alice")["results"] == []
    assert len(mem.get_all(user_id="bob")["results"]) == 5


def test_get_all_newest_first_and_top_k(mem: Memory) -> None:
    ids = [mem.add(f"item {i}", user_id="u")["results"][0]["id"] for i in range(12)]
    listed = mem.get_all(user_id="u", top_k=5)["results"]
    assert [m["id"] for m in listed] == list(reversed(ids))[:5]


def test_agent_and_run_scopes(mem: Memory) -> None:
    mem.add("planner prefers short answers", agent_id="planner")
    mem.add("alice asked the planner about trains", user_id="alice", agent_id="planner")
    mem.add("alice asked the writer about poems", user_id="alice", agent_id="writer")
    mem.add("run scratch note", run_id="r1")
    planner = {m["memory"] for m in mem.get_all(agent_id="planner")["results"]}
    assert planner == {"planner prefers short answers", "alice asked the planner about trains"}
    hits = mem.search("alice asked", user_id="alice", agent_id="planner")["results"]
    assert [h["memory"] for h in hits] == ["alice asked the planner about trains"]
    assert [
        h["memory"] for h in mem.search("asked", agent_id="planner", mode="vector")["results"]
    ] != []
    assert {h["memory"] for h in mem.search("note", run_id="r1")["results"]} == {"run scratch note"}


def test_expired_memories_never_appear(mem: Memory) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    kept = mem.add("fresh fact about boats", user_id="u")["results"][0]["id"]
    gone = mem.add("stale fact about boats", user_id="u", expiration_date=past)["results"][0]["id"]
    mem.add("future fact about boats", user_id="u", expiration_date="2999-01-01")
    for mode in ("vector", "bm25", "hybrid"):
        ids = [h["id"] for h in mem.search("boats", user_id="u", mode=mode)["results"]]
        assert kept in ids and gone not in ids
    assert gone not in [m["id"] for m in mem.get_all(user_id="u")["results"]]
    assert mem.get(gone) is None


def test_memories_survive_reopen(open_memory: Callable[..., Memory]) -> None:
    """r3 lost every memory on restart and SelfMemory's store wiped itself when reopened."""
    first = open_memory()
    ids = [
        r["id"]
        for r in first.add_many([{"messages": f"durable {i}", "user_id": "u"} for i in range(50)])[
            "results"
        ]
    ]
    first.close()
    second = open_memory()
    assert {m["id"] for m in second.get_all(user_id="u")["results"]} == set(ids)
    assert second.search("durable 7", user_id="u")["results"][0]["memory"] == "durable 7"


def test_two_instances_see_each_others_writes(open_memory: Callable[..., Memory]) -> None:
    """Like two server processes: a cached index is rebuilt when another writer bumped the scope."""
    a, b = open_memory(), open_memory()
    a.add("apples are red", user_id="u")
    assert b.search("apples", user_id="u")["results"][0]["memory"] == "apples are red"
    b.add("bananas are yellow", user_id="u")
    assert (
        a.search("bananas", user_id="u", mode="vector")["results"][0]["memory"]
        == "bananas are yellow"
    )
    gone = a.search("apples", user_id="u")["results"][0]["id"]
    b.delete(gone)
    assert gone not in [h["id"] for h in a.search("apples", user_id="u", mode="vector")["results"]]


def test_reset_empties_the_namespace_only(open_memory: Callable[..., Memory]) -> None:
    default, other = open_memory(), open_memory(namespace="other")
    default.add("default fact", user_id="u")
    other.add("other fact", user_id="u")
    default.reset()
    assert default.get_all(user_id="u")["results"] == []
    assert [m["memory"] for m in other.get_all(user_id="u")["results"]] == ["other fact"]
    default.add("default fact", user_id="u")  # usable again, with a fresh key
    assert len(default.search("default", user_id="u")["results"]) == 1


def test_search_counts_reads(open_memory: Callable[..., Memory]) -> None:
    m = open_memory()
    memory_id = m.add("counted fact", user_id="u")["results"][0]["id"]
    m.search("counted", user_id="u")
    m.search("counted", user_id="u")
    m.close()  # flushes the background recorder
    found = open_memory().get(memory_id)
    assert found is not None
    assert found["access_count"] == 2 and found["last_accessed_at"] is not None


def test_search_on_an_empty_store_then_add(mem: Memory) -> None:
    """The first search caches an empty index; the first write must patch it, not break it."""
    assert mem.search("anything", user_id="u")["results"] == []
    mem.add("kites fly high", user_id="u")
    assert [h["memory"] for h in mem.search("kites", user_id="u", mode="vector")["results"]] == [
        "kites fly high"
    ]


def test_add_many_keeps_given_created_and_updated_times(mem: Memory) -> None:
    """An import's times (and mem0's ``timestamp``) are stored as given, in UTC."""
    items = [
        {"messages": "old", "user_id": "u", "created_at": "2021-05-01T12:00:00+02:00"},
        {
            "messages": "older",
            "user_id": "u",
            "created_at": "2020-01-01T00:00:00Z",
            "updated_at": "2020-06-01T00:00:00Z",
        },
        {"messages": "now", "user_id": "u"},
    ]
    started = now_iso()
    ids = [r["id"] for r in mem.add_many(items)["results"]]
    old, older, now = (mem.get(memory_id) for memory_id in ids)
    assert old is not None and older is not None and now is not None
    assert (old["created_at"], old["updated_at"]) == ("2021-05-01T10:00:00.000000+00:00",) * 2
    assert older["updated_at"] == "2020-06-01T00:00:00.000000+00:00"
    assert now["created_at"] >= started
    found = mem.get_all(user_id="u", filters={"created_at": {"lt": "2021-01-01"}})["results"]
    assert [m["memory"] for m in found] == ["older"]
    for bad, message in [
        ({"created_at": "2999-01-01"}, "item 1: created_at is in the future"),
        ({"updated_at": "2020-01-01"}, "item 1: updated_at needs created_at"),
        (
            {"created_at": "2020-01-02", "updated_at": "2020-01-01"},
            "item 1: updated_at is before created_at",
        ),
        ({"created_at": "yesterday"}, "item 1: created_at must be an ISO 8601"),
    ]:
        with pytest.raises(InvalidInput) as refused:
            mem.add_many(
                [{"messages": "a", "user_id": "v"}, {"messages": "b", "user_id": "v", **bad}]
            )
        assert refused.value.message.startswith(message) and refused.value.item == 1
    assert mem.count(user_id="v") == 0


def test_entities_lists_owners_of_live_memories(mem: Memory) -> None:
    from memvault.core import reads

    mem.add("a", user_id="ann", agent_id="bot")
    mem.add("b", user_id="ann", run_id="r1")
    mem.add("c", user_id="ben", agent_id="bot")
    mem.add("d", agent_id="solo")
    mem.add("e", user_id="cid", expiration_date="2000-01-01")  # expired: not listed
    listed = [(e["type"], e["name"], e["total_memories"]) for e in reads.entities(mem.engine)]
    assert listed == [
        ("user", "ann", 2),
        ("user", "ben", 1),
        ("agent", "bot", 2),
        ("agent", "solo", 1),
        ("run", "r1", 1),
    ]
    own = [(e["type"], e["name"]) for e in reads.entities(mem.engine, "ann")]
    assert own == [("user", "ann"), ("agent", "bot"), ("run", "r1")]
    assert reads.entities(mem.namespaced("elsewhere").engine) == []


def test_stats_count_live_memories_per_user_agent_and_type(mem: Memory) -> None:
    """The dashboard's counts: the namespace's own, unexpired memories, grouped by owner ids."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    mem.add("alice one", user_id="alice", agent_id="helper")
    mem.add("alice two", user_id="alice", agent_id="helper")
    mem.add("alice three", user_id="alice", memory_type="episodic")
    mem.add("alice expired", user_id="alice", expiration_date=past)
    mem.add("the helper's own note", agent_id="helper")
    mem.namespaced("other").add("another tenant's alice", user_id="alice")
    rows = {(r["user_id"], r["agent_id"], r["memory_type"]): r["memories"] for r in mem.stats()}
    assert rows == {
        ("alice", "helper", "semantic"): 2,
        ("alice", None, "episodic"): 1,
        (None, "helper", "semantic"): 1,
    }
    assert [r["memories"] for r in mem.namespaced("other").stats()] == [1]
