"""Every id that can be stored is reachable by every route that takes it in the path."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from .conftest import RunningServer

ODD_IDS = [
    "a/b",
    "a%2Fb",
    "..",
    "a/../b",
    ".",
    "trailing/",
    "/leading",
    "a//b",
    "#fragment",
    "what?x=1&y=2",
    "semi;colon",
    "plus+sign",
    "ünïcödé/日本語",
    "emoji-🙂",
    "ends/export",
    "ends/rotate-key",
]


def encoded(user_id: str) -> str:
    """As a client must send it: every reserved byte escaped, and dots too (else a client
    library removes ``.`` and ``..`` segments before sending)."""
    return quote(user_id, safe="").replace(".", "%2E")


@pytest.mark.parametrize("user_id", ODD_IDS)
def test_export_rotate_and_erase_reach_any_stored_id(server: RunningServer, user_id: str) -> None:
    with server.http(server.admin_key) as http:
        added = http.post("/v1/memories/", json={"messages": "a fact", "user_id": user_id})
        assert added.status_code == 200, added.text
        memory_id = added.json()["results"][0]["id"]
        path = f"/v1/users/{encoded(user_id)}"
        export = http.get(f"{path}/export/")
        assert export.status_code == 200, export.text
        lines = [json.loads(line) for line in export.text.splitlines()]
        assert [line["type"] for line in lines] == ["export", "memory"]
        assert lines[1]["id"] == memory_id and lines[1]["user_id"] == user_id
        assert "filename*=UTF-8''" in export.headers["content-disposition"]
        rotated = http.post(f"{path}/rotate-key/")
        assert rotated.status_code == 200 and rotated.json()["memories_rekeyed"] == 1
        assert http.get(f"/v1/memories/{memory_id}/").json()["user_id"] == user_id
        erased = http.delete(f"{path}/")
        assert erased.status_code == 200 and erased.json()["memories_deleted"] == 1
        assert http.get(f"{path}/export/").status_code == 404


def test_a_slash_may_also_be_sent_unescaped(server: RunningServer) -> None:
    with server.http(server.admin_key) as http:
        http.post("/v1/memories/", json={"messages": "nested", "user_id": "team/alice"})
        assert http.get("/v1/users/team/alice/export/").status_code == 200
        assert http.delete("/v1/users/team/alice/").json()["memories_deleted"] == 1


def test_a_bound_key_reaches_its_odd_id_and_no_other(server: RunningServer) -> None:
    with server.http(server.admin_key) as http:
        http.post("/v1/memories/", json={"messages": "mine", "user_id": "org/alice"})
        http.post("/v1/memories/", json={"messages": "theirs", "user_id": "org/alice/x"})
    with server.http(server.key("read", user_id="org/alice")) as http:
        assert http.get(f"/v1/users/{encoded('org/alice')}/export/").status_code == 200
        assert http.get("/v1/users/org/alice/export/").status_code == 200
        for other in ("org/alice/x", "org", "org/alice/"):
            assert http.get(f"/v1/users/{encoded(other)}/export/").status_code == 403, other


@pytest.mark.parametrize("raw", ["%2E%2E", "%2E", "%2E%2E%2Fusers%2Falice", "..%2Fusers%2Falice"])
def test_an_escaped_dot_segment_is_a_memory_id_not_a_path(server: RunningServer, raw: str) -> None:
    alice = server.memory.add("alice keeps bees", user_id="alice")["results"][0]["id"]
    with server.http(server.admin_key) as http:
        answer = http.delete(f"/v1/memories/{raw}/")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert server.memory.get(alice) is not None
