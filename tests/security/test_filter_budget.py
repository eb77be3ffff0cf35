"""A filter's cost is the caller's choice (its conditions times the scope's rows): every filtered
read runs under a time budget, so one request cannot hold a core for seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from memvault import HashEmbedder, Memory
from memvault.errors import FilterTooExpensive
from memvault.filters import MAX_CONDITIONS

# The costliest filter the grammar allows: every condition tested on every row.
WIDE = {"OR": [{f"k{i}": i} for i in range(MAX_CONDITIONS - 1)]}
# Enough rows that WIDE takes well over the 50 ms budget now that a row's metadata is parsed
# once and the filter compiled once (400 rows made it a near thing: ~50 ms).
ROWS = 1500


@pytest.fixture
def crowded(home: Path) -> Memory:
    m = Memory(home, embedder=HashEmbedder(), max_filter_seconds=0.05)
    m.add_many(
        [{"messages": f"fact {i}", "user_id": "u", "metadata": {"k1": i}} for i in range(ROWS)]
    )
    return m


def test_an_expensive_filter_is_refused_with_its_own_code(crowded: Memory) -> None:
    with crowded:
        for call in (crowded.get_all, crowded.count):
            with pytest.raises(FilterTooExpensive) as refused:
                call(user_id="u", filters=WIDE)
            assert refused.value.code == "filter_too_expensive"
            assert refused.value.http_status == 422
        with pytest.raises(FilterTooExpensive):
            crowded.search("fact", user_id="u", filters=WIDE)
        # The budget is per statement: the connection is usable at once, cheap filters answer
        # (one on a built-in column: a metadata filter over 1,500 rows is itself ~40 ms here).
        assert crowded.count(user_id="u", filters={"memory_type": "semantic"}) == ROWS
        assert len(crowded.get_all(user_id="u", top_k=ROWS)["results"]) == ROWS


def test_the_default_budget_lets_ordinary_filters_through(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        m.add_many(
            [{"messages": f"fact {i}", "user_id": "u", "metadata": {"k1": i}} for i in range(50)]
        )
        # Only {"k1": 1} of the thousand conditions holds for a row, for the row with k1 = 1.
        assert m.count(user_id="u", filters=WIDE) == 1
