"""The MCP tools through the official ``mcp`` client: stdio (spawning ``memvault mcp``) and
streamable HTTP against a running server."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from mcp import Client
from tests.polling import wait_for_async
from tests.server.conftest import RunningServer

ALL_TOOLS = {
    "add_memory",
    "search_memories",
    "list_memories",
    "get_memory",
    "update_memory",
    "delete_memory",
    "memory_history",
    "related_memories",
    "job_status",
}
READ_TOOLS = {
    "search_memories",
    "list_memories",
    "get_memory",
    "memory_history",
    "related_memories",
    "job_status",
}


@asynccontextmanager
async def http_client(server: RunningServer, key: str | None) -> AsyncIterator[Client]:
    """The SDK leaves a client it was given open: close ours after the session."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with Client(
            streamable_http_client(f"{server.base_url}/mcp", http_client=http)
        ) as client:
            yield client


def stdio_client(home: Path, user: str = "alice") -> Client:
    env = {**os.environ, "MEMVAULT_HOME": str(home), "MEMVAULT_EMBEDDER": "hash"}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "memvault", "mcp", "--user", user], env=env
    )
    return Client(params)


async def exercise_every_tool(client: Client) -> dict[str, Any]:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == ALL_TOOLS
    for tool in tools.values():
        assert tool.description and tool.input_schema["type"] == "object"
    added = await client.call_tool(
        "add_memory", {"text": "Alice is allergic to peanuts", "metadata": {"topic": "health"}}
    )
    assert not added.is_error
    memory_id = added.structured_content["results"][0]["id"]
    assert memory_id in added.content[0].text
    again = await client.call_tool("add_memory", {"text": "alice is allergic to PEANUTS"})
    assert again.structured_content["results"][0]["event"] == "NONE"
    found = await client.call_tool("search_memories", {"query": "what is she allergic to?"})
    assert found.structured_content["results"][0]["id"] == memory_id
    assert "peanuts" in found.content[0].text
    listed = await client.call_tool("list_memories", {"filters": {"topic": "health"}})
    assert [m["id"] for m in listed.structured_content["results"]] == [memory_id]
    got = await client.call_tool("get_memory", {"memory_id": memory_id})
    assert got.structured_content["metadata"] == {"topic": "health"}
    updated = await client.call_tool(
        "update_memory",
        {"memory_id": memory_id, "text": "Alice is allergic to peanuts and shellfish"},
    )
    assert updated.structured_content["result"]["memory"].endswith("shellfish")
    history = await client.call_tool("memory_history", {"memory_id": memory_id})
    assert [e["event"] for e in history.structured_content["events"]] == ["ADD", "NONE", "UPDATE"]
    other = await client.call_tool("add_memory", {"text": "Alice met Bob in Lisbon"})
    other_id = other.structured_content["results"][0]["id"]
    await client.call_tool("add_memory", {"text": "The weather was fine"})
    related = await client.call_tool("related_memories", {"memory_id": other_id})
    assert not related.is_error
    assert [m["id"] for m in related.structured_content["results"]] == [memory_id]
    assert related.structured_content["results"][0]["entities"] == ["Alice"]
    assert "shares: Alice" in related.content[0].text
    deleted = await client.call_tool("delete_memory", {"memory_id": memory_id})
    assert not deleted.is_error
    missing = await client.call_tool("get_memory", {"memory_id": memory_id})
    assert missing.is_error and "[not_found]" in missing.content[0].text
    bad = await client.call_tool("search_memories", {"query": "x", "filters": {"a": {"near": 1}}})
    assert bad.is_error and "[invalid_filter]" in bad.content[0].text
    wrong_type = await client.call_tool("search_memories", {"query": "x", "top_k": "ten"})
    assert wrong_type.is_error
    # The session survives errors.
    assert not (await client.call_tool("list_memories", {})).is_error
    return {"memory_id": memory_id}


def run(scenario: Callable[[], Any]) -> None:
    anyio.run(scenario)


