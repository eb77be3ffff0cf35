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


@pytest.fixture
def mem0_for(server: RunningServer, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """mem0 clients for any key of the server, closed at the end."""
    monkeypatch.setenv("MEM0_TELEMETRY", "False")
    from mem0 import MemoryClient

    made = []

    def make(key: str) -> MemoryClient:
        made.append(MemoryClient(host=server.base_url, api_key=key))
        return made[-1]

    yield make
    for client in made:
        client.client.close()


def refusal(call, *args, **kwargs):  # type: ignore[no-untyped-def]
    """The mem0 exception a refused call raises: (status, code, message)."""
    from mem0.exceptions import MemoryError as Mem0Error

    with pytest.raises(Mem0Error) as raised:
        call(*args, **kwargs)
    error = raised.value
    return error.debug_info["status_code"], error.details["error"]["code"], error.message


def test_mem0_add_takes_the_scope_in_filters_and_a_timestamp(mem0_client) -> None:  # type: ignore[no-untyped-def]
    client = mem0_client
    added = client.add("Carol runs marathons", filters={"user_id": "carol"}, timestamp=1700000000)
    stored = client.get(added["results"][0]["id"])
    assert stored["user_id"] == "carol"
    assert stored["created_at"] == "2023-11-14T22:13:20.000000+00:00"
    assert stored["updated_at"] == stored["created_at"]
    options = {"async_mode": False, "version": "v2", "output_format": "v1.1"}
    again = client.add("Carol swims", filters={"user_id": "carol", "agent_id": "coach"}, **options)
    assert client.get(again["results"][0]["id"])["agent_id"] == "coach"
    # Without a timestamp the memory is stamped now: not the one above.
    assert client.get(again["results"][0]["id"])["created_at"] > stored["created_at"]

    status, code, message = refusal(client.add, "x", user_id="carol", filters={"user_id": "dave"})
    assert (status, code) == (422, "invalid_input") and "user_id is given twice" in message
    status, code, message = refusal(client.add, "x", filters={"app_id": "shop"})
    assert (status, code) == (422, "unsupported_option") and "app_id" in message
    status, code, message = refusal(client.add, "x", filters={"user_id": "carol", "topic": "a"})
    assert code == "unsupported_option" and "'topic'" in message
    status, code, message = refusal(client.add, "x", user_id="carol", timestamp=2**62)
    assert (status, code) == (422, "invalid_input") and "timestamp" in message
    status, code, message = refusal(client.add, "x", user_id="carol", timestamp=4102444800)
    assert code == "invalid_input" and "created_at is in the future" in message


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("custom_instructions", "Only extract food preferences"),
        ("agent_custom_instructions", "Be brief"),
        ("custom_categories", [{"food": "what the user eats"}]),
        ("structured_data_schema", {"type": "object"}),
        ("version", "v1"),
        ("output_format", "v1.0"),
    ],
)
def test_mem0_add_options_memvault_cannot_honour_are_refused_by_name(
    mem0_client, option: str, value: object
) -> None:  # type: ignore[no-untyped-def]
    status, code, message = refusal(mem0_client.add, "x", user_id="u", **{option: value})
    assert (status, code) == (422, "unsupported_option")
    assert message.startswith(f"{option} is not supported")
    assert mem0_client.get_all(filters={"user_id": "u"})["count"] == 0  # nothing was stored


def test_mem0_search_and_list_options(mem0_client) -> None:  # type: ignore[no-untyped-def]
    client = mem0_client
    client.add("Dana is vegan", user_id="dana", metadata={"topic": "food"})
    client.add("Dana climbs", user_id="dana", metadata={"topic": "sport"})

    hits = client.search("dana", filters={"user_id": "dana", "metadata": {"topic": "food"}})
    assert [hit["memory"] for hit in hits["results"]] == ["Dana is vegan"]
    both = {"AND": [{"user_id": "dana"}, {"metadata": {"topic": {"in": ["food", "sport"]}}}]}
    assert len(client.search("dana", filters=both)["results"]) == 2
    page = client.get_all(filters={"user_id": "dana", "metadata": {"topic": "sport"}})
    assert [m["memory"] for m in page["results"]] == ["Dana climbs"]

    narrow = client.search("vegan", filters={"user_id": "dana"}, fields=["memory"], rerank=False)
    assert narrow["results"] and all(set(hit) == {"id", "memory"} for hit in narrow["results"])
    listed = client.get_all(filters={"user_id": "dana"}, fields=["created_at", "metadata"])
    assert all(set(m) == {"id", "created_at", "metadata"} for m in listed["results"])

    status, code, message = refusal(client.search, "x", filters={"user_id": "dana"}, rerank=True)
    assert (status, code) == (422, "unsupported_option") and message.startswith("rerank")
    status, code, message = refusal(
        client.search, "x", filters={"user_id": "dana"}, fields=["password"]
    )
    assert code == "invalid_input" and "fields: unknown field 'password'" in message
    status, code, message = refusal(
        client.get_all, filters={"user_id": "dana", "metadata": {"user_id": "eve"}}
    )
    assert code == "invalid_filter" and "'user_id'" in message


