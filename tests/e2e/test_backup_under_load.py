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
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memvault import HashEmbedder, Memory
from memvault.config import Settings
from memvault.core.backup import backup, restore

WRITERS = 4


@dataclass
class Write:
    kind: str  # add, batch, update, delete
    started: float
    changes: dict[str, str | None]  # id -> new text (None: deleted)
    acknowledged: float = 0.0


@dataclass(eq=False)
class Writer(threading.Thread):
    memory: Memory
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
                    added = self.memory.add(text, user_id=self.user)["results"][0]
                    write = Write("add", started, {added["id"]: text})
                elif step == 3:
                    items = [
                        {"messages": f"{text} (batch {i})", "user_id": self.user} for i in range(3)
                    ]
                    done = self.memory.add_many(items)["results"]
                    write = Write(
                        "batch",
                        started,
                        {r["id"]: item["messages"] for r, item in zip(done, items, strict=True)},
                    )
                elif step == 5:
                    memory_id = sorted(live)[n % len(live)]
                    self.memory.update(memory_id, f"{text} (updated)")
                    write = Write("update", started, {memory_id: f"{text} (updated)"})
                else:
                    memory_id = sorted(live)[n % len(live)]
                    self.memory.delete(memory_id)
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


def _wait_for(condition: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_backup_under_concurrent_writes_restores_one_consistent_moment(
    home: Path, tmp_path: Path
) -> None:
    data_dir, keys_dir, new_home = tmp_path / "data", tmp_path / "keys", tmp_path / "restored"
    with Memory(home, embedder=HashEmbedder()) as memory:
        writers = [Writer(memory, n) for n in range(WRITERS)]
        for writer in writers:
            writer.start()
        try:
            # Some history first, so that the snapshot has pages to copy while writes go on.
            _wait_for(lambda: all(len(w.log) >= 60 for w in writers), "writers too slow")
            assert all(w.failure is None for w in writers), [w.failure for w in writers]
            began = time.monotonic()
            made = backup(memory, data_dir, keys_out=keys_dir)
            ended = time.monotonic()
            counts = [len(w.log) for w in writers]
            # The writers were never blocked for good: each goes on after the snapshot.
            _wait_for(
                lambda: all(len(w.log) > c + 5 for w, c in zip(writers, counts, strict=True)),
                "writers stalled by the backup",
            )
        finally:
            for writer in writers:
                writer.stop.set()
            for writer in writers:
                writer.join(timeout=60)
        assert all(w.failure is None for w in writers), [w.failure for w in writers]

    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["tables"] == made["data"]["tables"]
    with sqlite3.connect(data_dir / "memvault.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        in_file = db.execute("SELECT count(*) FROM memories").fetchone()[0]
    assert manifest["tables"]["memories"] == in_file

    restored = restore(Settings.load(home=new_home), data_dir, keys_dir=keys_dir)
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
