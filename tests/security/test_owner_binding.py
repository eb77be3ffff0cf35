"""Owner columns are bound to the ciphertext (finding 9): editing them in the file is detected.

A tampered row makes every read that reaches it fail closed with ``IntegrityError``
(``integrity_error``): the listing or search that would include it fails as a whole rather than
showing the memory to the new owner or silently dropping it. The server answers 500
``integrity_error`` with no memory text in the body.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from memvault import HashEmbedder, Memory
from memvault.errors import IntegrityError, NotFound
from tests.server.conftest import RunningServer

SECRET = "alice's secret plan involves kites"


def _tamper(home: Path, memory_id: str, column: str, value: str) -> None:
    db = sqlite3.connect(home / "memvault.db")
    with db:
        db.execute(f"UPDATE memories SET {column} = ? WHERE id = ?", (value, memory_id))
        db.execute(f"UPDATE history SET {column} = ? WHERE memory_id = ?", (value, memory_id))
    db.close()


def _setup(home: Path) -> tuple[str, str]:
    with Memory(home, embedder=HashEmbedder()) as m:
        mine = m.add(SECRET, user_id="alice", agent_id="a1", run_id="r1", metadata={"k": "v"})
        m.add("bob's own note about kites", user_id="bob", agent_id="a1", run_id="r1")
        m.namespaced("other").add("someone in another namespace", user_id="bob")
        return str(mine["results"][0]["id"]), m.namespace


# column -> the value it is changed to, and the scope a reader then asks for
CASES: dict[str, tuple[str, dict[str, str]]] = {
    "user_id": ("bob", {"user_id": "bob"}),
    "agent_id": ("a2", {"agent_id": "a2"}),
    "run_id": ("r2", {"run_id": "r2"}),
    "namespace": ("other", {"user_id": "alice"}),
    "scope_id": ('["default","user","bob",1]', {"user_id": "alice"}),
    "seal_version": ("1", {"user_id": "alice"}),  # a downgrade to the weaker format
}


@pytest.mark.parametrize("column", sorted(CASES))
def test_a_tampered_owner_column_fails_every_read_path(home: Path, column: str) -> None:
    memory_id, _ = _setup(home)
    value, scope = CASES[column]
    _tamper(home, memory_id, column, value)
    with Memory(home, embedder=HashEmbedder()) as m:
        view = m.namespaced("other") if column == "namespace" else m
        must_fail: list[Callable[[], Any]] = [
            lambda: view.get(memory_id),
            lambda: view.history(memory_id),
        ]
        reaches: list[Callable[[], Any]] = [
            lambda: view.get_all(**scope),
            lambda: view.get_all(**scope, filters={"k": "v"}),  # metadata decrypted in SQL
            lambda: view.search("secret plan kites", **scope),
            lambda: view.search("secret plan kites", **scope, mode="bm25"),
            lambda: view.search("secret plan kites", **scope, filters={"k": "v"}),
            lambda: list(view.export_user(scope.get("user_id", "alice"))),
        ]
        for read in must_fail:
            with pytest.raises(IntegrityError):
                read()
        failed = 0
        for read in reaches:
            # Each listing either fails closed or does not hold the row (it is under another
            # owner's key or scope, so the query never reaches it): never shows it.
            try:
                shown = repr(read())
            except IntegrityError:
                failed += 1
            except NotFound:
                continue
            else:
                assert SECRET not in shown and memory_id not in shown
        assert failed >= 1  # the listing that reaches the row refuses it


def test_the_server_answers_integrity_error_without_the_text(
    start_server: Callable[..., RunningServer], home: Path
) -> None:
    memory_id, _ = _setup(home)
    _tamper(home, memory_id, "user_id", "bob")
    server = start_server()
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.base_url, headers=headers) as client:
        answers = [
            client.get(f"/v1/memories/{memory_id}/"),
            client.post("/v1/memories/list/", json={"user_id": "bob"}),
            client.get(f"/v1/memories/{memory_id}/history/"),
        ]
        # Bob's search reads bob's key's index: the moved row is not in it, so not shown.
        search = client.post("/v1/memories/search/", json={"query": "kites", "user_id": "bob"})
    assert search.status_code == 200 and "secret" not in search.text
    for answer in answers:
        assert answer.status_code == 500, answer.text
        assert answer.json()["error"]["code"] == "integrity_error"
        assert "secret" not in answer.text and "kites" not in answer.text