def test_mem0_delete_all_with_filters_and_update_timestamp(mem0_client) -> None:  # type: ignore[no-untyped-def]
    client = mem0_client
    memory_id = client.add("Erin sings", user_id="erin")["results"][0]["id"]
    client.add("Frank paints", user_id="frank")
    status, code, message = refusal(client.update, memory_id, text="Erin sings", timestamp=1)
    assert (status, code) == (422, "unsupported_option") and message.startswith("timestamp")
    status, code, message = refusal(client.delete_all, filters={"app_id": "x"})
    assert code == "unsupported_option" and "app_id" in message
    status, code, _ = refusal(client.delete_all, filters={})
    assert code == "missing_scope"  # never a whole namespace
    assert client.delete_all(filters={"user_id": "erin"})["deleted"] == 1
    assert client.get_all(filters={"user_id": "erin"})["count"] == 0
    assert client.get_all(filters={"user_id": "frank"})["count"] == 1


def test_mem0_users_delete_users_and_reset(server: RunningServer, mem0_for) -> None:  # type: ignore[no-untyped-def]
    writer = mem0_for(server.key("write"))
    writer.add("Gina likes jazz", user_id="gina", agent_id="dj")
    writer.add("Hugo likes rock", user_id="hugo", run_id="session-1")
    writer.add("the dj's own note", agent_id="dj")

    listed = writer.users()
    kinds = [(e["type"], e["name"], e["total_memories"]) for e in listed["results"]]
    assert kinds == [
        ("user", "gina", 1),
        ("user", "hugo", 1),
        ("agent", "dj", 2),
        ("run", "session-1", 1),
    ]
    bound = mem0_for(server.key("write", user_id="gina"))
    assert [(e["type"], e["name"]) for e in bound.users()["results"]] == [
        ("user", "gina"),
        ("agent", "dj"),
    ]

    # Deleting a user is an erase: an admin's (or the user's own bound key's) right.
    status, code, _ = refusal(writer.delete_users, user_id="hugo")
    assert (status, code) == (403, "forbidden")
    status, code, _ = refusal(bound.delete_users, user_id="hugo")
    assert (status, code) == (403, "forbidden")
    status, code, message = refusal(writer.delete_users, app_id="shop")
    assert code == "unsupported_option" and "app_id" in message
    # A bound key deleting an agent deletes only its own user's memories of that agent.
    bound.delete_users(agent_id="dj")
    assert writer.get_all(filters={"agent_id": "dj"})["count"] == 1
    bound.delete_users(user_id="gina")
    assert [e["name"] for e in writer.users()["results"]] == ["hugo", "dj", "session-1"]

    admin = mem0_for(server.admin_key)
    assert admin.reset()["message"].startswith("Client reset successful")
    assert admin.users()["results"] == []
    assert server.memory.count(agent_id="dj") == 0 and server.memory.count(user_id="hugo") == 0


def test_mem0_batch_update_and_delete(server: RunningServer, mem0_for) -> None:  # type: ignore[no-untyped-def]
    client = mem0_for(server.key("write"))
    ids = [client.add(f"Iris fact {n}", user_id="iris")["results"][0]["id"] for n in range(3)]
    other = client.add("Jack fact", user_id="jack")["results"][0]["id"]

    answer = client.batch_update(
        [
            {"memory_id": ids[0], "text": "Iris fact zero"},
            {"memory_id": ids[1], "metadata": {"checked": True}},
        ]
    )
    assert answer["ids"] == ids[:2]
    assert client.get(ids[0])["memory"] == "Iris fact zero"
    assert client.get(ids[1])["metadata"] == {"checked": True}

    bound = mem0_for(server.key("write", user_id="iris"))
    # Jack's memory is invisible to Iris's key: nothing of the batch is applied.
    status, code, _ = refusal(bound.batch_delete, [{"memory_id": ids[2]}, {"memory_id": other}])
    assert (status, code) == (404, "not_found")
    assert client.get(ids[2])["memory"] == "Iris fact 2"
    status, code, _ = refusal(
        client.batch_update,
        [{"memory_id": ids[2], "text": "a"}, {"memory_id": ids[2], "text": "b"}],
    )
    assert code == "invalid_input"
    status, code, message = refusal(client.batch_update, [{"memory_id": ids[2]}])
    assert code == "invalid_input" and "neither text nor metadata" in message

    assert bound.batch_delete([{"memory_id": ids[2]}, {"memory_id": ids[0]}])["ids"] == [
        ids[2],
        ids[0],
    ]
    assert [m["id"] for m in client.get_all(filters={"user_id": "iris"})["results"]] == [ids[1]]
    assert [e["event"] for e in client.history(ids[0])] == ["ADD", "UPDATE", "DELETE"]
