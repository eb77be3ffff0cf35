"""GDPR: erase by crypto-shredding (even a copy made before cannot be read), export, expiry purge."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memvault import HashEmbedder, Memory, NotFound
from memvault.cli.importer import import_jsonl


def fill(m: Memory) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {}
    for user in ("alice", "bob"):
        added = m.add_many(
            [
                {"messages": f"{user} secret number {i}", "user_id": user, "metadata": {"i": i}}
                for i in range(6)
            ]
        )
        ids[user] = [r["id"] for r in added["results"]]
    m.update(ids["alice"][0], "alice secret number 0, revised")
    m.delete(ids["alice"][1])
    return ids


def test_erase_makes_even_an_earlier_copy_unreadable(home: Path, tmp_path: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        fill(m)
    copy = tmp_path / "copy"
    shutil.copytree(home, copy)  # a backup taken before the erase, keys and all but the erase
    with Memory(home, embedder=HashEmbedder()) as m:
        result = m.erase_user("alice")
        assert result["memories_deleted"] == 5 and result["history_deleted"] >= 7
        assert m.get_all(user_id="alice")["results"] == []
        assert len(m.get_all(user_id="bob")["results"]) == 6
        with pytest.raises(NotFound):
            m.erase_user("alice")
    # The old database with today's key store: alice's rows are there, and cannot be opened.
    shutil.copy(home / "keys.db", copy / "keys.db")
    for suffix in ("-wal", "-shm"):
        (copy / f"keys.db{suffix}").unlink(missing_ok=True)
    db = sqlite3.connect(copy / "memvault.db")
    alice = db.execute("SELECT id, scope_id FROM memories WHERE user_id = 'alice'").fetchall()
    db.close()
    assert len(alice) == 5
    keys = sqlite3.connect(copy / "keys.db")
    query = "SELECT scope_id FROM data_keys WHERE scope_id = ?"
    held = [scope for _, scope in alice if keys.execute(query, (scope,)).fetchone()]
    keys.close()
    assert held == []  # no key opens them: only their ids and sizes are left
    with Memory(copy, embedder=HashEmbedder()) as old:
        assert len(old.get_all(user_id="bob")["results"]) == 6  # others untouched
        # Rows of an erased key generation are the leftovers of an erase: the first read that
        # meets one finishes it (core/rights.py, finish_cut_erasures), so no read returns them.
        for memory_id, _ in alice:
            assert old.get(memory_id) is None
        assert old.history(alice[0][0]) == []
        assert old.get_all(user_id="alice")["results"] == []
    # And the key store keeps no trace of alice's wrapped key, WAL included.
    raw = b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("keys.db"))
    assert b"user:alice" not in raw


def test_a_new_memory_after_erase_gets_a_new_key(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        m.add("before", user_id="alice")
        m.erase_user("alice")
        m.add("after", user_id="alice")
        assert [x["memory"] for x in m.get_all(user_id="alice")["results"]] == ["after"]
        assert m.search("after", user_id="alice")["results"][0]["memory"] == "after"


def test_export_has_everything_and_imports_back(home: Path, tmp_path: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        ids = fill(m)
        lines = list(m.export_user("alice"))
        with pytest.raises(NotFound):
            m.export_user("nobody")
    header, *rest = lines
    assert header["type"] == "export" and header["user_id"] == "alice"
    memories = [line for line in rest if line["type"] == "memory"]
    deleted = [line for line in rest if line["type"] == "history"]
    assert len(memories) == 5 and {m["user_id"] for m in memories} == {"alice"}
    revised = next(m for m in memories if m["id"] == ids["alice"][0])
    assert [e["event"] for e in revised["history"]] == ["ADD", "UPDATE"]
    assert deleted[0]["memory_id"] == ids["alice"][1]
    assert [e["event"] for e in deleted[0]["events"]] == ["ADD", "DELETE"]
    path = tmp_path / "alice.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with Memory(tmp_path / "other-home", embedder=HashEmbedder()) as fresh:
        summary = import_jsonl(fresh, path)
        assert summary["added"] == 5
        again = {
            (x["memory"], json.dumps(x["metadata"]))
            for x in fresh.get_all(user_id="alice")["results"]
        }
    assert again == {(x["memory"], json.dumps(x["metadata"])) for x in memories}


def test_purge_removes_expired_memories_with_a_delete_event(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        soon = datetime.now(UTC) + timedelta(milliseconds=200)
        gone = m.add("short-lived", user_id="u", expiration_date=soon)["results"][0]["id"]
        kept = m.add("long-lived", user_id="u", expiration_date="2999-01-01")["results"][0]["id"]
        other = m.namespaced("tenant-b").add("short-lived too", user_id="u", expiration_date=soon)
        import time

        time.sleep(0.3)
        assert m.purge_expired() == 2
        assert m.purge_expired() == 0
        assert [e["event"] for e in m.history(gone)] == ["ADD", "DELETE"]
        assert m.get(kept) is not None
        assert m.namespaced("tenant-b").get(other["results"][0]["id"]) is None
