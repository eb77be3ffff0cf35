"""Power loss: SIGKILL cannot tell ``synchronous=FULL`` from ``OFF`` (the kernel still holds the
pages), so durability is shown by the syscalls. A writer runs under ``strace -f -y`` and writes a
marker to stdout before and after each call; every acknowledged ``add`` (and ``add_many``
batch) must see an ``fsync``/``fdatasync`` of ``memvault.db-wal`` between its two markers, i.e.
before it returned. ``NORMAL`` is measured too: it skips those syncs (docs/reliability.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netguard import pythonpath

SRC = Path(__file__).resolve().parents[2] / "src"
ADDS = 5
BATCHES = 2

_WRITER = """
import os, sys
from memvault import HashEmbedder, Memory

def mark(text):
    os.write(1, f"MARK {text}\\n".encode())

with Memory(sys.argv[1], embedder=HashEmbedder(), synchronous=sys.argv[2]) as m:
    m.add("warm up the connection and the data key", user_id="u")
    for i in range(int(sys.argv[3])):
        mark(f"begin add {i}")
        m.add(f"acknowledged memory {i}", user_id="u")
        mark(f"end add {i}")
    for b in range(int(sys.argv[4])):
        mark(f"begin batch {b}")
        m.add_many(
            [{"messages": f"batch {b} item {j}", "user_id": "u"} for j in range(20)]
        )
        mark(f"end batch {b}")
"""

_MARK = re.compile(r'write\(1<[^>]*>, "MARK (begin|end) (\w+ \d+)')
_WAL_SYNC = re.compile(r"\b(?:fsync|fdatasync)\(\d+<[^>]*memvault\.db-wal>")


def trace(home: Path, synchronous: str) -> dict[str, int]:
    """WAL syncs between each call's begin and end markers, by call ("add 0", "batch 1")."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed: the syncs cannot be counted")
    log = home.parent / f"strace-{synchronous}.log"
    writer = [sys.executable, "-c", _WRITER, str(home), synchronous, str(ADDS), str(BATCHES)]
    done = subprocess.run(
        [strace, "-f", "-y", "-qq", "-o", str(log), "-e", "trace=fsync,fdatasync,write", *writer],
        capture_output=True,
        env={"PYTHONPATH": pythonpath(SRC), "PATH": "/usr/bin:/bin", "HOME": str(home.parent)},
        timeout=60,
        check=False,
    )
    if done.returncode != 0 and b"ptrace" in done.stderr:
        pytest.skip("ptrace is not permitted here: strace cannot run")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    syncs: dict[str, int] = {}
    open_calls: set[str] = set()
    for line in log.read_text(errors="replace").splitlines():
        if marker := _MARK.search(line):
            edge, call = marker.groups()
            if edge == "begin":
                open_calls.add(call)
                syncs[call] = 0
            else:
                open_calls.discard(call)
        elif _WAL_SYNC.search(line):
            for call in open_calls:
                syncs[call] += 1
    assert not open_calls and len(syncs) == ADDS + BATCHES, syncs
    return syncs


def test_each_acknowledged_write_syncs_the_wal_before_it_returns(tmp_path: Path) -> None:
    syncs = trace(tmp_path / "home", "FULL")
    assert all(count >= 1 for count in syncs.values()), syncs


def test_normal_leaves_commits_unsynced(tmp_path: Path) -> None:
    """The measurement behind docs/reliability.md: ``NORMAL`` syncs the WAL at checkpoints only,
    so an acknowledged write can be lost to a power cut (never to a crash of the process)."""
    full = trace(tmp_path / "full", "FULL")
    normal = trace(tmp_path / "normal", "NORMAL")
    assert sum(normal.values()) < sum(full.values()), (normal, full)
    assert any(count == 0 for count in normal.values()), normal