def test_stdio_every_tool(home: Path) -> None:
    async def scenario() -> None:
        async with stdio_client(home) as client:
            await exercise_every_tool(client)

    run(scenario)


def test_stdio_is_pinned_to_its_user(home: Path) -> None:
    async def scenario() -> None:
        async with stdio_client(home, "alice") as alice:
            await alice.call_tool("add_memory", {"text": "alice's secret plan"})
            other = await alice.call_tool("search_memories", {"query": "plan", "user_id": "bob"})
            assert other.is_error and "[forbidden]" in other.content[0].text
        async with stdio_client(home, "bob") as bob:
            found = await bob.call_tool("search_memories", {"query": "secret plan"})
            assert found.structured_content["results"] == []

    run(scenario)


def test_http_every_tool(server: RunningServer) -> None:
    key = server.key("write", user_id="alice")

    async def scenario() -> None:
        async with http_client(server, key) as client:
            await exercise_every_tool(client)

    run(scenario)


def test_http_isolation_between_keys(server: RunningServer) -> None:
    alice, bob = server.key("write", user_id="alice"), server.key("write", user_id="bob")
    app_key = server.key("write")

    async def scenario() -> None:
        async with http_client(server, alice) as client:
            added = await client.call_tool("add_memory", {"text": "alice's diary entry"})
            alice_id = added.structured_content["results"][0]["id"]
        async with http_client(server, bob) as client:
            assert (
                await client.call_tool("search_memories", {"query": "diary entry"})
            ).structured_content["results"] == []
            for tool in ("get_memory", "memory_history", "related_memories", "delete_memory"):
                result = await client.call_tool(tool, {"memory_id": alice_id})
                assert result.is_error and "[not_found]" in result.content[0].text
            forbidden = await client.call_tool("list_memories", {"user_id": "alice"})
            assert forbidden.is_error and "[forbidden]" in forbidden.content[0].text
        async with http_client(server, app_key) as client:
            # An unbound key passes user_id as an argument, within its namespace.
            found = await client.call_tool(
                "search_memories", {"query": "diary", "user_id": "alice"}
            )
            assert [m["id"] for m in found.structured_content["results"]] == [alice_id]
            missing = await client.call_tool("search_memories", {"query": "diary"})
            assert missing.is_error and "[missing_scope]" in missing.content[0].text

    run(scenario)


def test_http_read_key_sees_only_read_tools(server: RunningServer) -> None:
    async def scenario() -> None:
        async with http_client(server, server.key("read")) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert names == READ_TOOLS
            refused = await client.call_tool("add_memory", {"text": "x", "user_id": "u"})
            assert refused.is_error

    run(scenario)


def test_every_tool_declares_a_policy_action() -> None:
    """A tool cannot be added without an action the policy knows (security/policy.py)."""
    from memvault.mcp.tools import TOOL_ACTIONS, build_server
    from memvault.security.policy import RULES

    async def names(writable: bool) -> set[str]:
        server = build_server(lambda ctx: None, writable=writable)  # type: ignore[arg-type,return-value]
        return {tool.name for tool in await server.list_tools()}

    assert anyio.run(names, True) == set(TOOL_ACTIONS) == ALL_TOOLS
    assert anyio.run(names, False) == READ_TOOLS
    assert all(action in RULES for action in TOOL_ACTIONS.values())


def test_http_bound_read_key_cannot_write_or_reach_another_user(server: RunningServer) -> None:
    with server.http(server.key("write")) as http:
        bobs = http.post("/v1/memories/", json={"messages": "bob's note", "user_id": "bob"})
    bob_id = bobs.json()["results"][0]["id"]

    async def scenario() -> None:
        async with http_client(server, server.key("read", user_id="alice")) as client:
            assert {t.name for t in (await client.list_tools()).tools} == READ_TOOLS
            refused = await client.call_tool("add_memory", {"text": "x"})
            assert refused.is_error
            for tool, args in (
                ("search_memories", {"query": "note", "user_id": "bob"}),
                ("list_memories", {"filters": {"user_id": "bob"}}),
            ):
                result = await client.call_tool(tool, args)
                assert result.is_error and "[forbidden]" in result.content[0].text
            for tool in ("get_memory", "memory_history", "related_memories"):
                result = await client.call_tool(tool, {"memory_id": bob_id})
                assert result.is_error and "[not_found]" in result.content[0].text

    run(scenario)


