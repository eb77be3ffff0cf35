"""An inferred memory's entities: the LLM's ``entities`` of each fact join those found by rules;
an answer without them, or with junk in their place, still stores the fact."""

from __future__ import annotations

import json

from memvault import Memory
from memvault.llm.prompts import EXTRACTION_FORMAT
from memvault.testing import ScriptedChatServer


def answer(*facts: dict[str, object]) -> str:
    return json.dumps({"facts": list(facts)})


def test_the_llms_entities_are_stored_with_the_rules(mem: Memory, chat: ScriptedChatServer) -> None:
    chat.push(
        answer(
            {
                "text": "alice started learning the cello",
                "type": "episodic",
                "entities": ["Alice", "cello", "Alice"],
            },
            {"text": "alice met Bob at the Lisbon opera", "entities": ["Bob", "the opera"]},
        )
    )
    out = mem.add("I started the cello; met Bob at the opera", user_id="alice", infer=True)
    first, second = (r["id"] for r in out["results"])
    names = {e["name"]: e["memories"] for e in mem.entities(user_id="alice")["results"]}
    # "cello" and "opera" come from the model only (lower case: no rule finds them).
    assert names == {"Alice": 1, "cello": 1, "Bob": 1, "Lisbon": 1, "the opera": 1}
    assert mem.related(first)["results"] == []
    assert mem.related(second)["results"] == []
    system = chat.chat_requests[0]["messages"][0]["content"]
    assert '"entities"' in system and EXTRACTION_FORMAT.split(".")[0] in system


def test_facts_without_entities_or_with_junk_still_store(
    mem: Memory, chat: ScriptedChatServer
) -> None:
    chat.push(
        answer(
            {"text": "Alice likes tea"},
            {"text": "Alice likes jazz", "entities": "Alice"},  # not a list: dropped
            {"text": "Alice likes chess", "entities": [1, None, {"x": 1}, "\ud800", "x" * 5000]},
        )
    )
    out = mem.add("tea, jazz, chess", user_id="alice", infer=True)["results"]
    assert [r["event"] for r in out] == ["ADD", "ADD", "ADD"]
    names = {e["name"] for e in mem.entities(user_id="alice")["results"]}
    assert "Alice" in names
    assert all(len(name) <= 80 for name in names)
    assert len(mem.related(out[0]["id"])["results"]) == 2
