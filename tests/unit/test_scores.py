"""The shown score is a calibrated relevance in [0, 1] (#18): fixed constants, not a z-score of
the candidates; never rising down the list; ``threshold`` compares with it; the same number over
the library, REST and MCP."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from memvault import Memory
from memvault.retrieval.fusion import fuse
from memvault.retrieval.relevance import KEYWORD_SHARE, relevance
from tests.mcp.test_mcp import http_client
from tests.server.conftest import launch_server

FACTS = [
    "I moved to Lisbon",
    "Alice is allergic to peanuts",
    "Nice!",
    "Alice drinks green tea every morning",
    "Bob plays bass in a jazz band on Fridays",
    "Carol teaches history at a secondary school",
]
HOSTILE = [0.0, -0.0, 1.0, -1.0, 1e308, -1e308, math.inf, -math.inf, math.nan, 1e-300, 5e-324]


@pytest.mark.parametrize("mode", ["hybrid", "vector", "bm25"])
def test_relevance_stays_in_the_unit_interval_for_any_part(mode: str) -> None:
    for cosine in [*HOSTILE, None]:
        for bm25 in [*HOSTILE, None]:
            value = relevance(cosine, bm25, mode)
            assert 0.0 <= value <= 1.0, (cosine, bm25, value)


def test_relevance_rises_with_each_part_and_words_alone_are_capped() -> None:
    cosines = [i / 20 for i in range(-20, 21)]
    shown = [relevance(c, 0.0, "hybrid") for c in cosines]
    assert shown == sorted(shown) and shown[0] < 0.01 and shown[-1] > 0.99
    bm25s = [0.0, 0.5, 1, 2, 4, 8, 16, 64, 1e6]
    words = [relevance(None, b, "bm25") for b in bm25s]
    assert words == sorted(words) and words[0] == 0.0 and words[-1] > 0.99
    # In hybrid, shared words without meaning can reach KEYWORD_SHARE at most.
    assert relevance(-1.0, 1e6, "hybrid") <= KEYWORD_SHARE + 0.01
    assert relevance(0.6, 8.0, "hybrid") > max(relevance(0.6, 0, "hybrid"), 0.5)


@pytest.fixture
def meaningful(home: Path, local_embedder: Any) -> Iterator[Memory]:
    with Memory(home, embedder=local_embedder) as memory:
        yield memory


def _scores(hits: list[dict[str, Any]]) -> list[float]:
    return [hit["score"] for hit in hits]


def test_a_lone_hit_scores_by_its_own_relevance(meaningful: Memory) -> None:
    meaningful.add("I moved to Lisbon", user_id="lone")
    strong = meaningful.search("I moved to Lisbon", user_id="lone", explain=True)["results"]
    assert len(strong) == 1 and strong[0]["score"] > 0.99  # the same text: not 0.0
    meaningful.add("The quarterly tax form is due on Monday", user_id="other")
    weak = meaningful.search("my cat's favourite toy", user_id="other")["results"]
    assert len(weak) == 1 and weak[0]["score"] < 0.2
    # No hits at all: an empty scope, and words found nowhere in keyword mode.
    assert meaningful.search("anything", user_id="nobody")["results"] == []
    assert meaningful.search("zebra", user_id="lone", mode="bm25")["results"] == []


@pytest.mark.parametrize("mode", ["hybrid", "vector", "bm25"])
def test_scores_are_in_the_unit_interval_and_never_rise_down_the_list(
    meaningful: Memory, mode: str
) -> None:
    meaningful.add_many([{"messages": text, "user_id": "u"} for text in FACTS])
    for query in ["where does alice live?", "Alice is allergic to peanuts", "alice", "!!", "x"]:
        hits = meaningful.search(query, user_id="u", top_k=10, mode=mode, explain=True)
        scores = _scores(hits["results"])
        assert all(0.0 <= s <= 1.0 for s in scores), (query, scores)
        assert scores == sorted(scores, reverse=True), (query, scores)
        for hit in hits["results"]:  # the raw parts stay in the explanation
            assert hit["score"] <= hit["explain"]["relevance"]
            assert {"fused", "vector", "bm25", "vector_rank", "bm25_rank"} <= set(hit["explain"])


def test_a_keyword_only_hit_and_an_unrelated_one(meaningful: Memory) -> None:
    meaningful.add_many([{"messages": text, "user_id": "u"} for text in FACTS])
    meaningful.add("order number qzv7731 shipped", user_id="u")
    found = meaningful.search("qzv7731", user_id="u", mode="bm25", explain=True)["results"]
    assert [hit["memory"] for hit in found] == ["order number qzv7731 shipped"]
    assert 0.0 < found[0]["score"] < 1.0 and found[0]["explain"]["vector"] is None
    hybrid = meaningful.search("qzv7731", user_id="u", explain=True)["results"]
    assert hybrid[0]["memory"] == "order number qzv7731 shipped"
    assert hybrid[0]["explain"]["bm25"] is not None
    # Meaning decides the rest: the unrelated memories score low.
    assert all(hit["score"] < 0.3 for hit in hybrid[1:])


def test_threshold_keeps_the_hits_whose_shown_score_reaches_it(meaningful: Memory) -> None:
    meaningful.add_many([{"messages": text, "user_id": "u"} for text in FACTS])
    query = "Alice drinks green tea every morning"
    every = meaningful.search(query, user_id="u", top_k=10)["results"]
    assert every[0]["score"] > 0.99
    for cut in [0.0, every[1]["score"], every[0]["score"], 0.5, 1.0, 1.5, -3]:
        kept = meaningful.search(query, user_id="u", top_k=10, threshold=cut)["results"]
        assert kept == [hit for hit in every if hit["score"] >= cut], cut
    # Keyword mode: the threshold compares with the keyword score shown (no cosine needed).
    words = meaningful.search("alice peanuts", user_id="u", mode="bm25")["results"]
    cut = words[0]["score"]
    strict = meaningful.search("alice peanuts", user_id="u", mode="bm25", threshold=cut)
    assert strict["results"] == [hit for hit in words if hit["score"] >= cut]


def test_the_same_scores_over_the_library_rest_and_mcp(home: Path, local_embedder: Any) -> None:
    running, stop = launch_server(home, embedder=local_embedder)
    try:
        memory = running.memory
        memory.add_many([{"messages": text, "user_id": "alice"} for text in FACTS])
        query = "where does alice live?"
        library = memory.search(query, user_id="alice", top_k=5)["results"]
        assert library
        with running.http(running.admin_key) as http:
            rest = http.post(
                "/v1/memories/search/", json={"query": query, "user_id": "alice", "top_k": 5}
            )
            cut = library[1]["score"]
            strict = http.post(
                "/v1/memories/search/",
                json={"query": query, "user_id": "alice", "top_k": 5, "threshold": cut},
            )
        assert rest.status_code == 200 and strict.status_code == 200
        pairs = [(h["id"], h["score"]) for h in library]
        assert [(h["id"], h["score"]) for h in rest.json()["results"]] == pairs
        assert [h["id"] for h in strict.json()["results"]] == [i for i, s in pairs if s >= cut]

        async def through_mcp() -> Any:
            async with http_client(running, running.admin_key) as client:
                return await client.call_tool(
                    "search_memories", {"query": query, "user_id": "alice", "top_k": 5}
                )

        answer = anyio.run(through_mcp)
        assert not answer.is_error
        found = answer.structured_content["results"]
        assert [(h["id"], h["score"]) for h in found] == pairs
        assert f"(score {pairs[0][1]:.2f})" in answer.content[0].text
    finally:
        stop()


def test_adaptive_fusion_damps_flat_weak_keyword_evidence() -> None:
    """A name shared by every candidate gives a flat, weak BM25 list: z-score fusion stretches
    its small differences over the meaning; ``adaptive`` lets the meaning decide. A strong,
    clear keyword winner still counts in both."""
    vector = [("meaning", 0.66), ("name-a", 0.40), ("name-b", 0.35), ("name-c", 0.30)]
    flat = [("name-a", 1.10), ("name-b", 1.08), ("name-c", 1.05), ("meaning", 0.98)]
    weights = {"vector": 0.5, "bm25": 1.0}
    plain = fuse({"vector": vector, "bm25": flat}, method="zscore", weights=weights)
    adaptive = fuse({"vector": vector, "bm25": flat}, method="adaptive", weights=weights)
    assert plain[0].id == "name-a" and adaptive[0].id == "meaning"
    strong = [("rare-word", 30.0), ("name-a", 1.1), ("name-b", 1.0), ("meaning", 0.9)]
    rankings = {"vector": [*vector, ("rare-word", 0.45)], "bm25": strong}
    assert fuse(rankings, method="adaptive", weights=weights)[0].id == "rare-word"
    # One list alone: the order is the list's own.
    assert [h.id for h in fuse({"bm25": flat}, method="adaptive")] == [i for i, _ in flat]


def test_adaptive_fusion_is_a_setting_and_keeps_the_scores_calibrated(
    home: Path, local_embedder: Any
) -> None:
    with Memory(home, embedder=local_embedder, fusion="adaptive") as memory:
        memory.add_many([{"messages": text, "user_id": "u"} for text in FACTS])
        hits = memory.search("what is alice's morning beverage?", user_id="u", top_k=6)
    found = hits["results"]
    assert found[0]["memory"] == "Alice drinks green tea every morning"
    scores = _scores(found)
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
