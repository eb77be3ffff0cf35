"""Rotating one user's data key re-encrypts their rows; the old key is gone afterwards."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from memvault import HashEmbedder, Memory


def test_rotate_user_key_reencrypts_everything(home: Path, tmp_path: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        ids = [
            r["id"]
            for r in m.add_many(
                [
                    {
                        "messages": f"alice fact {i} about kites",
                        "user_id": "alice",
                        "metadata": {"i": i},
                    }
                    for i in range(450)
                ]
            )["results"]
        ]
        m.update(ids[0], "alice fact 0 about kites, revised")
        m.add("bob fact about kites", user_id="bob")
        before = [
            h["memory"] for h in m.search("kites fact 7", user_id="alice", top_k=5)["results"]
        ]
        snapshot = tmp_path / "snapshot"
        shutil.copytree(home, snapshot)
        report = m.rotate_user_key("alice")
        assert report["memories_rekeyed"] == 450 and report["history_rekeyed"] >= 451
        assert report["key_scope"] == '["default","user","alice",2]'
        # Same answers, from re-encrypted rows and re-keyed token hashes.
        assert [
            h["memory"] for h in m.search("kites fact 7", user_id="alice", top_k=5)["results"]
        ] == before
        assert [
            h["memory"] for h in m.search("kites", user_id="alice", mode="bm25", top_k=3)["results"]
        ]
        assert m.get(ids[0])["metadata"] == {"i": 0}
        assert [e["event"] for e in m.history(ids[0])] == ["ADD", "UPDATE"]
        assert m.add("alice fact 5 about kites", user_id="alice")["results"][0]["event"] == "NONE"
        assert len(m.get_all(user_id="bob")["results"]) == 1
        m.rotate_user_key("alice")  # again: generation 3
        assert m.get(ids[3])["memory"] == "alice fact 3 about kites"
    db = sqlite3.connect(home / "memvault.db")
    assert {
        r[0] for r in db.execute("SELECT DISTINCT scope_id FROM memories WHERE user_id = 'alice'")
    } == {'["default","user","alice",3]'}
    db.close()
    # The pre-rotation copy of the data cannot be read with today's key store: the old key is gone.
    shutil.copy(home / "keys.db", snapshot / "keys.db")
    for suffix in ("-wal", "-shm"):
        (snapshot / f"keys.db{suffix}").unlink(missing_ok=True)
    with sqlite3.connect(snapshot / "keys.db") as keys:
        assert not keys.execute(
            "SELECT 1 FROM data_keys WHERE scope_id = ?", ('["default","user","alice",1]',)
        ).fetchall()
    with Memory(snapshot, embedder=HashEmbedder()) as old:
        # Rows of a key generation moved past whose key is gone are leftovers (of an erase cut
        # by a crash, or of an old copy like this one): the read that meets them deletes them.
        assert old.get(ids[5]) is None
        assert old.get_all(user_id="alice")["results"] == []
        assert old.get_all(user_id="bob")["results"][0]["memory"] == "bob fact about kites"


def test_erase_after_rotation_destroys_every_generation(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        m.add("carol fact", user_id="carol")
        m.rotate_user_key("carol")
        m.add("carol newer fact", user_id="carol")
        assert m.erase_user("carol")["memories_deleted"] == 2
    db = sqlite3.connect(home / "keys.db")
    assert (
        db.execute(
            'SELECT count(*) FROM data_keys WHERE scope_id LIKE \'["default","user","carol",%\''
        ).fetchone()[0]
        == 0
    )
    db.close()
