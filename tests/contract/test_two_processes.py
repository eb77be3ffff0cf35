"""Two processes on one store, on every backend: caches of keys, scope versions and decrypted data
are checked against the store, so another process's erase, rotation or update is seen at once.

This process keeps a ``Memory`` open (alice's key and vector index cached) while the real
``memvault`` console script changes alice's data in another process, over the same SQLite home
or the same Postgres database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import memvault
from memvault import Memory
from tests.netguard import pythonpath

_SCRIPT = str(Path(sys.executable).parent / "memvault")


def _cli(home: Path, database_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    src = str(Path(memvault.__file__).resolve().parents[1])  # the code under test
    env = {
        **os.environ,
        "MEMVAULT_HOME": str(home),
        "MEMVAULT_EMBEDDER": "hash",
        "PYTHONPATH": pythonpath(src),
    }
    if database_url is not None:
        env["MEMVAULT_DATABASE_URL"] = database_url
    done = subprocess.run([_SCRIPT, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_erase_elsewhere_then_write_here(
    open_memory: Callable[..., Memory], home: Path, database_url: str | None
) -> None:
    """The issue's live bug: the erasing process destroyed alice's key; this one must not keep
    writing under its cached copy (nobody could read those rows afterwards)."""
    server = open_memory()
    server.add("alice old fact about kites", user_id="alice")
    assert server.search("kites", user_id="alice")["results"]  # key and index cached
    _cli(home, database_url, "user", "erase", "alice", "--yes")
    added = server.add("alice new fact about boats", user_id="alice")["results"][0]
    assert added["event"] == "ADD"
    assert [r["memory"] for r in server.get_all(user_id="alice")["results"]] == [
        "alice new fact about boats"
    ]
    assert server.search("boats", user_id="alice")["results"][0]["id"] == added["id"]
    found = _cli(home, database_url, "search", "boats", "--user", "alice", "--json")
    assert [h["memory"] for h in json.loads(found.stdout)["results"]] == [
        "alice new fact about boats"
    ]
    assert open_memory().get(added["id"])["memory"] == "alice new fact about boats"


def test_erase_and_re_add_elsewhere_is_seen_by_a_cached_index(
    open_memory: Callable[..., Memory], home: Path, database_url: str | None
) -> None:
    """Versions only grow, so an index cached before an erase never looks current after it."""
    reader = open_memory()
    reader.add("alice erased fact about kites", user_id="alice")
    assert reader.search("kites", user_id="alice")["results"]
    _cli(home, database_url, "user", "erase", "alice", "--yes")
    _cli(home, database_url, "add", "alice re-added fact about kites", "--user", "alice")
    hits = [h["memory"] for h in reader.search("kites", user_id="alice")["results"]]
    assert hits == ["alice re-added fact about kites"]


def test_update_elsewhere_is_seen_by_search_and_history(
    open_memory: Callable[..., Memory], home: Path, database_url: str | None
) -> None:
    reader = open_memory()
    memory_id = reader.add("alice drinks green tea", user_id="alice")["results"][0]["id"]
    assert reader.search("tea", user_id="alice")["results"][0]["memory"] == "alice drinks green tea"
    _cli(home, database_url, "update", memory_id, "alice drinks black coffee")
    hits = reader.search("coffee", user_id="alice", mode="bm25")["results"]
    assert [h["memory"] for h in hits] == ["alice drinks black coffee"]
    assert [e["event"] for e in reader.history(memory_id)] == ["ADD", "UPDATE"]
    assert reader.history(memory_id)[1]["old_memory"] == "alice drinks green tea"


def test_rotation_elsewhere_while_this_process_reads_and_writes(
    open_memory: Callable[..., Memory], home: Path, database_url: str | None
) -> None:
    m = open_memory()
    items = [{"messages": f"alice fact {i} about kites", "user_id": "alice"} for i in range(300)]
    ids = [r["id"] for r in m.add_many(items)["results"]]
    failures: list[BaseException] = []
    stop = threading.Event()

    def keep_reading() -> None:
        while not stop.is_set():
            try:
                assert m.get(ids[7])["memory"] == "alice fact 7 about kites"
                assert len(m.search("kites", user_id="alice", top_k=5)["results"]) == 5
            except BaseException as exc:  # noqa: BLE001 -- reported below, after the rotation
                failures.append(exc)
                return

    reading = threading.Thread(target=keep_reading)
    reading.start()
    try:
        _cli(home, database_url, "user", "rotate-key", "alice")
        added = m.add("alice fact after rotation", user_id="alice")["results"][0]
    finally:
        stop.set()
        reading.join(timeout=60)
    assert not failures, failures
    assert len(m.get_all(user_id="alice", top_k=1000)["results"]) == 301
    assert open_memory().get(added["id"])["memory"] == "alice fact after rotation"
