"""``backup`` while concurrent writers add, batch-add, update and delete, then ``restore`` into a
fresh home: the copy is one consistent moment of the store.

Each writer thread owns a user and logs every write it makes (what, when it started, when it was
acknowledged). A snapshot taken while they run must equal, for every writer, the state after a
*prefix* of its log: at least every write acknowledged before the backup started, at most those
started before it returned, and never half of one (a batch is there whole or not at all; an
update is the new text or the old one, with the history event that goes with it).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from memvault import HashEmbedder, Memory
from memvault.config import Settings
from memvault.core.backup import backup, restore
from tests.e2e.test_load import load
from tests.polling import wait_for

WRITERS = 4
bench = load  # bench/load.py: its ``serve`` starts ``memvault serve`` on a free loopback port


@dataclass
class Write:
    kind: str  # add, batch, update, delete
    started: float
    changes: dict[str, str | None]  # id -> new text (None: deleted)
    acknowledged: float = 0.0


class LibraryWrites:
    """The writes a writer makes, through a ``Memory`` in this process."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory

    def add(self, text: str, user: str) -> str:
        return str(self.memory.add(text, user_id=user)["results"][0]["id"])

    def add_many(self, texts: list[str], user: str) -> list[str]:
        done = self.memory.add_many([{"messages": t, "user_id": user} for t in texts])
        return [r["id"] for r in done["results"]]

    def update(self, memory_id: str, text: str) -> None:
        self.memory.update(memory_id, text)

    def delete(self, memory_id: str) -> None:
        self.memory.delete(memory_id)


class RestWrites:
    """The same writes over HTTP, each writer with a keep-alive connection of its own."""

    def __init__(self, base: str, key: str) -> None:
        self.http = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )

    def _ok(self, response: httpx.Response) -> Any:
        assert response.status_code == 200, response.text
        return response.json()

    def add(self, text: str, user: str) -> str:
        answer = self._ok(self.http.post("/v1/memories/", json={"messages": text, "user_id": user}))
        return str(answer["results"][0]["id"])

    def add_many(self, texts: list[str], user: str) -> list[str]:
        items = [{"messages": t, "user_id": user} for t in texts]
        answer = self._ok(self.http.post("/v1/memories/batch/", json={"items": items}))
        return [r["id"] for r in answer["results"]]

    def update(self, memory_id: str, text: str) -> None:
        self._ok(self.http.put(f"/v1/memories/{memory_id}/", json={"text": text}))

    def delete(self, memory_id: str) -> None:
        self._ok(self.http.delete(f"/v1/memories/{memory_id}/"))


@dataclass(eq=False)
class Writer(threading.Thread):
    api: LibraryWrites | RestWrites
    number: int
    log: list[Write] = field(default_factory=list)
    failure: BaseException | None = None

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.user = f"writer{self.number}"

    def run(self) -> None:
        live: dict[str, str] = {}
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                text = f"{self.user} wrote note {n} about topic {n * 13 % 97}"
                started = time.monotonic()
                step = n % 7
                if step in (1, 2, 4) or len(live) < 5:
                    write = Write("add", started, {self.api.add(text, self.user): text})
                elif step == 3:
                    texts = [f"{text} (batch {i})" for i in range(3)]
                    ids = self.api.add_many(texts, self.user)
                    write = Write("batch", started, dict(zip(ids, texts, strict=True)))
                elif step == 5:
                    memory_id = sorted(live)[n % len(live)]
                    self.api.update(memory_id, f"{text} (updated)")
                    write = Write("update", started, {memory_id: f"{text} (updated)"})
                else:
                    memory_id = sorted(live)[n % len(live)]
                    self.api.delete(memory_id)
                    write = Write("delete", started, {memory_id: None})
                write.acknowledged = time.monotonic()
                self.log.append(write)
                for memory_id, new in write.changes.items():
                    if new is None:
                        live.pop(memory_id)
                    else:
                        live[memory_id] = new
        except BaseException as exc:  # noqa: BLE001  (handed to the test, which fails on it)
            self.failure = exc


def _states(log: list[Write]) -> list[dict[str, str]]:
    """The writer's memories after each prefix of its log (index k: after k writes)."""
    state: dict[str, str] = {}
    states = [dict(state)]
    for write in log:
        for memory_id, new in write.changes.items():
            if new is None:
                state.pop(memory_id, None)
            else:
                state[memory_id] = new
        states.append(dict(state))
    return states


