"""``memvault import`` reads a file someone else may have written: every bad line is a message
naming the line (never its content) and status 2, nothing is stored, and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from memvault import HashEmbedder, Memory
from tests.e2e.test_cli_exit_codes import run

DEEP = '{"messages": "x", "user_id": "u", "metadata": ' + '{"a": ' * 5000 + "1" + "}" * 5001
BAD_FILES = {
    "nested 5,000 deep": (DEEP + "\n").encode(),
    "not UTF-8": b'{"messages": "ok", "user_id": "u"}\n\xff\xfe{"a": 1}\n',
    "a lone surrogate": b'{"messages": "a\\ud800", "user_id": "u"}\n',
    "not JSON": b'{"messages": "ok", "user_id": "u"}\n{"messages": \n',
    "not an object": b"[1, 2]\n",
    "a number too large": b'{"messages": "x", "user_id": "u", "importance": 1e999}\n',
    "an unknown history event": (
        b'{"type": "memory", "id": "m1", "memory": "x", "user_id": "u",'
        b' "history": [{"event": "BOOM", "created_at": "2024-01-01T00:00:00Z"}]}\n'
    ),
    "a history line without events": b'{"type": "history", "memory_id": "m2"}\n',
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_import_file_is_a_message_and_stores_nothing(home: Path, name: str) -> None:
    source = home.parent / "bad.jsonl"
    source.write_bytes(BAD_FILES[name])
    result = run(home, "import", str(source))
    assert result.returncode == 2, (name, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "error [" in result.stderr, result.stderr
    with Memory(home, embedder=HashEmbedder()) as memory:
        assert memory.count(user_id="u") == 0
