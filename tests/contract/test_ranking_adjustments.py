"""Recency decay on each backend: the stored times come back as the ages the ranking uses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from memvault import HashEmbedder, Memory

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def test_decay_ranks_by_the_stored_times(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(
        embedder=HashEmbedder(4096),
        context_window=0,
        recency_half_life_days={"episodic": 30},
        ranking_clock=lambda: NOW,
    )
    episodic = {"user_id": "u", "memory_type": "episodic"}
    added = mem.add_many(
        [
            # Created long ago but changed a day ago: its age counts from the change.
            {
                "messages": "alpha beta gamma",
                "created_at": "2024-01-01T00:00:00+00:00",
                "updated_at": "2025-05-31T00:00:00+00:00",
                **episodic,
            },
            {"messages": "alpha beta delta", "created_at": "2025-05-02T00:00:00Z", **episodic},
        ]
    )
    changed, older = (item["id"] for item in added["results"])
    hits = mem.search("alpha beta", user_id="u", explain=True)["results"]
    assert [hit["id"] for hit in hits] == [changed, older]
    assert hits[0]["explain"]["decay"] == pytest.approx(0.5 ** (1 / 30))
    assert hits[1]["explain"]["decay"] == pytest.approx(0.5)  # 30 days old
