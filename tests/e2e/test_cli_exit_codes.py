"""The real ``memvault`` entry point, as a process: every exit status that means something.

Scripts branch on these statuses (``memvault audit verify || page-someone``), so they are checked
through the console script and ``python -m memvault``, not through typer's test runner (which
bypasses :func:`memvault.cli.main`, where the statuses were once lost).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from memvault import HashEmbedder, Memory
from memvault.security.audit import AuditEntry

CONSOLE_SCRIPT = Path(sys.executable).with_name("memvault")
UNKNOWN_ID = "0191a2b3-0000-7000-8000-000000000000"


def run(
    home: Path, *args: str, stdin: str | None = None, module: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMVAULT_HOME": str(home), "MEMVAULT_EMBEDDER": "hash"}
    command = [sys.executable, "-m", "memvault"] if module else [str(CONSOLE_SCRIPT)]
    return subprocess.run(
        [*command, *args],
        env=env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def audited_home(home: Path) -> Path:
    with Memory(home, embedder=HashEmbedder()) as memory:
        memory.add("exit codes matter", user_id="alice")
        memory.audit.append(
            [AuditEntry(action=f"test {i}", outcome="ok", source="test") for i in range(3)]
        )
        memory.audit.flush()
    return home


@pytest.mark.parametrize("module", [False, True], ids=["console-script", "python-m"])
def test_audit_verify_exits_0_when_intact_and_1_when_tampered(
    audited_home: Path, module: bool
) -> None:
    intact = run(audited_home, "audit", "verify", module=module)
    assert intact.returncode == 0, intact.stderr
    assert "intact" in intact.stdout
    db = sqlite3.connect(audited_home / "memvault.db")
    db.execute("UPDATE audit_log SET outcome = 'denied' WHERE seq = 2")
    db.commit()
    db.close()
    broken = run(audited_home, "audit", "verify", module=module)
    assert broken.returncode == 1
    assert "broken at entry 2" in broken.stdout
    assert "Traceback" not in broken.stderr
    as_json = run(audited_home, "audit", "verify", "--json", module=module)
    assert as_json.returncode == 1 and '"ok": false' in as_json.stdout


# (arguments, expected exit status, what stderr says)
FAILURES = [
    pytest.param(["get", UNKNOWN_ID], 1, "[not_found]", id="get-unknown-id"),
    pytest.param(["history", UNKNOWN_ID], 1, "[not_found]", id="history-unknown-id"),
    pytest.param(["delete", UNKNOWN_ID], 1, "[not_found]", id="delete-unknown-id"),
    pytest.param(["update", UNKNOWN_ID, "new text"], 1, "[not_found]", id="update-unknown-id"),
    pytest.param(["user", "erase", "nobody", "--yes"], 1, "[not_found]", id="erase-unknown-user"),
    pytest.param(["keys", "revoke", "nokey"], 1, "[not_found]", id="revoke-unknown-key"),
    pytest.param(["user", "export", "nobody"], 1, "[not_found]", id="export-unknown-user"),
    pytest.param(["keys", "create", "--role", "god"], 2, "[invalid_input]", id="bad-key-role"),
    pytest.param(
        ["namespace", "set", "--secret-policy", "bogus"], 2, "[invalid_input]", id="bad-policy"
    ),
    pytest.param(["add", "no scope"], 2, "[missing_scope]", id="add-without-scope"),
    pytest.param(["add", "x", "--user", "a b"], 2, "[invalid_id]", id="add-bad-user-id"),
    pytest.param(
        ["add", "x", "--user", "u", "--metadata", "{"], 2, "[invalid_input]", id="bad-json"
    ),
    pytest.param(["delete"], 2, "[invalid_input]", id="delete-nothing"),
    pytest.param(["add"], 2, "Missing argument", id="usage-missing-argument"),
    pytest.param(["add", "x", "--bogus"], 2, "No such option", id="usage-unknown-option"),
    pytest.param(["--bogus"], 2, "No such option", id="usage-unknown-top-level-option"),
    pytest.param(["frobnicate"], 2, "No such command", id="usage-unknown-command"),
    pytest.param(["search", "x", "--user", "u", "--top-k", "abc"], 2, "--top-k", id="usage-top-k"),
    pytest.param(["import", "/nonexistent/memories.jsonl"], 2, "does not exist", id="missing-file"),
    pytest.param(["audit", "list", "--limit", "0"], 2, "--limit", id="usage-out-of-range"),
    # Bytes that are not UTF-8 reach argv as lone surrogates (0xff -> "\udcff").
    pytest.param(["add", "\udcff", "--user", "u"], 2, "[invalid_input]", id="undecodable-text"),
    pytest.param(["user", "erase", "\udcff", "--yes"], 2, "[invalid_id]", id="undecodable-erase"),
    pytest.param(["keys", "revoke", "\udcff"], 1, "[not_found]", id="undecodable-key-id"),
]


@pytest.mark.parametrize(("args", "status", "says"), FAILURES)
def test_failures_exit_non_zero_with_a_message_and_no_traceback(
    home: Path, args: list[str], status: int, says: str
) -> None:
    result = run(home, *args)
    assert result.returncode == status, (result.stdout, result.stderr)
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_declining_a_confirmation_aborts_with_status_1(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as memory:
        memory.add("keep me", user_id="zoe")
    for answer in ("n\n", ""):  # "no", and end of input
        declined = run(home, "user", "erase", "zoe", stdin=answer)
        assert declined.returncode == 1, declined.stderr
        assert "aborted" in declined.stderr.lower() and "Traceback" not in declined.stderr
    with Memory(home, embedder=HashEmbedder()) as memory:
        assert len(memory.get_all(user_id="zoe")["results"]) == 1
    accepted = run(home, "user", "erase", "zoe", stdin="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert "erased zoe" in accepted.stdout


def test_export_refuses_an_existing_file_unless_forced(home: Path, tmp_path: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as memory:
        memory.add("exported", user_id="zoe")
    existing = tmp_path / "already-there.jsonl"
    existing.write_text("do not overwrite\n")
    refused = run(home, "user", "export", "zoe", "--out", str(existing))
    assert refused.returncode == 2
    assert "[invalid_input]" in refused.stderr and "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert existing.read_text() == "do not overwrite\n"
    # An unknown user with --force: the old file stays whole, no partial file is left.
    unknown = run(home, "user", "export", "nobody", "--out", str(existing), "--force")
    assert unknown.returncode == 1 and "[not_found]" in unknown.stderr
    assert existing.read_text() == "do not overwrite\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["already-there.jsonl", "home"]
    forced = run(home, "user", "export", "zoe", "--out", str(existing), "--force")
    assert forced.returncode == 0, forced.stderr
    assert '"type": "memory"' in existing.read_text()
    assert existing.stat().st_mode & 0o777 == 0o600


def test_a_file_that_cannot_be_written_is_a_message_not_a_traceback(
    home: Path, tmp_path: Path
) -> None:
    with Memory(home, embedder=HashEmbedder()) as memory:
        memory.add("exported", user_id="zoe")
    nowhere = tmp_path / "no-such-directory" / "out.jsonl"
    result = run(home, "user", "export", "zoe", "--out", str(nowhere))
    assert result.returncode == 1
    assert "[os_error] No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


USAGE_MISTAKES = [
    pytest.param(["add"], "add", id="missing-argument"),
    pytest.param(["add", "x", "--bogus"], "add", id="unknown-option"),
    pytest.param(["search", "x", "-u", "u", "--top-k", "abc"], "search", id="top-k-abc"),
    pytest.param(["import", "/nonexistent/memories.jsonl"], "import", id="missing-file"),
    pytest.param(["user", "erase"], "user erase", id="missing-argument-of-a-subcommand"),
]


@pytest.mark.parametrize(("args", "command"), USAGE_MISTAKES)
def test_a_usage_mistake_is_one_error_line_and_a_usage_hint(
    home: Path, args: list[str], command: str
) -> None:
    result = run(home, *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith(f"Usage: memvault {command} ")
    assert lines[1] == f"Try 'memvault {command} --help' for help."
    assert len(lines) == 3 and lines[2].startswith("Error: "), lines
    assert result.stdout == ""


def test_success_and_help_exit_0(home: Path) -> None:
    assert run(home, "--help").returncode == 0
    assert run(home, "add", "--help").returncode == 0
    added = run(home, "add", "a fact", "--user", "u")
    assert added.returncode == 0 and added.stdout.startswith("ADD ")
    assert run(home, "get", added.stdout.split()[1]).returncode == 0
