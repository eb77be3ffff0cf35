"""Entity links over REST and through ``Client`` / ``AsyncClient``: the same answers as
``Memory``, and a user-bound key sees its own user's entities and related memories only."""

from __future__ import annotations

import asyncio

import pytest

from memvault import AsyncClient, Client, Forbidden, InvalidInput, MissingScope, NotFound

from .conftest import RunningServer


def fill(server: RunningServer) -> dict[str, str]:
    memory = server.memory
    ids = {}
    for name, text, user in (
        ("moved", "Alice moved to Lisbon in May 2023.", "alice"),
        ("tram", "Alice loves the Lisbon trams.", "alice"),
        ("porto", "Alice visited Porto with Bob.", "alice"),
        ("bob", "Bob lives in Lisbon too.", "bob"),
    ):
        ids[name] = memory.add(text, user_id=user)["results"][0]["id"]
    return ids


def test_clients_answer_as_memory_does(server: RunningServer) -> None:
    ids = fill(server)
    local = server.memory
    with Client(server.base_url, server.key("read")) as c:
        assert c.entities(user_id="alice") == local.entities(user_id="alice")
        assert c.entities(user_id="alice", limit=2) == local.entities(user_id="alice", limit=2)
        assert c.related(ids["moved"]) == local.related(ids["moved"])
        assert c.related(ids["moved"], limit=1)["results"][0]["entities"] == ["Alice", "Lisbon"]
        with pytest.raises(NotFound):
            c.related("01900000-0000-7000-8000-000000000000")
        with pytest.raises(MissingScope):
            c.entities()

    async def run() -> None:
        async with AsyncClient(server.base_url, server.key("read")) as c:
            assert await c.related(ids["moved"]) == local.related(ids["moved"])
            assert await c.entities(user_id="bob") == local.entities(user_id="bob")

    asyncio.run(run())


def test_a_user_bound_key_sees_only_its_own_user(server: RunningServer) -> None:
    ids = fill(server)
    with Client(server.base_url, server.key("read", user_id="bob")) as bob:
        assert bob.entities()["results"] == [
            {"name": "Bob", "memories": 1},
            {"name": "Lisbon", "memories": 1},
        ]
        with pytest.raises(Forbidden):
            bob.entities(user_id="alice")
        with pytest.raises(NotFound):  # alice's memory looks absent, as to get()
            bob.related(ids["moved"])
        assert bob.related(ids["bob"])["results"] == []
    with server.http(server.key("read", user_id="bob")) as http:
        answer = http.get(f"/v1/memories/{ids['tram']}/related/")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
        assert http.get("/v1/entities/names/", params={"limit": 0}).status_code == 422
        assert http.get("/v1/entities/names/", params={"limit": 1001}).status_code == 422


def test_another_namespaces_key_sees_nothing(server: RunningServer) -> None:
    ids = fill(server)
    server.memory.api_keys.create("acme", "admin", name="makes the namespace exist")
    with Client(server.base_url, server.key("read", namespace="acme")) as acme:
        assert acme.entities(user_id="alice")["results"] == []
        with pytest.raises(NotFound):
            acme.related(ids["moved"])


def test_a_bound_key_is_one_user_in_every_spelling(server: RunningServer) -> None:
    """A key bound to "José" (stored NFC) reaches José's entities in the decomposed spelling
    too, and no other user in a look-alike one; its own memories' related list (whatever their
    agent or run) holds only José's memories, never the agent-only ones naming the same names."""
    memory = server.memory
    nfc, nfd = "Jos\u00e9", "Jose\u0301"
    own = memory.add("Lisbon trams with Carla.", user_id=nfc, agent_id="a1")["results"][0]["id"]
    memory.add("Carla rode the Lisbon trams again.", user_id=nfc, run_id="r9")
    memory.add("Carla runs Lisbon tours.", agent_id="a1")  # agent-only: no user
    memory.add("Carla lives in Lisbon.", user_id="jose")
    expected = [{"name": "Carla", "memories": 2}, {"name": "Lisbon", "memories": 2}]
    with Client(server.base_url, server.key("read", user_id=nfc)) as jose:
        assert jose.entities()["results"] == expected
        assert jose.entities(user_id=nfd)["results"] == expected
        assert jose.entities(agent_id="a1")["results"] == [
            {"name": "Carla", "memories": 1},
            {"name": "Lisbon", "memories": 1},
        ]
        for other in ("jose", "JOS\u00c9", "Jos\u00e9\u200b", nfc + " "):
            with pytest.raises((Forbidden, InvalidInput)):
                jose.entities(user_id=other)
        related = jose.related(own)["results"]
        assert [r["user_id"] for r in related] == [nfc]
    with server.http(server.key("read", user_id=nfc)) as http:
        for path in ("..%2F..%2Fv1%2Fentities", "%00", "x" * 5000, "%F0%9F%92%A9"):
            answer = http.get(f"/v1/memories/{path}/related/")
            assert answer.status_code in (404, 422), (path, answer.status_code)