def _run_writers(writers: list[Writer], take_backup: Any) -> tuple[float, float]:
    """Start the writers, take the backup once each has a history, and let them go on after
    it; returns when the backup began and when it returned."""
    for writer in writers:
        writer.start()
    try:
        # Some history first, so that the snapshot has pages to copy while writes go on.
        wait_for(lambda: all(len(w.log) >= 40 for w in writers) or _failed(writers), 60, "slow")
        assert not _failed(writers), [w.failure for w in writers]
        began = time.monotonic()
        take_backup()
        ended = time.monotonic()
        counts = [len(w.log) for w in writers]
        # The writers were never blocked for good: each goes on after the snapshot.
        wait_for(
            lambda: (
                all(len(w.log) > c + 5 for w, c in zip(writers, counts, strict=True))
                or _failed(writers)
            ),
            60,
            "writers stalled by the backup",
        )
    finally:
        for writer in writers:
            writer.stop.set()
        for writer in writers:
            writer.join(timeout=60)
    assert not _failed(writers), [w.failure for w in writers]
    return began, ended


def _failed(writers: list[Writer]) -> bool:
    return any(w.failure is not None for w in writers)


def _check_backup(data_dir: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((data_dir / "manifest.json").read_text())
    with sqlite3.connect(data_dir / "memvault.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        in_file = db.execute("SELECT count(*) FROM memories").fetchone()[0]
    assert manifest["tables"]["memories"] == in_file
    return manifest


def _check_restored(
    restored: dict[str, Any],
    manifest: dict[str, Any],
    new_home: Path,
    writers: list[Writer],
    began: float,
    ended: float,
) -> None:
    assert restored["shredded"]["memories"] == 0
    # Every table restored holds what the manifest counted in the snapshot (the audit log one
    # entry more: the restore's own).
    expected = {t: manifest["tables"][t] for t in restored["tables"]}
    expected["audit_log"] += 1
    assert restored["tables"] == expected
    assert restored["tables"]["history"] > restored["tables"]["memories"] > 0
    assert restored["verified_memories"] > 0
    with sqlite3.connect(new_home / "memvault.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    with Memory(new_home, embedder=HashEmbedder()) as copy:
        assert copy.audit.verify().ok  # the chain as of the backup, then the restore entry
        total = 0
        for writer in writers:
            rows = copy.get_all(user_id=writer.user, top_k=100_000)["results"]
            found = {row["id"]: row["memory"] for row in rows}
            total += len(found)
            states = _states(writer.log)
            before = sum(1 for w in writer.log if w.acknowledged < began)
            started = sum(1 for w in writer.log if w.started < ended)
            # One prefix of this writer's log, between what it had acknowledged when the
            # backup began and what it had started when the backup returned.
            cuts = [k for k in range(before, started + 1) if states[k] == found]
            assert cuts, (writer.user, before, started, len(found))
            for memory_id, text in found.items():
                # Each memory with the history event that made its text: no half-applied write.
                events = copy.history(memory_id)
                assert events and events[-1]["new_memory"] == text, (memory_id, events[-1:])
                assert events[-1]["event"] in ("ADD", "UPDATE")
        assert total == manifest["tables"]["memories"]


def test_backup_under_concurrent_writes_restores_one_consistent_moment(
    home: Path, tmp_path: Path
) -> None:
    data_dir, keys_dir, new_home = tmp_path / "data", tmp_path / "keys", tmp_path / "restored"
    made: dict[str, Any] = {}
    with Memory(home, embedder=HashEmbedder()) as memory:
        writers = [Writer(LibraryWrites(memory), n) for n in range(WRITERS)]
        began, ended = _run_writers(
            writers, lambda: made.update(backup(memory, data_dir, keys_out=keys_dir))
        )
    manifest = _check_backup(data_dir)
    assert manifest["tables"] == made["data"]["tables"]
    restored = restore(Settings.load(home=new_home), data_dir, keys_dir=keys_dir)
    _check_restored(restored, manifest, new_home, writers, began, ended)


def test_cli_backup_of_a_serving_store_under_concurrent_rest_writers(tmp_path: Path) -> None:
    """The same with every part real: ``memvault serve`` on 127.0.0.1, writers over HTTP, and
    ``memvault backup`` / ``memvault restore`` as processes of their own."""
    home, data_dir, keys_dir = tmp_path / "home", tmp_path / "data", tmp_path / "keys"
    new_home = tmp_path / "restored"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVAULT_")}
    env["MEMVAULT_EMBEDDER"] = "hash"

    def cli(*args: str, at: Path) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "memvault", *args, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**env, "MEMVAULT_HOME": str(at), "COLUMNS": "10000"},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return dict(json.loads(done.stdout))

    with bench.serve("hash", home=home) as server:
        writers = [Writer(RestWrites(server.base, server.key), n) for n in range(WRITERS)]
        try:
            began, ended = _run_writers(
                writers, lambda: cli("backup", str(data_dir), "--keys", str(keys_dir), at=home)
            )
        finally:
            for writer in writers:
                assert isinstance(writer.api, RestWrites)
                writer.api.http.close()
    manifest = _check_backup(data_dir)
    restored = cli("restore", str(data_dir), "--keys", str(keys_dir), at=new_home)
    _check_restored(restored, manifest, new_home, writers, began, ended)
