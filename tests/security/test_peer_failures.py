"""What the peers got wrong, seen running (DESIGN.md section 10), as tests memvault passes.

Most live next to the feature they test (see docs/security.md); these are the ones that need a
scale or a shape of their own.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from memvault import HashEmbedder, Memory, MissingScope

WORDS = ["tea", "jazz", "kites", "paris", "dogs", "rain", "chess", "bread"]


def test_ten_thousand_distinct_texts_are_ten_thousand_memories(home: Path) -> None:
    """OpenMemory's 32-bit order-blind hash kept 3,074 of 10,000 distinct texts."""
    texts = [" ".join(words) for words in itertools.permutations(WORDS, 5)][:10_000]
    texts += [f"{a} {b}" for a, b in itertools.permutations(WORDS, 2)]  # same words, other order
    assert len(set(texts)) == len(texts) >= 6_000
    with Memory(home, embedder=HashEmbedder(), synchronous="NORMAL") as m:
        events = [
            r["event"]
            for r in m.add_many([{"messages": t, "user_id": "u"} for t in texts])["results"]
        ]
        assert events.count("ADD") == len(texts)
        assert m.count(user_id="u") == len(texts)


def test_importing_memvault_starts_nothing_and_sends_nothing() -> None:
    """OpenMemory starts an HTTP server and sends telemetry when imported."""
    import subprocess

    code = (
        "import socket, threading\n"
        "calls = []\n"
        "real = socket.socket.connect\n"
        "socket.socket.connect = lambda self, addr: calls.append(addr)\n"
        "import memvault, memvault.memory\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert calls == [], calls\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_no_query_without_a_scope(home: Path) -> None:
    """OpenMemory's library search without a user returned everyone's memories."""
    with Memory(home, embedder=HashEmbedder()) as m:
        m.add("alice only", user_id="alice")
        for call in (
            lambda: m.search("alice"),
            lambda: m.get_all(),
            lambda: m.count(),
            lambda: m.delete_all(),
        ):
            with pytest.raises(MissingScope):
                call()
