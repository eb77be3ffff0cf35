"""Long commands show live progress on a terminal's stderr, and nothing that spoils ``--json``.

Run as processes with ``TTY_COMPATIBLE=1``, which makes rich treat the pipes as a terminal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from memvault import HashEmbedder, Memory
from memvault.validation import Scope

CONSOLE_SCRIPT = Path(sys.executable).with_name("memvault")
# TTY_COMPATIBLE makes stdout a "terminal" too, where JSON is coloured: piped, it is plain.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run(home: Path, *args: str, terminal: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMVAULT_HOME": str(home), "MEMVAULT_EMBEDDER": "hash"}
    env["TTY_COMPATIBLE"] = "1" if terminal else "0"
    env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def stocked_home(home: Path) -> Path:
    with Memory(home, embedder=HashEmbedder()) as memory:
        memory.add_many([{"messages": f"fact {i}", "user_id": "zoe"} for i in range(5)])
        memory.add("gone soon", user_id="zoe", expiration_date="2000-01-01T00:00:00+00:00")
    return home


# (arguments, what the last progress line says, a key of the --json result)
LONG_COMMANDS = [
    pytest.param(
        ["user", "rotate-key", "zoe"],
        "re-encrypting zoe: 6 memories, 6 history events done",
        "memories_rekeyed",
        id="rotate-key",
    ),
    pytest.param(
        ["keys", "rotate-master"], "rewrapping data keys: ", "rewrapped", id="rotate-master"
    ),
    pytest.param(["gc"], "purging expired memories: 1 done", "purged", id="gc"),
]


@pytest.mark.parametrize(("args", "progress", "key"), LONG_COMMANDS)
def test_progress_on_a_terminal_and_clean_json(
    stocked_home: Path, args: list[str], progress: str, key: str
) -> None:
    shown = run(stocked_home, *args, terminal=True)
    assert shown.returncode == 0, shown.stderr
    assert progress in shown.stderr
    assert progress not in shown.stdout  # the result alone goes to stdout
    as_json = run(stocked_home, *args, "--json", terminal=True)
    assert as_json.returncode == 0, as_json.stderr
    assert key in json.loads(ANSI.sub("", as_json.stdout))  # nothing but the JSON document
    assert as_json.stderr == ""


def test_no_progress_when_stderr_is_not_a_terminal(stocked_home: Path) -> None:
    piped = run(stocked_home, "user", "rotate-key", "zoe", terminal=False)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""


def test_migrate_draws_a_bar_per_table_and_keeps_json_clean(
    stocked_home: Path, tmp_path: Path
) -> None:
    shown = run(stocked_home, "migrate", "--to", f"sqlite:{tmp_path / 'copy'}", terminal=True)
    assert shown.returncode == 0, shown.stderr
    plain = ANSI.sub("", shown.stderr)
    assert "memories" in plain and "6/6" in plain  # the memories table's bar, full
    as_json = run(
        stocked_home, "migrate", "--to", f"sqlite:{tmp_path / 'other'}", "--json", terminal=True
    )
    assert as_json.returncode == 0 and as_json.stderr == ""
    assert json.loads(ANSI.sub("", as_json.stdout))["tables"]["memories"]["copied"] == 6


def test_entities_rebuild_draws_a_bar_and_keeps_json_clean(stocked_home: Path) -> None:
    with Memory(stocked_home, embedder=HashEmbedder()) as memory:  # as an older version left them
        with memory.engine.store.transaction() as tx:
            for row in tx.scope_rows(memory.namespace, Scope(user_id="zoe"), limit=100):
                row.entities_box = None
                tx.set_entities(row, "")
    shown = run(stocked_home, "entities", "rebuild", terminal=True)
    assert shown.returncode == 0, shown.stderr
    plain = ANSI.sub("", shown.stderr)
    assert "extracting entities" in plain and "6/6" in plain
    assert "entities extracted for 6 memories" in ANSI.sub("", shown.stdout)
    as_json = run(stocked_home, "entities", "rebuild", "--json", terminal=True)
    assert as_json.returncode == 0 and as_json.stderr == ""
    assert json.loads(ANSI.sub("", as_json.stdout))["memories"] == 0
