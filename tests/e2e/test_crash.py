"""A crash loses nothing that was acknowledged: kill -9 a writer mid-stream, then reopen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from memvault import HashEmbedder, Memory

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
