"""The OpenAI Agents SDK session and memory tools, against the real openai-agents (offline).

The full agent run talks to memvault's scripted OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("agents.memory", reason="the openai-agents extra is not installed")

from agents import Agent, OpenAIChatCompletionsModel, RunConfig, Runner
from agents.memory import Session, SessionSettings
from agents.tool_context import ToolContext
from openai import AsyncOpenAI

from memvault import AsyncMemory, HashEmbedder, Memory
from memvault.errors import Forbidden, InvalidConfig, InvalidId, InvalidInput, MissingScope
from memvault.integrations.openai_agents import MemvaultSession, memory_tools
from memvault.testing import Reply, ScriptedChatServer

HOSTILE = "it's \"quoted\" ../../etc/passwd ü 日本語 🧠 ' OR 1=1 --"


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[Memory]:
    with Memory(tmp_path / "home", embedder=HashEmbedder()) as m:
        yield m


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_session_keeps_items_in_order_and_pops_the_latest(memory: Memory) -> None:
    session = MemvaultSession("chat-1", memory, user_id="alice")
    assert isinstance(session, Session)
    call = {
        "type": "function_call",
        "call_id": "c1",
        "name": "lookup",
        "arguments": json.dumps({"q": HOSTILE}),
    }
    output = {"type": "function_call_output", "call_id": "c1", "output": HOSTILE}
    items: list[Any] = [user("yes"), call, output, user("yes"), user(HOSTILE)]

    async def run() -> None:
        assert await session.get_items() == []
        assert await session.pop_item() is None
        await session.add_items(items[:3])
        await session.add_items(items[3:])
        await session.add_items([])
        assert await session.get_items() == items  # "yes" twice: two items, never merged
        assert await session.get_items(limit=2) == items[-2:]
        assert await session.get_items(limit=0) == []
        assert await session.pop_item() == user(HOSTILE)
        assert await session.get_items() == items[:-1]
        await session.add_items([user("after the pop")])
        assert (await session.get_items())[-1] == user("after the pop")

    asyncio.run(run())
    # Each item is one memory of alice's scope, with a readable text that search matches.
    assert memory.count(user_id="alice") == 5
    hits = memory.search("after the pop", user_id="alice", top_k=1)["results"]
    assert hits[0]["memory"].startswith("user: after the pop")


def test_sessions_of_one_scope_stay_apart_and_clear_alone(memory: Memory) -> None:
    first = MemvaultSession("chat-1", memory, user_id="alice")
    second = MemvaultSession("chat-2", AsyncMemory.from_memory(memory), user_id="alice")
    bob = MemvaultSession("chat-1", memory, user_id="bob")

    async def run() -> None:
        await first.add_items([user("first session")])
        await second.add_items([user("second session")])
        await bob.add_items([user("bob's session")])
        assert await first.get_items() == [user("first session")]
        assert await second.get_items() == [user("second session")]
        assert await bob.get_items() == [user("bob's session")]  # same session id, other user
        await first.clear_session()
        assert await first.get_items() == []
        assert await second.get_items() == [user("second session")]
        assert await bob.get_items() == [user("bob's session")]

    asyncio.run(run())


def test_a_session_named_star_is_a_session_not_a_wildcard(memory: Memory) -> None:
    real = MemvaultSession("chat-1", memory, user_id="alice")
    star = MemvaultSession("*", memory, user_id="alice")

    async def run() -> None:
        await real.add_items([user("the real session")])
        assert await star.get_items() == []
        await star.add_items([user("the star session")])
        assert await star.get_items() == [user("the star session")]
        await star.clear_session()
        assert await real.get_items() == [user("the real session")]

    asyncio.run(run())


def test_session_settings_limit_applies_when_no_limit_is_given(memory: Memory) -> None:
    session = MemvaultSession(
        "chat-1", memory, user_id="alice", session_settings=SessionSettings(limit=2)
    )

    async def run() -> None:
        await session.add_items([user(f"turn {n}") for n in range(5)])
        assert await session.get_items() == [user("turn 3"), user("turn 4")]
        assert len(await session.get_items(limit=4)) == 4

    asyncio.run(run())


def test_session_scope_rule_narrows_and_never_widens(memory: Memory) -> None:
    narrowed = MemvaultSession("chat-1", memory, user_id="alice", scope=lambda sid: {"run_id": sid})
    asyncio.run(narrowed.add_items([user("in its own run")]))
    assert memory.count(user_id="alice", run_id="chat-1") == 1
    # The same session id bound to alice alone sees the narrower items; never the reverse.
    wider = MemvaultSession("chat-1", memory, user_id="alice")
    asyncio.run(wider.add_items([user("in alice's scope")]))
    assert asyncio.run(narrowed.get_items()) == [user("in its own run")]
    assert asyncio.run(wider.get_items()) == [user("in its own run"), user("in alice's scope")]
    with pytest.raises(Forbidden):
        MemvaultSession("bob", memory, user_id="alice", scope=lambda sid: {"user_id": sid})
    with pytest.raises(MissingScope):
        MemvaultSession("chat-1", memory, scope=lambda sid: {"user_id": {"x": "y"}[sid]})
    with pytest.raises(InvalidConfig):
        MemvaultSession("chat-1", memory)
    with pytest.raises(InvalidId):
        MemvaultSession("two words", memory, user_id="alice")
    session = MemvaultSession("chat-2", memory, user_id="alice")
    with pytest.raises(InvalidInput):
        asyncio.run(session.add_items([{"role": "user", "content": object()}]))  # type: ignore[list-item]
    assert asyncio.run(session.get_items()) == []


def invoke(tool: Any, **arguments: Any) -> Any:
    args = json.dumps(arguments)
    context = ToolContext(context=None, tool_name=tool.name, tool_call_id="c1", tool_arguments=args)
    return asyncio.run(tool.on_invoke_tool(context, args))


def test_memory_tools_are_bound_to_one_scope(memory: Memory) -> None:
    memory.add("Bob prefers espresso", user_id="bob")
    search, add = memory_tools(memory, user_id="alice")
    assert (search.name, add.name) == ("search_memory", "add_memory")
    # The model chooses only what to search or remember, never whose memories.
    assert set(search.params_json_schema["properties"]) == {"query"}
    assert set(add.params_json_schema["properties"]) == {"text"}
    assert invoke(search, query="espresso") == "No memories found."
    assert invoke(add, text="Alice prefers green tea " + HOSTILE) == "Remembered."
    assert invoke(add, text="Alice prefers green tea " + HOSTILE) == "Already remembered."
    assert invoke(search, query="green tea") == "- Alice prefers green tea " + HOSTILE
    assert memory.count(user_id="alice") == 1
    assert memory.count(user_id="bob") == 1
    with pytest.raises(MissingScope):
        memory_tools(memory)


def test_an_agent_run_uses_the_session_and_the_tools(memory: Memory) -> None:
    memory.add("Alice prefers green tea", user_id="alice")
    call = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "scripted",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": "search_memory",
                                "arguments": json.dumps({"query": "what does alice drink"}),
                            },
                        }
                    ],
                },
            }
        ],
    }
    # The sessions live in their own namespace: history never shows up in memory searches.
    sessions = memory.namespaced("agent-sessions")
    session = MemvaultSession("chat-1", sessions, user_id="alice")
    with ScriptedChatServer([Reply(body=call), "You drink green tea.", "Still green tea."]) as llm:
        client = AsyncOpenAI(base_url=llm.base_url, api_key="test-key")
        agent = Agent(
            name="helper",
            instructions="Answer from memory.",
            model=OpenAIChatCompletionsModel(model="scripted", openai_client=client),
            tools=memory_tools(memory, user_id="alice"),
        )
        config = RunConfig(tracing_disabled=True)
        first = asyncio.run(
            Runner.run(agent, "What do I drink?", session=session, run_config=config)
        )
        second = asyncio.run(Runner.run(agent, "And now?", session=session, run_config=config))
        requests = llm.chat_requests
    assert first.final_output == "You drink green tea."
    assert second.final_output == "Still green tea."
    tool_answer = requests[1]["messages"][-1]
    assert tool_answer["role"] == "tool"
    assert tool_answer["content"] == "- Alice prefers green tea"
    # The second run's request carries the first run's history, read back from memvault.
    history = [m.get("content") for m in requests[2]["messages"] if m["role"] == "user"]
    assert history == ["What do I drink?", "And now?"]
    items = asyncio.run(session.get_items())
    assert items[0] == user("What do I drink?")
    assert [item.get("type") for item in items[1:3]] == ["function_call", "function_call_output"]
    assert sessions.count(user_id="alice") == len(items) == 6
    assert memory.count(user_id="alice") == 1
