"""The LlamaIndex memory block and retriever, against the real llama-index-core (offline)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core.memory", reason="the llamaindex extra is not installed")

from llama_index.core.llms import ChatMessage
from llama_index.core.memory import Memory as LlamaMemory
from llama_index.core.schema import NodeWithScore, TextNode
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from memvault import AsyncMemory, HashEmbedder, Memory
from memvault.errors import Forbidden, InvalidConfig, MissingScope
from memvault.integrations.llamaindex import MemvaultMemoryBlock, MemvaultRetriever
from memvault.testing import ScriptedChatServer

HOSTILE = "it's \"quoted\" ../../etc/passwd ü 日本語 🧠 ' OR 1=1 --"


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[Memory]:
    with Memory(tmp_path / "home", embedder=HashEmbedder()) as m:
        yield m


def chat_memory(block: MemvaultMemoryBlock, session_id: str, engine: AsyncEngine) -> LlamaMemory:
    # A small short-term window, so that older turns are flushed to the block.
    return LlamaMemory.from_defaults(
        session_id=session_id,
        token_limit=40,
        chat_history_token_ratio=0.5,
        token_flush_size=10,
        memory_blocks=[block],
        async_engine=engine,
    )


def test_flushed_user_messages_become_memories_and_come_back_in_the_prompt(
    memory: Memory,
) -> None:
    block = MemvaultMemoryBlock(memory=memory, user_id="alice")

    async def run() -> list[ChatMessage]:
        # LlamaIndex's short-term store: in memory, closed at the end.
        engine = create_async_engine("sqlite+aiosqlite:///:memory:")
        try:
            return await converse(chat_memory(block, "s1", engine))
        finally:
            await engine.dispose()

    async def converse(chat: LlamaMemory) -> list[ChatMessage]:
        await chat.aput(ChatMessage(role="user", content="I drink green tea every morning"))
        await chat.aput(ChatMessage(role="assistant", content="Noted, green tea it is"))
        for turn in range(4):
            await chat.aput(ChatMessage(role="user", content=f"Small talk number {turn}"))
            await chat.aput(ChatMessage(role="assistant", content=f"Reply {turn}"))
        return await chat.aget(input="what do I drink in the morning?")

    messages = asyncio.run(run())
    stored = {m["memory"]: m for m in memory.get_all(user_id="alice")["results"]}
    # Only the user's messages that left the short-term window, in alice's scope.
    assert "I drink green tea every morning" in stored
    assert stored["I drink green tea every morning"]["metadata"] == {"role": "user"}
    assert not any(text.startswith(("Noted", "Reply")) for text in stored)
    # The block's content is in the system message LlamaIndex builds.
    system = messages[0]
    assert system.role.value == "system"
    assert "<memvault>" in (system.content or "")
    assert "- I drink green tea every morning" in (system.content or "")


def test_block_get_and_put_directly(memory: Memory) -> None:
    memory.add("Bob prefers espresso", user_id="bob")
    block = MemvaultMemoryBlock(memory=memory, user_id="alice", roles=("user", "assistant"))

    async def run() -> tuple[str, str]:
        empty = await block.aget([ChatMessage(role="user", content="espresso")])
        await block.aput(
            [
                ChatMessage(role="user", content="My cat is called " + HOSTILE),
                ChatMessage(role="assistant", content="What a name"),
                ChatMessage(role="system", content="never stored"),
                ChatMessage(role="user", content="   "),
            ],
            session_id="s1",
        )
        found = await block.aget([ChatMessage(role="user", content="what is my cat called?")])
        return empty, found

    empty, found = asyncio.run(run())
    assert empty == ""  # Bob's memory is never seen from alice's block
    assert found.splitlines()[0] == "- My cat is called " + HOSTILE
    texts = {m["memory"] for m in memory.get_all(user_id="alice")["results"]}
    assert texts == {"My cat is called " + HOSTILE, "What a name"}
    assert asyncio.run(block.aget([])) == ""


def test_session_rule_narrows_and_never_widens(memory: Memory) -> None:
    block = MemvaultMemoryBlock(
        memory=AsyncMemory.from_memory(memory),
        user_id="alice",
        scope=lambda session: {"run_id": session},
    )

    async def put(session: str, text: str) -> None:
        await block.aput([ChatMessage(role="user", content=text)], session_id=session)

    asyncio.run(put("s1", "Alice's first session"))
    asyncio.run(put("s2", "Alice's second session"))
    assert [m["memory"] for m in memory.get_all(user_id="alice", run_id="s1")["results"]] == [
        "Alice's first session"
    ]
    one = asyncio.run(block.aget([ChatMessage(role="user", content="session")], session_id="s1"))
    assert one == "- Alice's first session"

    widening = MemvaultMemoryBlock(
        memory=memory, user_id="alice", scope=lambda session: {"user_id": session}
    )
    with pytest.raises(Forbidden):
        asyncio.run(widening.aget([ChatMessage(role="user", content="x")], session_id="bob"))
    with pytest.raises(Forbidden):
        asyncio.run(
            widening.aput([ChatMessage(role="user", content="x")], session_id="bob"),
        )
    assert memory.count(user_id="bob") == 0

    only_rule = MemvaultMemoryBlock(memory=memory, scope=lambda session: {"user_id": session})
    with pytest.raises(MissingScope):  # no session id, nothing bound: no scope to guess
        asyncio.run(only_rule.aget([ChatMessage(role="user", content="x")]))
    with pytest.raises(InvalidConfig):
        MemvaultMemoryBlock(memory=memory)
    with pytest.raises(InvalidConfig):
        MemvaultMemoryBlock(memory="not a memory", user_id="alice")


def test_retriever_returns_nodes_of_its_scope_only(memory: Memory) -> None:
    memory.add("Alice prefers green tea", user_id="alice", metadata={"source": "chat"})
    memory.add("Alice walks her dog at seven", user_id="alice")
    memory.add("Bob prefers green tea too", user_id="bob")
    retriever = MemvaultRetriever(memory, user_id="alice", top_k=5)
    nodes = retriever.retrieve("green tea")
    assert nodes and all(isinstance(node, NodeWithScore) for node in nodes)
    assert {node.node.get_content() for node in nodes} <= {
        "Alice prefers green tea",
        "Alice walks her dog at seven",
    }
    first = nodes[0]
    assert isinstance(first.node, TextNode)
    assert first.node.get_content() == "Alice prefers green tea"
    assert first.node.metadata["source"] == "chat"
    assert first.node.metadata["user_id"] == "alice"
    assert first.node.node_id == first.node.metadata["id"]
    assert isinstance(first.score, float)
    asynced = MemvaultRetriever(AsyncMemory.from_memory(memory), user_id="bob")
    bob = asyncio.run(asynced.aretrieve("green tea"))
    assert [node.node.get_content() for node in bob] == ["Bob prefers green tea too"]
    with pytest.raises(MissingScope):
        MemvaultRetriever(memory)


def test_infer_hands_the_turns_to_memvaults_llm(tmp_path: Path) -> None:
    answer = json.dumps({"facts": [{"text": "Alice loves green tea", "type": "semantic"}]})
    with (
        ScriptedChatServer([answer]) as llm,
        Memory(
            tmp_path / "home",
            embedder=HashEmbedder(),
            llm_base_url=llm.base_url,
            llm_model="scripted",
            llm_timeout_seconds=5,
        ) as memory,
    ):
        block = MemvaultMemoryBlock(memory=memory, user_id="alice", infer=True)
        turns = [
            ChatMessage(role="user", content="I love green tea"),
            ChatMessage(role="assistant", content="Lovely"),
        ]
        asyncio.run(block.aput(turns, session_id="s1"))
        conversation = llm.chat_requests[0]["messages"][-1]["content"]
        stored = memory.get_all(user_id="alice")["results"]
    assert "I love green tea" in conversation
    assert "Lovely" not in conversation  # only the roles the block keeps
    assert [m["memory"] for m in stored] == ["Alice loves green tea"]
