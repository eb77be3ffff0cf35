"""add(infer=True) end to end against the scripted chat server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memvault import HashEmbedder, Memory
from memvault.errors import InvalidConfig
from memvault.llm.prompts import PROMPT_VERSION
from memvault.testing import Reply, ScriptedChatServer
from tests.llm.conftest import decisions, facts


def sent(chat: ScriptedChatServer, index: int = -1) -> dict[str, object]:
    """The JSON data of the user message of a recorded chat request."""
    data = json.loads(chat.chat_requests[index]["messages"][1]["content"])
    assert isinstance(data, dict)
    return data


def seed(mem: Memory, chat: ScriptedChatServer, *texts: str, user: str = "alice") -> list[str]:
    chat.push(facts(*texts))
    return [r["id"] for r in mem.add("seed", user_id=user, infer=True)["results"]]


def test_happy_path_extracts_typed_grounded_facts_with_provenance(
    mem: Memory, chat: ScriptedChatServer
) -> None:
    chat.push(facts(("Alice visited Paris on 2026-11-23", "episodic"), "Alice likes green tea"))
    out = mem.add(
        [
            {
                "role": "user",
                "content": "I was in Paris last week. I love green tea.",
                "name": "alice",
            },
            {"role": "assistant", "content": "Nice!"},
        ],
        user_id="alice",
        metadata={"source": "chat"},
        infer=True,
    )["results"]
    assert [(r["event"], r["memory"], r["inferred"]) for r in out] == [
        ("ADD", "Alice visited Paris on 2026-11-23", True),
        ("ADD", "Alice likes green tea", True),
    ]
    request = sent(chat, 0)
    assert request["observed_at"]
    assert request["conversation"][0] == {  # type: ignore[index]
        "speaker": "user (alice)",
        "text": "I was in Paris last week. I love green tea.",
    }
    assert len(chat.chat_requests) == 1  # nothing similar stored yet: no reconciliation call
    stored = mem.get(out[0]["id"])
    assert stored is not None
    assert stored["memory_type"] == "episodic"
    assert mem.get(out[1]["id"])["memory_type"] == "semantic"  # type: ignore[index]
    meta = stored["metadata"]
    assert meta["source"] == "chat" and meta["inferred"] is True
    provenance = meta["provenance"]
    assert provenance["model"] == "scripted"
    assert provenance["prompt_version"] == PROMPT_VERSION
    assert len(provenance["sources"]) == 2 and all(len(h) == 64 for h in provenance["sources"])
    assert provenance["job_id"] is None


def test_update_keeps_old_text_in_history(mem: Memory, chat: ScriptedChatServer) -> None:
    [tea] = seed(mem, chat, "Alice likes green tea")
    chat.push(
        facts("Alice now prefers black tea"),
        decisions(
            {"fact": "f1", "event": "UPDATE", "memory": "m1", "text": "Alice prefers black tea"}
        ),
    )
    [result] = mem.add("I switched to black tea", user_id="alice", infer=True)["results"]
    assert result["event"] == "UPDATE" and result["id"] == tea
    assert result["previous_memory"] == "Alice likes green tea"
    events = mem.history(tea)
    assert [e["event"] for e in events] == ["ADD", "UPDATE"]
    assert events[1]["old_memory"] == "Alice likes green tea"
    assert events[1]["new_memory"] == "Alice prefers black tea"
    shown = sent(chat)["existing_memories"]
    assert shown == [{"id": "m1", "text": "Alice likes green tea"}]
    assert tea not in json.dumps(chat.chat_requests[-1])  # real ids never reach the model


def test_delete_retires_contradicted_memory(mem: Memory, chat: ScriptedChatServer) -> None:
    [dog] = seed(mem, chat, "Alice has a dog named Rex")
    chat.push(
        facts("Alice no longer has a dog"),
        decisions({"fact": "f1", "event": "DELETE", "memory": "m1"}),
    )
    [result] = mem.add("Rex died, I have no dog", user_id="alice", infer=True)["results"]
    assert result["event"] == "DELETE" and result["id"] == dog
    assert mem.get(dog) is None
    assert [e["event"] for e in mem.history(dog)] == ["ADD", "DELETE"]


def test_none_changes_nothing(mem: Memory, chat: ScriptedChatServer) -> None:
    [tea] = seed(mem, chat, "Alice likes green tea")
    chat.push(
        facts("Alice enjoys green tea"), decisions({"fact": "f1", "event": "NONE", "memory": "m1"})
    )
    [result] = mem.add("green tea is great", user_id="alice", infer=True)["results"]
    assert result["event"] == "NONE" and result["id"] == tea
    assert mem.count(user_id="alice") == 1
    assert [e["event"] for e in mem.history(tea)] == ["ADD"]


def test_add_decision_and_missing_decision_add(mem: Memory, chat: ScriptedChatServer) -> None:
    seed(mem, chat, "Alice likes green tea")
    chat.push(
        facts("Alice likes green apples", "Alice likes green cars"),
        decisions({"fact": "f1", "event": "ADD"}),
    )
    out = mem.add("green things", user_id="alice", infer=True)["results"]
    assert [r["event"] for r in out] == ["ADD", "ADD"]
    assert mem.count(user_id="alice") == 3


def test_invented_alias_is_refused(mem: Memory, chat: ScriptedChatServer) -> None:
    [tea] = seed(mem, chat, "Alice likes green tea")
    chat.push(
        facts("Alice likes green tea a lot"),
        decisions({"fact": "f1", "event": "DELETE", "memory": "m7"}),
    )
    [result] = mem.add("tea tea", user_id="alice", infer=True)["results"]
    assert result["event"] == "ADD" and result["memory"] == "Alice likes green tea a lot"
    assert result["refused"] == {"event": "DELETE", "memory": "m7"}
    assert mem.get(tea) is not None


def test_real_id_as_alias_is_refused(mem: Memory, chat: ScriptedChatServer) -> None:
    [tea] = seed(mem, chat, "Alice likes green tea")
    chat.push(facts("Alice likes tea"), decisions({"fact": "f1", "event": "DELETE", "memory": tea}))
    [result] = mem.add("tea", user_id="alice", infer=True)["results"]
    assert result["event"] == "ADD" and "refused" in result
    assert mem.get(tea) is not None


def test_only_same_scope_memories_are_shown(mem: Memory, chat: ScriptedChatServer) -> None:
    seed(mem, chat, "Bob likes green tea with honey", user="bob")
    mem.add("Bob's green tea secret recipe", user_id="bob")  # a plain add of another user
    seed(mem, chat, "Alice likes coffee")
    chat.push(facts("Alice likes green tea with honey"), decisions({"fact": "f1", "event": "ADD"}))
    mem.add("I like green tea with honey", user_id="alice", infer=True)
    body = json.dumps(chat.chat_requests[-1])
    assert "Bob" not in body and "honey" in body and "Alice likes coffee" in body


def test_an_agent_scope_never_shows_or_changes_a_users_memory_of_that_agent(
    mem: Memory, chat: ScriptedChatServer
) -> None:
    """A search by agent_id alone also finds users' memories of that agent: reconciliation
    must not show them to the model, nor let an answer rewrite them."""
    alice = mem.add("likes tea very much", user_id="alice", agent_id="shared")["results"][0]
    mem.add("the shared agent likes tea", agent_id="shared")
    chat.push(
        facts("likes tea very much"),
        decisions({"fact": "f1", "event": "UPDATE", "memory": "m1", "text": "HIJACKED"}),
    )
    mem.add("likes tea very much", agent_id="shared", infer=True)
    assert "the shared agent likes tea" in json.dumps(chat.chat_requests[-1])  # its own: shown
    assert mem.get(alice["id"])["memory"] == "likes tea very much"


def test_bad_output_is_repaired_once(mem: Memory, chat: ScriptedChatServer) -> None:
    chat.push("I cannot answer in JSON, sorry.", facts("Alice likes tea"))
    [result] = mem.add("I like tea", user_id="alice", infer=True)["results"]
    assert result["event"] == "ADD" and result["inferred"] is True
    repair = chat.chat_requests[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": "I cannot answer in JSON, sorry."}
    assert "valid JSON" in repair[-1]["content"]


def test_unrecoverable_output_stores_raw_messages(mem: Memory, chat: ScriptedChatServer) -> None:
    chat.push("nope", "still nope")
    [result] = mem.add("I like tea", user_id="alice", infer=True)["results"]
    assert result["event"] == "ADD" and result["inferred"] is False
    assert result["error"]["code"] == "llm_bad_output"
    stored = mem.get(result["id"])
    assert stored is not None and stored["memory"] == "I like tea"
    assert stored["metadata"]["inferred"] is False


def test_bad_reconciliation_falls_back_to_raw_too(mem: Memory, chat: ScriptedChatServer) -> None:
    seed(mem, chat, "Alice likes green tea")
    chat.push(facts("Alice likes black tea"), "garbage", "more garbage")
    [result] = mem.add("I like black tea", user_id="alice", infer=True)["results"]
    assert result["inferred"] is False and result["memory"] == "I like black tea"


@pytest.mark.parametrize(
    "failure",
    [Reply(status=500), Reply(status=503), Reply(status=429, headers={"Retry-After": "0"})],
    ids=["500", "503", "429"],
)
def test_outage_retries_then_stores_raw(
    mem: Memory, chat: ScriptedChatServer, failure: Reply
) -> None:
    chat.push(failure, failure, failure)
    [result] = mem.add("I like tea", user_id="alice", infer=True)["results"]
    assert len(chat.chat_requests) == 3  # llm_max_attempts
    assert result["inferred"] is False and result["error"]["code"] == "llm_unavailable"
    assert mem.get(result["id"])["memory"] == "I like tea"  # type: ignore[index]


def test_retry_then_success(mem: Memory, chat: ScriptedChatServer) -> None:
    chat.push(Reply(status=502), Reply(status=429, headers={"Retry-After": "0"}), facts("A fact"))
    [result] = mem.add("x", user_id="alice", infer=True)["results"]
    assert result["inferred"] is True and result["memory"] == "A fact"


def test_timeouts_then_raw(home: Path, chat: ScriptedChatServer) -> None:
    chat.push(*[Reply(facts("late"), delay=1.0)] * 2)
    with Memory(
        home,
        embedder=HashEmbedder(),
        llm_base_url=chat.base_url,
        llm_model="scripted",
        llm_timeout_seconds=0.2,
        llm_max_attempts=2,
        llm_backoff_seconds=0,
    ) as m:
        [result] = m.add("I like tea", user_id="alice", infer=True)["results"]
    assert result["inferred"] is False and result["error"]["code"] == "llm_unavailable"


def test_unreachable_llm_never_loses_messages(home: Path) -> None:
    with ScriptedChatServer() as server:
        url = server.base_url
    with Memory(
        home, embedder=HashEmbedder(), llm_base_url=url, llm_model="m", llm_backoff_seconds=0
    ) as m:
        out = m.add(
            [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
            user_id="alice",
            infer=True,
        )["results"]
        assert [r["memory"] for r in out] == ["one", "two"]
        assert m.count(user_id="alice", filters={"inferred": False}) == 2


def test_provenance_job_id_and_observed_at(mem: Memory, chat: ScriptedChatServer) -> None:
    chat.push(facts("Alice moved to Lyon on 2024-02-26"))
    out = mem.process_inference(
        {
            "messages": [{"role": "user", "content": "I moved to Lyon yesterday"}],
            "user_id": "alice",
            "actor_id": "agent-7",
            "observed_at": "2024-02-27T10:00:00Z",
            "job_id": "job-123",
            "infer": True,
        }
    )
    [result] = out["results"]
    assert sent(chat, 0)["observed_at"].startswith("2024-02-27")  # type: ignore[union-attr]
    provenance = mem.get(result["id"])["metadata"]["provenance"]  # type: ignore[index]
    assert provenance["job_id"] == "job-123" and provenance["actor_id"] == "agent-7"
    assert provenance["observed_at"].startswith("2024-02-27")


def test_provenance_is_encrypted_at_rest(home: Path, mem: Memory, chat: ScriptedChatServer) -> None:
    chat.push(facts("Alice likes tea"))
    job = {"messages": "I like tea", "user_id": "alice", "job_id": "job-zq81x"}
    [result] = mem.process_inference(job)["results"]
    provenance = mem.get(result["id"])["metadata"]["provenance"]  # type: ignore[index]
    assert mem.history(result["id"])[0]["provenance"] == provenance
    mem.close()
    raw = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    for needle in (provenance["sources"][0], PROMPT_VERSION, "job-zq81x", "Alice likes tea"):
        assert needle.encode() not in raw, needle


def test_process_inference_validates_like_add(mem: Memory) -> None:
    from memvault.errors import InvalidInput, MissingScope

    with pytest.raises(MissingScope):
        mem.process_inference({"messages": "x"})
    with pytest.raises(InvalidInput, match="unknown keys"):
        mem.process_inference({"messages": "x", "user_id": "a", "queue": 1})


def test_no_llm_configured_names_the_settings(memory: Memory) -> None:
    with pytest.raises(InvalidConfig, match="MEMVAULT_LLM_BASE_URL") as caught:
        memory.add("I like tea", user_id="alice", infer=True)
    assert "MEMVAULT_LLM_MODEL" in caught.value.message
    with pytest.raises(InvalidConfig):
        memory.process_inference({"messages": "x", "user_id": "alice"})
    assert memory.count(user_id="alice") == 0


def test_add_many_mixes_plain_and_inferred_in_order(mem: Memory, chat: ScriptedChatServer) -> None:
    chat.push(facts("Alice likes tea"), decisions({"fact": "f1", "event": "ADD"}))
    out = mem.add_many(
        [
            {"messages": "plain one", "user_id": "alice"},
            {"messages": "I like tea", "user_id": "alice", "infer": True},
            {"messages": "plain two", "user_id": "alice"},
        ]
    )["results"]
    assert [r["memory"] for r in out] == ["plain one", "Alice likes tea", "plain two"]


def test_custom_llm_object(home: Path) -> None:
    class Canned:
        model_id = "canned"

        def complete(self, messages: object, *, schema: object) -> str:
            return facts("Canned fact")

    with Memory(home, embedder=HashEmbedder(), llm=Canned()) as m:
        [result] = m.add("anything", user_id="u", infer=True)["results"]
        assert result["memory"] == "Canned fact"


def test_history_shows_provenance_of_each_inferred_change(
    mem: Memory, chat: ScriptedChatServer
) -> None:
    chat.push(facts("Alice has a cat"))
    [added] = mem.process_inference(
        {"messages": "I have a cat", "user_id": "alice", "job_id": "j1"}
    )["results"]
    chat.push(
        facts("Alice has two cats"),
        decisions({"fact": "f1", "event": "UPDATE", "memory": "m1", "text": "Alice has two cats"}),
    )
    mem.process_inference({"messages": "I got a second cat", "user_id": "alice", "job_id": "j2"})
    chat.push(
        facts("Alice has no cats"), decisions({"fact": "f1", "event": "DELETE", "memory": "m1"})
    )
    mem.process_inference({"messages": "My cats moved out", "user_id": "alice", "job_id": "j3"})
    events = mem.history(added["id"])
    assert [(e["event"], e["provenance"]["job_id"]) for e in events] == [
        ("ADD", "j1"),
        ("UPDATE", "j2"),
        ("DELETE", "j3"),
    ]
    assert all(e["provenance"]["prompt_version"] == PROMPT_VERSION for e in events)
    assert "provenance" not in mem.history(mem.add("plain", user_id="alice")["results"][0]["id"])[0]


def test_provenance_survives_key_rotation(mem: Memory, chat: ScriptedChatServer) -> None:
    chat.push(facts("Alice likes tea"))
    [added] = mem.process_inference({"messages": "tea", "user_id": "alice", "job_id": "j9"})[
        "results"
    ]
    mem.rotate_user_key("alice")
    assert mem.history(added["id"])[0]["provenance"]["job_id"] == "j9"
    assert mem.get(added["id"])["metadata"]["provenance"]["job_id"] == "j9"  # type: ignore[index]


def test_raw_fallback_keeps_provenance(mem: Memory, chat: ScriptedChatServer) -> None:
    chat.push("x", "y")
    [result] = mem.process_inference({"messages": "tea", "user_id": "alice", "job_id": "j5"})[
        "results"
    ]
    assert result["inferred"] is False
    assert mem.history(result["id"])[0]["provenance"]["job_id"] == "j5"


def test_unstorable_facts_are_dropped(mem: Memory, chat: ScriptedChatServer) -> None:
    chat.push(
        json.dumps(
            {
                "facts": [
                    {"text": "bad \ud800 surrogate"},
                    {"text": "nul \u0000 inside"},
                    {"text": "x" * 40_000},
                    {"text": "   "},
                    {"text": "Alice likes tea"},
                    {"text": "Alice likes tea"},
                ]
            }
        )
    )
    out = mem.add("tea", user_id="alice", infer=True)["results"]
    assert [r["memory"] for r in out] == ["Alice likes tea"]


def test_reconciliation_does_not_count_as_reads(mem: Memory, chat: ScriptedChatServer) -> None:
    [tea] = seed(mem, chat, "Alice likes green tea")
    chat.push(facts("Alice likes tea"), decisions({"fact": "f1", "event": "ADD"}))
    mem.add("tea", user_id="alice", infer=True)
    mem.close()
    with Memory(mem.home, embedder=HashEmbedder()) as again:
        assert again.get(tea)["access_count"] == 0  # type: ignore[index]


def test_memory_deleted_during_reconciliation_loses_nothing(home: Path) -> None:
    class Racing:
        """Answers extraction, then deletes the memory it is about to update (another writer)."""

        model_id = "racing"
        memory: Memory
        target: str

        def complete(self, messages: list[dict[str, str]], *, schema: object) -> str:
            if "existing_memories" not in messages[-1]["content"]:
                return facts("Alice prefers black tea")
            self.memory.delete(self.target)
            update = {"fact": "f1", "event": "UPDATE", "memory": "m1", "text": "Alice: black tea"}
            return decisions(update, {"fact": "f2", "event": "ADD"})

    llm = Racing()
    with Memory(home, embedder=HashEmbedder(), llm=llm) as m:
        llm.memory = m
        llm.target = m.add("Alice likes green tea", user_id="alice")["results"][0]["id"]
        [result] = m.add("black tea now", user_id="alice", infer=True)["results"]
        assert result["event"] == "ADD" and result["replaced"] == "UPDATE"
        assert [r["memory"] for r in m.get_all(user_id="alice")["results"]] == [
            "Alice prefers black tea"
        ]
