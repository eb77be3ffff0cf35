"""``memvault migrate`` and ``memvault db status``: SQLite -> Postgres -> SQLite, interrupted runs,
refused targets, and the real process's exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memvault import HashEmbedder, Memory
from memvault.clock import now_iso
from memvault.core.transfer import migrate_store, parse_target
from memvault.errors import InvalidConfig, InvalidInput, StorageError
from memvault.security.audit import AuditEntry
from memvault.storage.base import DATA_TABLES, KEY_TABLES
from memvault.testing import ScriptedChatServer


def run(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "MEMVAULT_HOME": str(home), "MEMVAULT_EMBEDDER": "hash", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "memvault", *args],
        env=environ,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )


def _fill(home: Path, **options: Any) -> dict[str, Any]:
    """A few users, metadata, an update, a deleted memory, an API key and audit entries."""
    with Memory(home, embedder=HashEmbedder(), **options) as memory:
        alice = memory.add("Alice drinks green tea", user_id="alice", metadata={"kind": "taste"})
        memory.add("Alice lives in Lisbon", user_id="alice", metadata={"kind": "place"})
        bob = memory.add("Bob plays the cello", user_id="bob", agent_id="coach")
        gone = memory.add("Carol is allergic to nuts", user_id="carol")
        other = memory.namespaced("acme").add("Dan runs marathons", user_id="dan")
        tea = alice["results"][0]["id"]
        memory.update(tea, "Alice drinks jasmine tea", {"kind": "taste", "since": 2024})
        deleted = gone["results"][0]["id"]
        memory.delete(deleted)
        key = memory.api_keys.create(memory.namespace, "write", name="ci", user_id="alice")
        memory.audit.append(
            [AuditEntry(action=f"test {i}", outcome="ok", source="test") for i in range(3)]
        )
        memory.audit.flush()
        return {
            "tea": tea,
            "bob": bob["results"][0]["id"],
            "deleted": deleted,
            "dan": other["results"][0]["id"],
            "key": key.key,
        }


def _check(home: Path, made: dict[str, Any], **options: Any) -> None:
    with Memory(home, embedder=HashEmbedder(), **options) as memory:
        tea = memory.get(made["tea"])
        assert tea is not None and tea["memory"] == "Alice drinks jasmine tea"
        assert tea["metadata"] == {"kind": "taste", "since": 2024}
        assert [e["event"] for e in memory.history(made["tea"])] == ["ADD", "UPDATE"]
        assert memory.get(made["deleted"]) is None
        assert [e["event"] for e in memory.history(made["deleted"])] == ["ADD", "DELETE"]
        assert memory.namespaced("acme").get(made["dan"]) is not None
        assert memory.api_keys.authenticate(made["key"]).user_id == "alice"
        assert memory.audit.verify().ok
        found = memory.search("what does alice drink?", user_id="alice")["results"]
        assert found and found[0]["id"] == made["tea"]
        assert memory.get_all(user_id="bob", agent_id="coach")["results"][0]["id"] == made["bob"]
        # Entity links move with their rows (sealed names, keyed hashes, the index rebuilt).
        [linked] = memory.related(made["tea"])["results"]
        assert linked["memory"] == "Alice lives in Lisbon" and linked["entities"] == ["Alice"]
        assert {"name": "Alice", "memories": 2} in memory.entities(user_id="alice")["results"]
        assert memory.entities(user_id="bob")["results"] == [{"name": "Bob", "memories": 1}]


def _counts(memory: Memory) -> dict[str, int]:
    data, keys = memory._store, memory._keyring.store
    return {
        **{t: data.count_rows(t) for t in DATA_TABLES},
        **{t: keys.count_rows(t) for t in KEY_TABLES},
    }


def test_round_trip_sqlite_postgres_sqlite(home: Path, pg_url: str, tmp_path: Path) -> None:
    made = _fill(home)
    with Memory(home, embedder=HashEmbedder()) as source:
        before = _counts(source)
        summary = migrate_store(source, parse_target(pg_url))
    assert summary["verified_memories"] >= 5
    assert all(c["source"] == c["target"] for c in summary["tables"].values())
    _check(home, made, database_url=pg_url)

    back = tmp_path / "back"
    with Memory(home, embedder=HashEmbedder(), database_url=pg_url) as source:
        assert _counts(source) == before
        migrate_store(source, parse_target(f"sqlite:{back}"))
    _check(back, made)
    with Memory(back, embedder=HashEmbedder()) as copy:
        assert _counts(copy) == before
        # erase on the copy works, and only there
        erased = copy.erase_user("alice")
        assert erased["memories_deleted"] == 2
        assert copy.get(made["tea"]) is None
    _check(home, made)


def test_interrupted_migration_resumes_without_duplicates(home: Path, pg_url: str) -> None:
    made = _fill(home)
    target = parse_target(pg_url)
    with Memory(home, embedder=HashEmbedder()) as source:
        with pytest.raises(StorageError, match="interrupted"):
            migrate_store(source, target, batch_size=1, fail_after_batches=9)
        with pytest.raises(StorageError, match="interrupted"):
            migrate_store(source, target, batch_size=2, fail_after_batches=12)
        summary = migrate_store(source, target, batch_size=2)
        before = _counts(source)
    tables = summary["tables"]
    assert sum(c["already_there"] for c in tables.values()) > 0
    assert all(c["source"] == c["target"] for c in tables.values())
    with Memory(home, embedder=HashEmbedder(), database_url=pg_url) as copy:
        assert _counts(copy) == before
    _check(home, made, database_url=pg_url)


def test_a_target_holding_another_store_is_refused(home: Path, tmp_path: Path) -> None:
    _fill(home)
    other = tmp_path / "other"
    with Memory(other, embedder=HashEmbedder()) as stranger:
        stranger.add("someone else's store", user_id="eve")
    with Memory(home, embedder=HashEmbedder()) as source:
        with pytest.raises(InvalidConfig, match="another master key"):
            migrate_store(source, parse_target(f"sqlite:{other}"))
        with pytest.raises(InvalidInput, match="source store itself"):
            migrate_store(source, parse_target(f"sqlite:{home}"))
    with pytest.raises(InvalidInput):
        parse_target("mysql://somewhere/db")


def test_same_master_key_but_another_store_is_refused(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    monkeypatch.setenv("MEMVAULT_MASTER_KEY", base64.b64encode(b"k" * 32).decode())
    _fill(home)
    other = tmp_path / "other"
    with Memory(other, embedder=HashEmbedder()) as stranger:
        stranger.add("someone else's store", user_id="eve")
    with Memory(home, embedder=HashEmbedder()) as source:
        with pytest.raises(InvalidConfig, match="another"):
            migrate_store(source, parse_target(f"sqlite:{other}"))


def test_cli_db_status_and_migrate_through_the_process(
    home: Path, pg_url: str, tmp_path: Path
) -> None:
    made = _fill(home)
    status = run(home, "db", "status", "--json")
    assert status.returncode == 0, status.stderr
    local = json.loads(status.stdout)
    assert local["backend"] == "sqlite" and local["memories"] == 4
    assert local["schema_version"] == local["migrations"][-1]
    assert local["key_store"]["data_keys"] > 0

    bad = run(home, "migrate", "--to", "ftp://nowhere")
    assert bad.returncode == 2 and "invalid_input" in bad.stderr

    # interrupted through the hidden test hook, then resumed
    broken = run(home, "migrate", "--to", pg_url, "--batch-size", "1", "--fail-after-batches", "5")
    assert broken.returncode == 1 and "storage_error" in broken.stderr
    done = run(home, "migrate", "--to", pg_url, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["tables"]["memories"] == {
        "source": 4,
        "copied": summary["tables"]["memories"]["copied"],
        "already_there": 4 - summary["tables"]["memories"]["copied"],
        "target": 4,
    }
    assert summary["tables"]["history"]["target"] == local["history_events"]

    remote = run(home, "db", "status", "--json", env={"MEMVAULT_DATABASE_URL": pg_url})
    assert remote.returncode == 0, remote.stderr
    pg = json.loads(remote.stdout)
    assert pg["backend"] == "postgres" and pg["memories"] == 4
    assert pg["history_events"] == local["history_events"]
    assert pg["key_store"]["data_keys"] == local["key_store"]["data_keys"]
    text = run(home, "db", "status", env={"MEMVAULT_DATABASE_URL": pg_url})
    assert text.returncode == 0 and "postgres" in text.stdout

    back = tmp_path / "back"
    home_again = run(
        home, "migrate", "--to", f"sqlite:{back}", env={"MEMVAULT_DATABASE_URL": pg_url}
    )
    assert home_again.returncode == 0, home_again.stderr
    assert "verified" in home_again.stdout
    _check(back, made)

    stranger = tmp_path / "stranger"
    with Memory(stranger, embedder=HashEmbedder()) as other:
        other.add("another store", user_id="eve")
    refused = run(home, "migrate", "--to", f"sqlite:{stranger}")
    assert refused.returncode == 2 and "invalid_config" in refused.stderr


def test_jobs_move_with_the_store_and_queued_ones_run_there(home: Path, pg_url: str) -> None:
    """A done, a dead and a queued job: each is copied as it is, still sealed; the queued
    ``infer=True`` add runs on the target, the dead one can be retried there."""

    def extract(body: dict[str, Any]) -> str:
        fact = "Alice likes green tea" if "green tea" in json.dumps(body) else "Bob plays chess"
        return json.dumps({"facts": [{"text": fact, "type": "semantic"}]})

    def echo(payload: dict[str, Any]) -> dict[str, Any]:
        return {"results": [], "echo": payload["messages"]}

    with ScriptedChatServer(default=extract) as chat:
        llm = {"llm_base_url": chat.base_url, "llm_model": "scripted", "job_poll_seconds": 0.05}
        with Memory(home, embedder=HashEmbedder(), async_mode=True, **llm) as source:
            done = source.add("an earlier message", user_id="bob", infer=True)["job"]["id"]
            source.start_jobs(1, handler=echo)
            _wait(lambda: source.job(done)["status"] == "done")
            source.stop_jobs()
            dead = source.add("I play chess", user_id="bob", infer=True)["job"]["id"]
            store = source.engine.store
            assert store.claim("w", "9999-01-01T00:00:00Z", now_iso()) is not None
            assert store.fail(dead, "w", "llm_unreachable", None, now_iso())
            queued = source.add("I love green tea", user_id="alice", infer=True)["job"]["id"]
            shown = source.jobs()["results"]
            summary = migrate_store(source, parse_target(pg_url))
            again = migrate_store(source, parse_target(pg_url))  # resumable: nothing doubled
        assert summary["tables"]["jobs"] == {
            "source": 3,
            "copied": 3,
            "already_there": 0,
            "target": 3,
        }
        assert summary["verified_jobs"] == 3
        assert again["tables"]["jobs"]["already_there"] == 3
        with Memory(home, embedder=HashEmbedder(), database_url=pg_url, **llm) as copy:
            assert copy.jobs()["results"] == shown
            assert copy.job(done)["result"] == {"results": [], "echo": "an earlier message"}
            copy.start_jobs(1)
            _wait(lambda: copy.job(queued)["status"] == "done")
            assert copy.retry_job(dead)["status"] == "queued"
            _wait(lambda: copy.job(dead)["status"] == "done")
            assert [r["memory"] for r in copy.get_all(user_id="alice")["results"]] == [
                "Alice likes green tea"
            ]
            assert "Bob plays chess" in [
                r["memory"] for r in copy.get_all(user_id="bob")["results"]
            ]


def _wait(check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