@pytest.mark.parametrize("key", [None, "mvk_wrong", "revoked"])
def test_http_refuses_missing_wrong_and_revoked_keys(
    server: RunningServer, key: str | None
) -> None:
    if key == "revoked":
        key = server.key("write")
        server.memory.api_keys.revoke(key.split("_")[1])
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    response = httpx2.post(
        f"{server.base_url}/mcp",
        json=body,
        headers={**headers, "Accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"

    async def scenario() -> None:
        with pytest.raises(Exception):  # noqa: B017 - the SDK raises its own transport error
            async with http_client(server, key) as client:
                await client.list_tools()

    run(scenario)


def test_every_tool_call_is_audited(server: RunningServer) -> None:
    key = server.key("write", user_id="alice")

    async def scenario() -> str:
        async with http_client(server, key) as client:
            added = await client.call_tool("add_memory", {"text": "audited over mcp"})
            memory_id = added.structured_content["results"][0]["id"]
            await client.call_tool("get_memory", {"memory_id": memory_id})
            await client.call_tool(
                "get_memory", {"memory_id": "0191a2b3-0000-7000-8000-000000000000"}
            )
            return str(memory_id)

    memory_id = anyio.run(scenario)
    server.memory.audit.flush()
    entries = [
        e for e in server.memory.audit.entries(None, limit=100) if e["action"].startswith("mcp ")
    ]
    by_action = {(e["action"], e["outcome"]): e for e in entries}
    assert by_action[("mcp add_memory", "ok")]["memory_ids"] == [memory_id]
    assert by_action[("mcp get_memory", "ok")]["user_id"] == "alice"
    assert ("mcp get_memory", "not_found") in by_action
    assert all(e["key_id"] == key.split("_")[1] for e in entries)
    assert "audited over mcp" not in str(entries)
    assert server.memory.audit.verify().ok


def test_http_job_status_follows_a_queued_inference(
    start_server: Callable[..., RunningServer],
) -> None:
    """add_memory(infer=true) on a server is queued; job_status shows it, queued then done, to
    its user only (another user's key sees no such job)."""

    from memvault.testing import ScriptedChatServer
    from tests.llm.conftest import facts

    with ScriptedChatServer(default=facts("Alice lives in Lisbon")) as chat:
        server = start_server(job_workers=0, llm_base_url=chat.base_url, llm_model="scripted")
        alice, bob = server.key("write", user_id="alice"), server.key("read", user_id="bob")

        async def scenario() -> None:
            async with http_client(server, alice) as client:
                added = await client.call_tool(
                    "add_memory", {"text": "I moved to Lisbon", "infer": True}
                )
                assert not added.is_error, added.content
                job_id = added.structured_content["job"]["id"]
                queued = await client.call_tool("job_status", {"job_id": job_id})
                assert queued.structured_content["status"] == "queued"
                assert f"job {job_id}: queued" in queued.content[0].text
                server.memory.start_jobs(1)
                shown = queued

                async def done() -> bool:  # the worker thread runs the job
                    nonlocal shown
                    shown = await client.call_tool("job_status", {"job_id": job_id})
                    return bool(shown.structured_content["status"] == "done")

                await wait_for_async(done, 30, "the queued inference")
                assert "ADD" in shown.content[0].text and "Alice lives in Lisbon" in (
                    shown.content[0].text
                )
            async with http_client(server, bob) as client:
                other = await client.call_tool("job_status", {"job_id": job_id})
                assert other.is_error and "[not_found]" in other.content[0].text
                unknown = await client.call_tool("job_status", {"job_id": "../../etc"})
                assert unknown.is_error

        try:
            run(scenario)
        finally:
            server.memory.stop_jobs()
