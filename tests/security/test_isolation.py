"""No call ever returns another user's or another namespace's memory (r3 and OpenMemory did)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memvault import HashEmbedder, Memory, NotFound

USERS = [f"user{i}" for i in range(12)]
NAMESPACES = ["default", "tenant-b"]
SHARED_WORDS = "secret plan coffee berlin meeting budget"


@pytest.fixture
def tenants(home: Path) -> dict[str, Memory]:
    opened = {ns: Memory(home, embedder=HashEmbedder(), namespace=ns) for ns in NAMESPACES}
    yield opened
    for m in opened.values():
        m.close()


def owner_of(text: str) -> tuple[str, str]:
    namespace, user, _ = text.split("|", 2)
    return namespace, user


def test_every_read_stays_inside_namespace_and_user(tenants: dict[str, Memory]) -> None:
    for namespace, m in tenants.items():
        # Every user gets the same words, so only the scope can keep them apart.
        m.add_many(
            [
                {
                    "messages": f"{namespace}|{user}|{SHARED_WORDS} {i}",
                    "user_id": user,
                    "metadata": {"kind": "note", "n": i},
                }
                for user in USERS
                for i in range(8)
            ]
        )
        m.add(f"{namespace}|agentonly|{SHARED_WORDS}", agent_id="shared-agent")
    for namespace, m in tenants.items():
        for user in USERS:
            calls = [
                m.search(SHARED_WORDS, user_id=user, top_k=100)["results"],
                m.search(SHARED_WORDS, user_id=user, top_k=100, mode="vector")["results"],
                m.search(SHARED_WORDS, user_id=user, top_k=100, mode="bm25")["results"],
                m.search(SHARED_WORDS, filters={"user_id": user, "kind": "note"}, top_k=100)[
                    "results"
                ],
                m.search(
                    SHARED_WORDS, user_id=user, filters={"OR": [{"n": 1}, {"user_id": "user0"}]}
                )["results"],
                m.get_all(user_id=user, top_k=1000)["results"],
                m.get_all(filters={"user_id": user, "n": {"gte": 0}})["results"],
            ]
            for results in calls:
                assert results, (namespace, user)
                for item in results:
                    assert owner_of(item["memory"]) == (namespace, user)
                    assert item["user_id"] == user
        agent_hits = m.search(SHARED_WORDS, agent_id="shared-agent")["results"]
        assert [owner_of(h["memory"]) for h in agent_hits] == [(namespace, "agentonly")]


def test_ids_from_another_namespace_are_not_found(tenants: dict[str, Memory]) -> None:
    """SelfMemory let bob's key delete alice's memory by id."""
    a, b = tenants["default"], tenants["tenant-b"]
    memory_id = a.add("default tenant fact", user_id="alice")["results"][0]["id"]
    assert b.get(memory_id) is None
    assert b.history(memory_id) == []
    for call in (lambda: b.delete(memory_id), lambda: b.update(memory_id, "hijacked")):
        with pytest.raises(NotFound):
            call()
    assert a.get(memory_id)["memory"] == "default tenant fact"


def test_delete_all_of_one_user_leaves_everyone_else(tenants: dict[str, Memory]) -> None:
    m = tenants["default"]
    for user in USERS[:3]:
        m.add_many([{"messages": f"{user} item {i}", "user_id": user} for i in range(4)])
    tenants["tenant-b"].add("user0 item in b", user_id="user0")
    assert m.delete_all(user_id="user0")["deleted"] == 4
    assert len(m.get_all(user_id="user1")["results"]) == 4
    assert len(tenants["tenant-b"].get_all(user_id="user0")["results"]) == 1


def test_another_user_storing_more_never_changes_a_users_scores(home: Path) -> None:
    """BM25 statistics are each user's own: a tenant cannot shift (or, by watching scores,
    learn about) another user's ranking by storing memories with the same words."""
    with Memory(home, embedder=HashEmbedder()) as m:
        m.add_many(
            [
                {"messages": f"{w} notes for the trip {i}", "user_id": "alice"}
                for i, w in enumerate(SHARED_WORDS.split())
            ]
        )

        def scores(memory: Memory) -> list[list[tuple[str, float]]]:
            return [
                [
                    (h["id"], h["score"])
                    for h in memory.search("coffee meeting berlin", user_id="alice", mode=mode)[
                        "results"
                    ]
                ]
                for mode in ("bm25", "hybrid")
            ]

        before = scores(m)
        assert before[0]  # BM25 found alice's memories
        m.add_many(
            [{"messages": f"coffee berlin coffee {i}", "user_id": "mallory"} for i in range(300)]
        )
        assert scores(m) == before
    with Memory(home, embedder=HashEmbedder()) as reopened:  # the index rebuilt from disk
        assert scores(reopened) == before
