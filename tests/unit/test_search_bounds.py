"""A search does bounded work whatever its query and scope (retrieval/hybrid.py)."""

from __future__ import annotations

import pytest

import memvault.retrieval.hybrid as hybrid
from memvault import Memory
from memvault.errors import InvalidInput


def test_bm25_uses_the_first_64_distinct_query_terms() -> None:
    text = " ".join(f"w{i}" for i in range(400)) + " w0 w1"
    terms = hybrid.query_terms(text)
    assert len(terms) == hybrid.MAX_QUERY_TERMS == 64
    assert terms == hybrid.query_terms(" ".join(f"w{i}" for i in range(64)))


def test_a_search_spanning_too_many_key_scopes_is_refused(
    memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory.add_many(
        [{"messages": f"note {i}", "user_id": f"user{i}", "agent_id": "bot"} for i in range(4)]
    )
    monkeypatch.setattr(hybrid, "MAX_SEARCH_SCOPES", 3)
    with pytest.raises(InvalidInput, match="at most 3"):
        memory.search("note", agent_id="bot")
    assert len(memory.search("note", agent_id="bot", user_id="user1")["results"]) == 1
    monkeypatch.setattr(hybrid, "MAX_SEARCH_SCOPES", 4)
    assert len(memory.search("note", agent_id="bot", mode="bm25")["results"]) == 4
