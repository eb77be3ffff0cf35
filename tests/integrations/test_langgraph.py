"""The LangGraph store and the LangChain retriever, against the real packages (offline)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip(
    "langgraph.store.base", reason="the langchain extra (LangGraph) is not installed"
)
pytest.importorskip("langchain_core.retrievers", reason="the langchain extra is not installed")

from langchain_core.documents import Document
from langgraph.store.base import PutOp, SearchItem

from memvault import AsyncMemory, HashEmbedder, Memory
from memvault.errors import (
    Forbidden,
    InvalidConfig,
    InvalidFilter,
    InvalidInput,
    MissingScope,
)
from memvault.integrations.langchain import MemvaultRetriever
from memvault.integrations.langgraph import MemvaultStore

HOSTILE = "it's \"quoted\" ../../etc/passwd ü 日本語 🧠 ' OR 1=1 --"
# LangGraph itself refuses "." in a namespace item: the hostile item keeps everything else.
HOSTILE_ITEM = "it's \"quoted\" //etc/passwd ü 日本語 🧠 ' OR 1=1 -- value[0]"


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[Memory]:
    with Memory(tmp_path / "home", embedder=HashEmbedder()) as m:
        yield m


@pytest.fixture
def store(memory: Memory) -> MemvaultStore:
    return MemvaultStore(memory, scope=lambda ns: {"user_id": ns[1]})


def test_put_get_search_delete_round_trip(store: MemvaultStore, memory: Memory) -> None:
    ns = ("memories", "alice")
    store.put(ns, "drink", {"text": "Alice prefers green tea", "kind": "preference"})
    store.put(ns, "city", {"content": "Alice lives in Lisbon", "kind": "fact"})
    store.put(ns, "raw", {"score": 3, "tags": ["x"]})

    item = store.get(ns, "drink")
    assert item is not None
    assert item.value == {"text": "Alice prefers green tea", "kind": "preference"}
    assert (item.namespace, item.key) == (ns, "drink")
    assert item.created_at <= item.updated_at

    hits = store.search(ns, query="what does alice drink? green tea", limit=2)
    assert all(isinstance(hit, SearchItem) for hit in hits)
    assert hits[0].key == "drink"
    assert isinstance(hits[0].score, float)
    # A value without text or content is stored as JSON text: search still finds it.
    assert store.search(ns, query="tags score")[0].key == "raw"
    assert [hit.key for hit in store.search(ns, filter={"kind": "fact"})] == ["city"]
    assert [hit.key for hit in store.search(ns, filter={"score": {"$gte": 3}})] == ["raw"]
    # The memory lives in alice's memvault scope, with the text search matched.
    assert {m["memory"] for m in memory.get_all(user_id="alice")["results"]} >= {
        "Alice prefers green tea"
    }

    # put is an upsert: the same key is updated, never added twice.
    store.put(ns, "drink", {"text": "Alice now drinks coffee"})
    updated = store.get(ns, "drink")
    assert updated is not None and updated.value == {"text": "Alice now drinks coffee"}
    assert memory.count(user_id="alice") == 3

    store.delete(ns, "drink")
    assert store.get(ns, "drink") is None
    assert memory.count(user_id="alice") == 2


def test_namespaces_of_two_users_never_see_each_other(store: MemvaultStore) -> None:
    store.put(("memories", "alice"), "k", {"text": "Alice's secret plan"})
    store.put(("memories", "bob"), "k", {"text": "Bob's secret plan"})
    alice = store.search(("memories", "alice"), query="secret plan", limit=10)
    bob = store.search(("memories", "bob"), query="secret plan", limit=10)
    assert [hit.value["text"] for hit in alice] == ["Alice's secret plan"]
    assert [hit.value["text"] for hit in bob] == ["Bob's secret plan"]
    alice_item = store.get(("memories", "alice"), "k")
    assert alice_item is not None and alice_item.value["text"] == "Alice's secret plan"
    assert store.list_namespaces(prefix=("memories", "alice")) == [("memories", "alice")]


def test_namespaces_of_one_scope_stay_apart(store: MemvaultStore) -> None:
    store.put(("memories", "alice", "work"), "k", {"text": "Standup at nine"})
    store.put(("memories", "alice"), "k", {"text": "Likes hiking"})
    work = store.get(("memories", "alice", "work"), "k")
    assert work is not None and work.value == {"text": "Standup at nine"}
    exact = store.search(("memories", "alice", "work"), query="hiking nine")
    assert [hit.value["text"] for hit in exact] == ["Standup at nine"]
    under = store.search(("memories", "alice"))
    assert {hit.value["text"] for hit in under} == {"Standup at nine", "Likes hiking"}
    assert store.list_namespaces(prefix=("memories", "alice")) == [
        ("memories", "alice"),
        ("memories", "alice", "work"),
    ]
    assert store.list_namespaces(prefix=("memories", "alice"), max_depth=2) == [
        ("memories", "alice")
    ]
    assert store.list_namespaces(prefix=("memories", "alice"), suffix=("work",)) == [
        ("memories", "alice", "work")
    ]


def test_a_star_is_a_label_a_key_and_a_value_never_a_wildcard(store: MemvaultStore) -> None:
    store.put(("memories", "alice", "work"), "k", {"text": "Standup at nine", "tag": "a"})
    store.put(("memories", "alice", "home"), "k", {"text": "Likes hiking", "tag": "b"})
    star = ("memories", "alice", "*")
    assert store.get(star, "k") is None
    assert store.search(star) == []
    assert store.search(("memories", "alice"), filter={"tag": "*"}) == []
    assert store.search(("memories", "alice"), filter={"tag": {"$eq": "*"}}) == []
    assert store.get(("memories", "alice", "work"), "*") is None
    store.put(star, "k", {"text": "A star namespace"})  # overwrites neither of the others
    work = store.get(("memories", "alice", "work"), "k")
    home = store.get(("memories", "alice", "home"), "k")
    assert work is not None and work.value["text"] == "Standup at nine"
    assert home is not None and home.value["text"] == "Likes hiking"
    starred = store.get(star, "k")
    assert starred is not None and starred.value == {"text": "A star namespace"}
    store.delete(star, "k")
    assert store.get(("memories", "alice", "work"), "k") is not None
    assert len(store.search(("memories", "alice"))) == 2


def test_hostile_key_and_namespace_item_are_stored_and_found_exactly(memory: Memory) -> None:
    store = MemvaultStore(memory, user_id="alice")
    ns = ("notes", HOSTILE_ITEM)
    store.put(ns, HOSTILE, {"text": "hostile value " + HOSTILE, HOSTILE: HOSTILE})
    store.put(ns, HOSTILE + "x", {"text": "a neighbour"})
    item = store.get(ns, HOSTILE)
    assert item is not None
    assert (item.namespace, item.key) == (ns, HOSTILE)
    assert item.value == {"text": "hostile value " + HOSTILE, HOSTILE: HOSTILE}
    assert [hit.key for hit in store.search(ns, filter={HOSTILE: HOSTILE})] == [HOSTILE]
    assert store.get(("notes", "it's"), HOSTILE) is None
    assert store.list_namespaces() == [ns]


def test_scope_rules_never_widen(memory: Memory) -> None:
    with pytest.raises(InvalidConfig):
        MemvaultStore(memory)
    bound = MemvaultStore(memory, user_id="alice", scope=lambda ns: {"user_id": ns[1]})
    bound.put(("memories", "alice"), "k", {"text": "mine"})
    with pytest.raises(Forbidden):
        bound.put(("memories", "bob"), "k", {"text": "not mine"})
    with pytest.raises(Forbidden):
        bound.search(("memories", "bob"), query="mine")
    with pytest.raises(MissingScope):
        bound.search(("memories",), query="mine")
    assert memory.count(user_id="bob") == 0
    mapped = MemvaultStore(memory, scope=lambda ns: {"user_id": ns[1]})
    with pytest.raises(MissingScope):
        mapped.list_namespaces()
    with pytest.raises(InvalidConfig):
        MemvaultStore(memory, scope=lambda ns: {"namespace": ns[0]}).get(("a",), "k")


def test_refusals_name_the_problem(store: MemvaultStore) -> None:
    ns = ("memories", "alice")
    store.put(ns, "a", {"text": "Same words"})
    with pytest.raises(InvalidInput):
        store.put(ns, "b", {"text": "Same words"})
    assert store.get(ns, "b") is None
    with pytest.raises(InvalidFilter):
        store.search(ns, filter={"kind": {"$regex": ".*"}})


def test_async_batch_on_async_memory(memory: Memory) -> None:
    store = MemvaultStore(AsyncMemory.from_memory(memory), user_id="carol")

    async def run() -> None:
        await store.abatch([PutOp(("prefs",), "tea", {"text": "Carol likes oolong"})])
        item = await store.aget(("prefs",), "tea")
        assert item is not None and item.value == {"text": "Carol likes oolong"}
        hits = await store.asearch(("prefs",), query="oolong")
        assert [hit.key for hit in hits] == ["tea"]

    asyncio.run(run())


def test_retriever_returns_documents_of_its_scope_only(memory: Memory) -> None:
    memory.add("Alice prefers green tea", user_id="alice", metadata={"source": "chat"})
    memory.add("Alice walks her dog at seven", user_id="alice")
    memory.add("Bob prefers green tea too", user_id="bob")
    retriever = MemvaultRetriever(memory=memory, user_id="alice", top_k=5)
    documents = retriever.invoke("green tea")
    assert documents and all(isinstance(doc, Document) for doc in documents)
    assert {doc.page_content for doc in documents} <= {
        "Alice prefers green tea",
        "Alice walks her dog at seven",
    }
    first = documents[0]
    assert first.page_content == "Alice prefers green tea"
    assert first.metadata["source"] == "chat"
    assert first.metadata["user_id"] == "alice"
    assert isinstance(first.metadata["score"], float)
    assert first.id == first.metadata["id"]
    asynced = MemvaultRetriever(memory=AsyncMemory.from_memory(memory), user_id="bob")
    bob = asyncio.run(asynced.ainvoke("green tea"))
    assert [doc.page_content for doc in bob] == ["Bob prefers green tea too"]
    with pytest.raises(MissingScope):
        MemvaultRetriever(memory=memory)
