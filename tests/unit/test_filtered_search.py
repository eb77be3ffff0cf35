"""A filtered search checks the filter on the best candidates first and falls back to the whole
scope when too few pass; the answers are the same either way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import memvault.retrieval.hybrid as hybrid
from memvault import HashEmbedder, Memory

FILTERS: list[dict[str, Any]] = [
    {"kind": "common"},  # most rows pass: answered from the pools
    {"kind": "rare"},  # 1 row in 100: falls back to the whole scope
    {"AND": [{"kind": {"ne": "rare"}}, {"memory_type": "semantic"}]},
    {"rank": {"gte": 1490}},
]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Memory:
    home: Path = tmp_path_factory.mktemp("filtered")
    memory = Memory(home, embedder=HashEmbedder())
    words = ["garden", "piano", "sailing", "coffee", "berlin", "budget", "chess", "yoga"]
    memory.add_many(
        [
            {
                "messages": f"{words[i % 8]} {words[(i * 3) % 8]} note number {i}",
                "user_id": "filtered-user",
                "metadata": {"kind": "rare" if i % 100 == 0 else "common", "rank": i},
            }
            for i in range(1500)
        ]
    )
    yield memory
    memory.close()


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("mode", ["hybrid", "vector", "bm25"])
def test_pool_and_whole_scope_give_the_same_answer(
    stored: Memory, filters: dict[str, Any], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def answer() -> list[tuple[str, float]]:
        hits = stored.search(
            "piano and coffee in berlin",
            user_id="filtered-user",
            filters=filters,
            top_k=10,
            mode=mode,  # type: ignore[arg-type]
        )["results"]
        return [(h["id"], round(h["score"], 6)) for h in hits]

    pooled = answer()
    monkeypatch.setattr(hybrid, "FILTER_POOL", 10**6)  # the pool is the whole scope
    whole = answer()
    monkeypatch.setattr(hybrid, "FILTER_POOL", 120)  # most filters now fall back
    fallback = answer()
    assert pooled == whole == fallback
    assert pooled, "every filter admits some rows"
    for memory_id, _ in pooled:
        item = stored.get(memory_id)
        assert item is not None
        if filters == {"kind": "rare"}:
            assert item["metadata"]["kind"] == "rare"
