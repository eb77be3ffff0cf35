"""``memvault backup`` / ``restore`` on the SQLite store: online snapshots, data and keys apart."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from memvault import HashEmbedder, Memory
from memvault.cli import main
from memvault.config import Settings
from memvault.core import backup as backup_module
from memvault.core.backup import backup, restore
from memvault.errors import IntegrityError, InvalidConfig, InvalidInput

USERS = ("alice", "bob", "carol")
# The store's own triggers (m011_entities keeps the entity index); anything else was planted.
OUR_TRIGGERS = {"memories_entities_insert", "memories_entities_update", "memories_entities_delete"}
FIELDS = ("id", "memory", "metadata", "user_id", "created_at", "updated_at")


def _view(memory: Memory, user: str) -> list[dict[str, Any]]:
    rows = memory.get_all(user_id=user, top_k=1000)["results"]
    return sorted(({k: row.get(k) for k in FIELDS} for row in rows), key=lambda r: r["id"])


def _triggers(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}


def _fill(memory: Memory) -> None:
    for user in USERS:
        for n in range(4):
            memory.add(
                f"{user} fact {n}: likes item {n * 3} in Lisbon", user_id=user, metadata={"n": n}
            )


def _run(*args: str) -> int:
    """The real CLI entry point (its one exit path), with an exit status."""
    with pytest.raises(SystemExit) as exited:
        main([*args])
    code = exited.value.code
    return int(code) if isinstance(code, int) else 1


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert _run(*args, "--json") == 0, capsys.readouterr()
    return dict(json.loads(capsys.readouterr().out))


class _Writer(threading.Thread):
    """Adds memories until stopped; ``reached(n)`` waits for the n-th acknowledged add."""

    def __init__(self, memory: Memory) -> None:
        super().__init__(daemon=True)
        self.memory = memory
        self.acknowledged: list[tuple[str, str]] = []
        self.stop = threading.Event()
        self.failure: BaseException | None = None
        self._progress = threading.Condition()

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                user = USERS[n % len(USERS)]
                added = self.memory.add(f"{user} note {n} on subject {n * 7}", user_id=user)
                with self._progress:
                    self.acknowledged.append((user, added["results"][0]["id"]))
                    self._progress.notify_all()
                n += 1
        except Exception as exc:  # noqa: BLE001  (handed to the test, which fails on it)
            self.failure = exc
            with self._progress:
                self._progress.notify_all()

    def reached(self, count: int) -> list[tuple[str, str]]:
        with self._progress:
            self._progress.wait_for(
                lambda: len(self.acknowledged) >= count or self.failure is not None, timeout=120
            )
            assert self.failure is None, self.failure
            assert len(self.acknowledged) >= count
            return list(self.acknowledged)


def test_online_backup_under_writes_restores_everything_acknowledged(
    home: Path, tmp_path: Path
) -> None:
    data_dir, keys_dir, new_home = tmp_path / "data", tmp_path / "keys", tmp_path / "new-home"
    with Memory(home, embedder=HashEmbedder()) as memory:
        writer = _Writer(memory)
        writer.start()
        try:
            before = writer.reached(30)  # acknowledged before the backup started
            done = backup(memory, data_dir, keys_out=keys_dir)
            # The writer was never blocked for good: it goes on after the snapshot.
            writer.reached(len(before) + 10)
            # Restored on another home while the source is still under load.
            restored = restore(Settings.load(home=new_home), data_dir, keys_dir=keys_dir)
        finally:
            writer.stop.set()
            writer.join()
        assert writer.failure is None
        snapshot = data_dir / "memvault.db"
        with sqlite3.connect(snapshot) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            in_file = db.execute("SELECT count(*) FROM memories").fetchone()[0]
        assert done["data"]["tables"]["memories"] == in_file >= len(before)
        assert done["data"]["schema_version"] == memory.store_status().schema_version
        assert restored["shredded"]["memories"] == 0
        assert restored["tables"]["memories"] == in_file
        with Memory(new_home, embedder=HashEmbedder()) as copy:
            for user in USERS:
                theirs = {row["id"]: row for row in _view(copy, user)}
                # Everything acknowledged before the backup is there, as the live store has it.
                assert {i for u, i in before if u == user} <= set(theirs)
                for memory_id, row in theirs.items():
                    live = memory.get(memory_id)
                    assert live is not None and {k: live.get(k) for k in FIELDS} == row


def test_files_and_directories_are_private_and_a_backup_is_not_overwritten(
    memory: Memory, tmp_path: Path
) -> None:
    _fill(memory)
    out, keys = tmp_path / "b" / "data", tmp_path / "b" / "keys"
    done = backup(memory, out, keys_out=keys)
    for directory, names in ((out, {"memvault.db"}), (keys, {"keys.db", "master.key"})):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert {p.name for p in directory.iterdir()} == names | {"manifest.json"}
        for path in directory.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "data" and manifest["tables"]["memories"] == 12
    assert set(manifest["files"]) == {"memvault.db"} and len(manifest["created_at"]) > 10
    assert done["keys"]["master_key_file"] is True
    assert memory.audit.entries(None, limit=1)[0]["action"] == "backup data and keys"
    assert set(done["keys"]["tables"]) == {
        "master_checks",
        "data_keys",
        "key_generations",
        "scope_generations",
    }
    with pytest.raises(InvalidInput, match="--force"):
        backup(memory, out)
    memory.add("one more", user_id="alice")
    again = backup(memory, out, force=True)
    assert again["data"]["tables"]["memories"] == 13
    with pytest.raises(InvalidInput, match="apart"):
        backup(memory, tmp_path / "c", keys_out=tmp_path / "c" / "keys")


def test_a_tampered_backup_is_refused_before_anything_is_written(
    memory: Memory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(memory)
    out, keys = tmp_path / "data", tmp_path / "keys"
    backup(memory, out, keys_out=keys)
    snapshot = out / "memvault.db"
    content = bytearray(snapshot.read_bytes())
    content[len(content) // 2] ^= 0x01
    snapshot.write_bytes(bytes(content))
    target = tmp_path / "target"
    with pytest.raises(IntegrityError, match="SHA-256"):
        restore(Settings.load(home=target), out, keys_dir=keys)
    assert not target.exists()  # refused before the target was touched
    code = _run("restore", str(out), "--keys", str(keys), "--home", str(target))
    assert code == 1 and "[integrity_error]" in capsys.readouterr().err
    (out / "stray.txt").write_text("not ours")
    snapshot.write_bytes(bytes(content[: len(content) // 2]))
    with pytest.raises(IntegrityError):
        restore(Settings.load(home=target), out, keys_dir=keys)


def test_erase_after_backup_stays_shredded_in_the_restored_data(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    with Memory(home, embedder=HashEmbedder()) as memory:
        _fill(memory)
        alice_ids = {row["id"] for row in _view(memory, "alice")}
        kept = {user: _view(memory, user) for user in ("bob", "carol")}
        backup(memory, out)
        memory.erase_user("alice")
    # The backup still holds alice's rows, sealed under a key that no longer exists anywhere.
    with sqlite3.connect(out / "memvault.db") as db:
        held = db.execute("SELECT count(*) FROM memories WHERE user_id = 'alice'").fetchone()[0]
        # Her entity index entries too (keyed hashes; the names are sealed on her rows).
        assert db.execute(
            "SELECT count(*) FROM memory_entities e JOIN memories m ON m.rowid = e.memory_rowid"
            " WHERE m.user_id = 'alice'"
        ).fetchone() == (4,)
    assert held == 4
    # Restored in place of the live data, with the live key store: alice is gone again.
    done = _cli(capsys, "restore", str(out), "--force")
    assert done["keys_from"] is None
    assert done["shredded"]["memories"] == 4 and done["shredded"]["history_events"] == 4
    assert done["shredded"]["key_scopes"] == 1
    with Memory(home, embedder=HashEmbedder()) as memory:
        assert memory.get_all(user_id="alice")["results"] == []
        assert all(memory.get(i) is None for i in alice_ids)
        assert memory.engine.store.user_rows("default", "alice") == (0, 0)
        assert {user: _view(memory, user) for user in ("bob", "carol")} == kept
        # The restored audit chain (as of the backup) verifies, and goes on with the restore.
        assert memory.audit.verify().ok
        assert memory.audit.entries(None, limit=1)[0]["action"] == "restore"
    with sqlite3.connect(home / "memvault.db") as db:
        assert db.execute("SELECT count(*) FROM memories WHERE user_id = 'alice'").fetchone() == (
            0,
        )
        assert db.execute("SELECT count(*) FROM history WHERE user_id = 'alice'").fetchone() == (0,)
        # No entity entry outlives its memory; bob's and carol's still link theirs.
        assert db.execute(
            "SELECT count(*) FROM memory_entities WHERE memory_rowid NOT IN"
            " (SELECT rowid FROM memories)"
        ).fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM memory_entities").fetchone() == (8,)
    with Memory(home, embedder=HashEmbedder()) as memory:
        bobs = _view(memory, "bob")
        related = memory.related(bobs[0]["id"])["results"]
        assert {r["user_id"] for r in related} == {"bob"} and len(related) == 3
        assert related[0]["entities"] == ["Lisbon"]


def test_data_and_keys_backups_restore_a_new_machine_through_the_cli(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Memory(home, embedder=HashEmbedder()) as memory:
        _fill(memory)
        first = memory.get_all(user_id="bob")["results"][0]["id"]
        memory.update(first, "bob changed his mind")
        views = {user: _view(memory, user) for user in USERS}
        history = memory.history(first)
    data, keys = tmp_path / "data", tmp_path / "keys"
    made = _cli(capsys, "backup", str(data), "--keys", str(keys))
    assert made["data"]["tables"]["memories"] == 12 and made["keys"]["tables"]["data_keys"] >= 3
    assert _run("backup", str(keys), "--keys-only") == 2  # exists: refused without --force
    capsys.readouterr()
    _cli(capsys, "backup", str(keys), "--keys-only", "--force")
    new_home = tmp_path / "elsewhere"
    # The data alone cannot be opened on a machine without its keys: refused, nothing written.
    assert _run("restore", str(data), "--home", str(new_home)) == 2
    assert "keys" in capsys.readouterr().err
    done = _cli(capsys, "restore", str(data), "--keys", str(keys), "--home", str(new_home))
    assert done["shredded"]["memories"] == 0 and done["verified_memories"] == 12
    assert (new_home / "master.key").read_bytes() == (home / "master.key").read_bytes()
    with Memory(new_home, embedder=HashEmbedder()) as copy:
        assert {user: _view(copy, user) for user in USERS} == views
        assert copy.history(first) == history
        assert copy.search("likes item", user_id="carol")["results"]
    # A second restore over a store that now holds data needs --force.
    assert _run("restore", str(data), "--keys", str(keys), "--home", str(new_home)) == 2
    assert "not empty" in capsys.readouterr().err


def test_restore_refuses_a_newer_schema_and_a_foreign_master_key(
    memory: Memory, tmp_path: Path
) -> None:
    _fill(memory)
    data, keys = tmp_path / "data", tmp_path / "keys"
    backup(memory, data, keys_out=keys)
    manifest_path = data / "manifest.json"
    original = manifest_path.read_text()
    manifest = json.loads(original)
    manifest["migrations"].append("m999_from_the_future")
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="signed"):  # edited by hand: refused as altered
        restore(Settings.load(home=tmp_path / "one"), data, keys_dir=keys)
    backup_module._sign(manifest, memory.engine.keyring.master)  # as a newer memvault writes it
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(InvalidInput, match="newer"):
        restore(Settings.load(home=tmp_path / "one"), data, keys_dir=keys)
    manifest_path.write_text(original)
    other = tmp_path / "other"
    with Memory(other, embedder=HashEmbedder()):
        pass  # a home with its own master key and an empty store
    with pytest.raises(InvalidConfig, match="another master key"):
        restore(Settings.load(home=other), data, keys_dir=keys)
    with pytest.raises(InvalidInput, match="keys backup"):
        restore(Settings.load(home=other), keys, keys_dir=data)


def test_data_restored_beside_another_stores_keys_is_refused_not_deleted(
    memory: Memory, tmp_path: Path
) -> None:
    _fill(memory)
    data = tmp_path / "data"
    backup(memory, data)
    other = tmp_path / "other"
    with Memory(other, embedder=HashEmbedder()) as stranger:
        stranger.add("a memory of another store", user_id="dora")
        stranger.delete_all(user_id="dora")
    # Signed by another master key than the target's: refused before anything is written.
    with pytest.raises(IntegrityError, match="another store"):
        restore(Settings.load(home=other), data, force=True)
    with sqlite3.connect(other / "memvault.db") as db:
        assert db.execute("SELECT count(*) FROM memories").fetchone()[0] == 0


def test_expired_memories_come_back_and_are_read_back(memory: Memory, tmp_path: Path) -> None:
    added = memory.add("a short-lived note", user_id="alice", expiration_date="2000-01-01")
    memory.add("a lasting note", user_id="alice")
    data, keys = tmp_path / "data", tmp_path / "keys"
    backup(memory, data, keys_out=keys)
    done = restore(Settings.load(home=tmp_path / "new"), data, keys_dir=keys)
    assert done["tables"]["memories"] == 2 and done["verified_memories"] == 2
    with sqlite3.connect(tmp_path / "new" / "memvault.db") as db:
        found = db.execute(
            "SELECT count(*) FROM memories WHERE id = ?", (added["results"][0]["id"],)
        ).fetchone()
    assert found == (1,)


def _rehash(directory: Path) -> None:
    """What anyone who can write a backup directory can do: make its SHA-256s match again."""
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for name, entry in manifest["files"].items():
        content = (directory / name).read_bytes()
        entry["sha256"] = hashlib.sha256(content).hexdigest()
        entry["bytes"] = len(content)
    manifest_path.write_text(json.dumps(manifest))


def test_a_backup_altered_and_rehashed_is_refused_before_anything_is_written(
    memory: Memory, tmp_path: Path
) -> None:
    """The manifest is signed with a key of the master key: a writer of the backup directory
    without it cannot plant a trigger, raise a key's role or add rows, even with fresh
    SHA-256s."""
    _fill(memory)
    reader = memory.api_keys.create("default", "read").info.id
    out = tmp_path / "data"
    backup(memory, out)
    with sqlite3.connect(out / "memvault.db") as db:
        db.execute("UPDATE api_keys SET role = 'admin' WHERE id = ?", (reader,))
        db.execute(
            "CREATE TRIGGER keep_keys BEFORE UPDATE ON api_keys BEGIN SELECT RAISE(IGNORE); END"
        )
    _rehash(out)
    with sqlite3.connect(memory.home / "memvault.db") as db:
        before = db.execute("SELECT role FROM api_keys WHERE id = ?", (reader,)).fetchone()
    with pytest.raises(IntegrityError, match="signed"):
        restore(Settings.load(home=memory.home), out, force=True)
    with sqlite3.connect(memory.home / "memvault.db") as db:
        assert db.execute("SELECT role FROM api_keys WHERE id = ?", (reader,)).fetchone() == before
        assert _triggers(db) == OUR_TRIGGERS  # none planted
    # A manifest without a signature (or with another one) is refused the same way.
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.pop("signature")
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="signed"):
        restore(Settings.load(home=memory.home), out, force=True)


def test_a_symlink_or_a_huge_manifest_in_a_backup_is_refused(
    memory: Memory, tmp_path: Path
) -> None:
    _fill(memory)
    out = tmp_path / "data"
    backup(memory, out)
    moved = tmp_path / "elsewhere.db"
    (out / "memvault.db").rename(moved)
    (out / "memvault.db").symlink_to(moved)
    with pytest.raises(IntegrityError, match="link"):
        restore(Settings.load(home=tmp_path / "new"), out)
    (out / "memvault.db").unlink()
    moved.rename(out / "memvault.db")
    manifest_path = out / "manifest.json"
    manifest_path.write_text(manifest_path.read_text() + " " * (2 << 20))
    with pytest.raises(IntegrityError, match="too large"):
        restore(Settings.load(home=tmp_path / "new"), out)


def test_a_file_swapped_in_the_backup_after_the_checks_is_not_what_is_restored(
    memory: Memory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer of the backup directory who swaps a file between restore's checks and its
    writes (a race) restores nothing of theirs: restore reads only the copies it checked."""
    _fill(memory)
    out, keys = tmp_path / "data", tmp_path / "keys"
    backup(memory, out, keys_out=keys)
    planted = tmp_path / "planted.db"
    planted.write_bytes((out / "memvault.db").read_bytes())
    with sqlite3.connect(planted) as db:
        db.execute("CREATE TRIGGER keep BEFORE DELETE ON memories BEGIN SELECT RAISE(IGNORE); END")
    checked = backup_module._check_data_target

    def swap_then_check(*args: Any) -> tuple[str, ...]:
        (out / "memvault.db").write_bytes(planted.read_bytes())
        return checked(*args)

    monkeypatch.setattr(backup_module, "_check_data_target", swap_then_check)
    target = tmp_path / "target"
    done = restore(Settings.load(home=target), out, keys_dir=keys)
    assert done["verified_memories"] == 12
    with sqlite3.connect(target / "memvault.db") as db:
        assert _triggers(db) == OUR_TRIGGERS  # none planted
