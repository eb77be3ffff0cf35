"""One user, one id: every spelling of an id that NFC makes equal reaches the same user, on every
path that names a user (arguments, filters, a key's binding), and nothing names a user that does
not exist."""

from __future__ import annotations

import unicodedata

import pytest

from memvault import Memory
from memvault.errors import NotFound
from tests.server.conftest import RunningServer

COMPOSED = unicodedata.normalize("NFC", "Jose\u0301")  # José, one code point for é
DECOMPOSED = "Jose\u0301"


def test_a_filter_on_an_id_matches_every_spelling(memory: Memory) -> None:
    memory.add("likes the sea", user_id=DECOMPOSED)
    for spelling in (COMPOSED, DECOMPOSED):
        found = memory.get_all(filters={"user_id": spelling})["results"]
        assert [r["memory"] for r in found] == ["likes the sea"], spelling
        found = memory.get_all(user_id="x", filters={"OR": [{"user_id": spelling}]})["results"]
        assert found == []  # the filter narrows a scope, never widens it
        assert memory.count(user_id=spelling, filters={"user_id": {"in": [spelling]}}) == 1


def test_a_key_bound_to_a_user_accepts_every_spelling_of_it(server: RunningServer) -> None:
    server.memory.add("likes the sea", user_id=COMPOSED)
    key = server.key("read", user_id=DECOMPOSED)
    with server.http(key) as http:
        for spelling in (COMPOSED, DECOMPOSED):
            answer = http.post("/v1/memories/list/", json={"user_id": spelling})
            assert answer.status_code == 200, answer.text
            assert [r["memory"] for r in answer.json()["results"]] == ["likes the sea"]
            answer = http.post("/v1/memories/list/", json={"filters": {"user_id": spelling}})
            assert answer.status_code == 200, answer.text
        assert http.post("/v1/memories/list/", json={"user_id": "Jose"}).status_code == 403


def test_rotating_a_user_that_does_not_exist_is_not_found(memory: Memory) -> None:
    with pytest.raises(NotFound):
        memory.rotate_user_key("nobody")
    memory.add("a fact", user_id="somebody")
    assert memory.rotate_user_key("somebody")["memories_rekeyed"] == 1
    with pytest.raises(NotFound):  # still nobody: the failed rotation made no key for them
        memory.erase_user("nobody")


def test_rotating_an_unknown_user_over_rest_is_404(server: RunningServer) -> None:
    with server.http(server.admin_key) as http:
        answer = http.post("/v1/users/nobody/rotate-key/")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"
