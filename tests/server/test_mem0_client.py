"""The real mem0ai MemoryClient (2.2.1) against a running memvault server."""

from __future__ import annotations

import pytest

from .conftest import RunningServer


@pytest.fixture
def mem0_client(server: RunningServer, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEM0_TELEMETRY", "False")
    from mem0 import MemoryClient

    client = MemoryClient(host=server.base_url, api_key=server.key("write"))
    yield client
    client.client.close()


def test_mem0_client_round_trip(mem0_client) -> None:  # type: ignore[no-untyped-def]
    client = mem0_client
    added = client.add(
        "Alice is allergic to peanuts", user_id="alice", metadata={"topic": "health"}
    )
    memory_id = added["results"][0]["id"]
    client.add([{"role": "user", "content": "I love hiking in the Alps"}], user_id="alice")
    client.add("Bob plays the cello", user_id="bob")

    hits = client.search("what is alice allergic to?", filters={"user_id": "alice"})
    assert hits["results"][0]["id"] == memory_id

    page = client.get_all(filters={"user_id": "alice"})
    assert page["count"] == 2 and {m["user_id"] for m in page["results"]} == {"alice"}
    assert client.get_all(filters={"user_id": "alice"}, page=1, page_size=1)["next"] is not None

    assert client.get(memory_id)["memory"] == "Alice is allergic to peanuts"
    client.update(memory_id, text="Alice is allergic to peanuts and shellfish")
    assert client.get(memory_id)["memory"] == "Alice is allergic to peanuts and shellfish"
    assert [e["event"] for e in client.history(memory_id)] == ["ADD", "UPDATE"]

    client.delete(memory_id)
    assert client.get_all(filters={"user_id": "alice"})["count"] == 1
    client.delete_all(user_id="alice")
    assert client.get_all(filters={"user_id": "alice"})["count"] == 0
    assert client.get_all(filters={"user_id": "bob"})["count"] == 1


def test_mem0_client_errors(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEM0_TELEMETRY", "False")
    import httpx
    from mem0 import MemoryClient

    with httpx.Client() as http, pytest.raises(ValueError, match="invalid API key"):
        MemoryClient(host=server.base_url, api_key="mvk_not_a_key", client=http)
