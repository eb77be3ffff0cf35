"""A crash loses nothing that was acknowledged: kill -9 a writer mid-stream, then reopen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from memvault import HashEmbedder, Memory
from memvault.errors import NotFound

WRITER = textwrap.dedent(
    """
    import sys
    from memvault import HashEmbedder, Memory
    m = Memory(sys.argv[1], embedder=HashEmbedder())
    for i in range(100000):
        if i % 2:
            result = m.add(f"single write {i}", user_id="crash")
        else:
            result = m.add_many([{"messages": f"batch {i} item {j}", "user_id": "crash"} for j in range(20)])
        print(" ".join(r["id"] for r in result["results"]), flush=True)
    """
)


def test_kill_minus_nine_keeps_every_acknowledged_write(home: Path) -> None:
    env = {**os.environ, "MEMVAULT_HOME": str(home)}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert writer.stdout is not None
    acknowledged: list[str] = []
    for _ in range(60):
        line = writer.stdout.readline()
        assert line, "the writer died on its own"
        acknowledged.extend(line.split())
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    writer.stdout.close()
    with Memory(home, embedder=HashEmbedder()) as m:
        stored = {x["id"] for x in m.get_all(user_id="crash", top_k=100_000)["results"]}
        assert set(acknowledged) <= stored
        # Nothing half-written either: every stored row opens and is searchable.
        assert m.search("batch item", user_id="crash", top_k=5)["results"]


ERASER = textwrap.dedent(
    """
    import os, signal, sys
    from memvault import HashEmbedder, Memory
    from memvault.storage.sqlite.store import SQLiteTx
    m = Memory(sys.argv[1], embedder=HashEmbedder())
    # Die where a crash can cut an erase: the data key is destroyed (keys.db committed), the
    # rows are not deleted yet (memvault.db's transaction never commits).
    SQLiteTx.delete_user = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
    print("erasing", flush=True)
    m.erase_user("alice")
    """
)


def test_an_erase_cut_between_its_two_steps_is_finished_not_left_unreadable(home: Path) -> None:
    """Keys and rows are two databases: a kill between the key's destruction and the rows'
    deletion left rows no key opens, and every read of the user answered integrity_error for
    good. The next read now finishes the erase (the rows of a past key generation go), in the
    process that was running as well as in a new one."""
    with Memory(home, embedder=HashEmbedder()) as m:
        first = m.add("alice likes green tea", user_id="alice")["results"][0]["id"]
        m.add("alice has a cat", user_id="alice")
        m.add("bob likes coffee", user_id="bob")
        env = {**os.environ, "MEMVAULT_HOME": str(home)}
        cut = subprocess.run(
            [sys.executable, "-c", ERASER, str(home)], capture_output=True, text=True, env=env
        )
        assert cut.returncode == -signal.SIGKILL and cut.stdout == "erasing\n", cut.stderr
        assert m.history(first) == []  # this process, still running, reads past the cut
        assert m.get_all(user_id="alice")["results"] == []
        assert m.search("tea", user_id="alice")["results"] == []
        assert [r["memory"] for r in m.get_all(user_id="bob")["results"]] == ["bob likes coffee"]
        # Nothing of alice is left: her memories, their history and her key are gone.
        with pytest.raises(NotFound):
            m.erase_user("alice")
        m.add("alice is back", user_id="alice")
    with Memory(home, embedder=HashEmbedder()) as m:
        assert [r["memory"] for r in m.get_all(user_id="alice")["results"]] == ["alice is back"]


def test_an_export_finishes_an_erase_cut_by_a_crash(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        m.add("alice likes green tea", user_id="alice")
        m.add("bob likes coffee", user_id="bob")
    env = {**os.environ, "MEMVAULT_HOME": str(home)}
    cut = subprocess.run(
        [sys.executable, "-c", ERASER, str(home)], capture_output=True, text=True, env=env
    )
    assert cut.returncode == -signal.SIGKILL, cut.stderr
    with Memory(home, embedder=HashEmbedder()) as m:
        assert m.export_user("bob") is not None
        with pytest.raises(NotFound):
            m.export_user("alice")  # not even history or a key: alice is wholly erased
