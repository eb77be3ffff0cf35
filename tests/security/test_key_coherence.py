"""Two processes on one home: caches of keys, versions and decrypted data never outlive the store.

Each test keeps a ``Memory`` open in this process (its key ciphers and alice's vector index
cached) while the real ``memvault`` console script changes alice's keys in another process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import memvault
from memvault import HashEmbedder, Memory
from tests.netguard import pythonpath

_SCRIPT = str(Path(sys.executable).parent / "memvault")


def _env(home: Path) -> dict[str, str]:
    src = str(Path(memvault.__file__).resolve().parents[1])  # the code under test, not a copy
    return {
        **os.environ,
        "MEMVAULT_HOME": str(home),
        "MEMVAULT_EMBEDDER": "hash",
        "PYTHONPATH": pythonpath(src),
    }


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [_SCRIPT, *args], env=_env(home), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done


def _fresh_search(home: Path, query: str) -> list[str]:
    found = _cli(home, "search", query, "--user", "alice", "--json")
    return [hit["memory"] for hit in json.loads(found.stdout)["results"]]


def test_a_process_writes_under_a_live_key_after_another_erased_the_user(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as server:
        server.add("alice old fact about kites", user_id="alice")
        assert server.search("kites", user_id="alice")["results"]  # key and index cached
        _cli(home, "user", "erase", "alice", "--yes")
        added = server.add("alice new fact about boats", user_id="alice")["results"][0]
        assert added["event"] == "ADD"
        listed = server.get_all(user_id="alice")["results"]
        assert [r["memory"] for r in listed] == ["alice new fact about boats"]
        assert server.search("boats", user_id="alice")["results"][0]["id"] == added["id"]
        assert _fresh_search(home, "boats") == ["alice new fact about boats"]
    with Memory(home, embedder=HashEmbedder()) as restarted:
        assert restarted.get(added["id"])["memory"] == "alice new fact about boats"


def test_a_cached_index_sees_an_erase_and_re_add_by_another_process(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as reader:
        reader.add("alice erased fact about kites", user_id="alice")
        assert reader.search("kites", user_id="alice")["results"]  # alice's index is cached
        _cli(home, "user", "erase", "alice", "--yes")
        _cli(home, "add", "alice re-added fact about kites", "--user", "alice")
        hits = [h["memory"] for h in reader.search("kites", user_id="alice")["results"]]
        assert hits == ["alice re-added fact about kites"]


def test_rotation_in_another_process_while_this_one_adds_and_searches(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        items = [
            {"messages": f"alice fact {i} about kites", "user_id": "alice"} for i in range(2000)
        ]
        ids = [r["id"] for r in m.add_many(items)["results"]]
        rotation = subprocess.Popen(
            [_SCRIPT, "user", "rotate-key", "alice"],
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        during = 0
        deadline = time.monotonic() + 120
        while rotation.poll() is None and time.monotonic() < deadline:
            added = m.add(f"alice concurrent note {during}", user_id="alice")["results"][0]
            ids.append(added["id"])
            assert m.search(f"concurrent note {during}", user_id="alice")["results"]
            during += 1
        _, err = rotation.communicate(timeout=60)
        assert rotation.returncode == 0, err
        assert during > 0
        assert len(m.get_all(user_id="alice", top_k=100_000)["results"]) == len(ids)
        assert m.get(ids[-1])["memory"] == f"alice concurrent note {during - 1}"
    with Memory(home, embedder=HashEmbedder()) as fresh:
        rows = fresh.get_all(user_id="alice", top_k=100_000)["results"]
        assert {r["id"] for r in rows} == set(ids)
        assert fresh.search("alice fact 1234", user_id="alice")["results"][0]["memory"] == (
            "alice fact 1234 about kites"
        )


def test_reset_moves_every_key_scope_to_a_new_generation(home: Path) -> None:
    """Another ``Memory`` (its own key and index caches) resets the namespace: this one's next
    write uses a new key that everyone can read, and its cached index is not taken as current."""
    with Memory(home, embedder=HashEmbedder()) as first:
        first.add("alice fact before reset", user_id="alice")
        first.add("agent fact before reset", agent_id="bot")
        assert first.search("fact", user_id="alice")["results"]
        with Memory(home, embedder=HashEmbedder()) as other:
            other.reset()
        added = first.add("alice fact after reset", user_id="alice")["results"][0]
        first.add("agent fact after reset", agent_id="bot")
        assert [h["memory"] for h in first.search("fact", user_id="alice")["results"]] == [
            "alice fact after reset"
        ]
        assert [h["memory"] for h in first.search("fact", agent_id="bot")["results"]] == [
            "agent fact after reset"
        ]
    with Memory(home, embedder=HashEmbedder()) as fresh:
        assert fresh.get(added["id"])["memory"] == "alice fact after reset"
