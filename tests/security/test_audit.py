"""The audit log: every authenticated action, no text, and tampering is detected."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memvault import Client
from memvault.cli import app
from tests.polling import wait_for
from tests.server.conftest import RunningServer

runner = CliRunner()


def verify_cli() -> tuple[int, dict]:
    result = runner.invoke(app, ["audit", "verify", "--json"])
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def audited(start_server, tmp_path: Path) -> RunningServer:  # type: ignore[no-untyped-def]
    server: RunningServer = start_server(audit_jsonl=tmp_path / "audit.jsonl")
    key = server.key("write")
    with Client(server.base_url, key) as c:
        memory_id = c.add("audit canary zeppelin", user_id="alice")["results"][0]["id"]
        c.search("zeppelin", user_id="alice")
        c.update(memory_id, "audit canary zeppelin two")
        c.delete(memory_id)
    with server.http(server.admin_key) as admin:
        assert admin.delete("/v1/users/ghost/").status_code == 404
    server.memory.audit.flush()
    return server


def test_every_authenticated_action_is_recorded_without_text(
    audited: RunningServer, tmp_path: Path
) -> None:
    entries = list(reversed(audited.memory.audit.entries(None, limit=100)))
    actions = [e["action"] for e in entries]
    assert actions[:4] == [
        "POST /v1/memories/",
        "POST /v1/memories/search/",
        "PUT /v1/memories/{memory_id}/",
        "DELETE /v1/memories/{memory_id}/",
    ]
    added = entries[0]
    assert added["memory_ids"] and added["key_id"] and added["namespace"] == "default"
    assert added["source"] == "127.0.0.1" and added["outcome"] == "ok"
    assert entries[2]["memory_ids"] == added["memory_ids"]
    ghost = entries[4]
    assert ghost["action"] == "DELETE /v1/users/{user_id}/" and ghost["user_id"] == "ghost"
    assert ghost["outcome"] == "http_404"
    text = json.dumps(entries) + (tmp_path / "audit.jsonl").read_text()
    assert "zeppelin" not in text
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == len(entries)
    with audited.http(audited.admin_key) as admin:
        over_rest = admin.get("/v1/audit/").json()
    assert over_rest[0]["seq"] >= len(entries)
    with audited.http(audited.key("write")) as writer:
        assert writer.get("/v1/audit/").status_code == 403


def tamper(home: Path, sql: str) -> None:
    db = sqlite3.connect(home / "memvault.db")
    db.execute(sql)
    db.commit()
    db.close()


def test_verify_passes_then_finds_an_edit(audited: RunningServer, home: Path) -> None:
    assert audited.memory.audit.verify().ok
    code, report = verify_cli()
    assert code == 0 and report["ok"] and report["entries"] >= 5
    tamper(home, "UPDATE audit_log SET outcome = 'ok' WHERE seq = 5")
    result = audited.memory.audit.verify()
    assert not result.ok and result.first_bad_seq == 5 and "modified" in (result.problem or "")
    code, report = verify_cli()
    assert code == 1 and report["first_bad_seq"] == 5


def test_verify_finds_a_deleted_entry(audited: RunningServer, home: Path) -> None:
    tamper(home, "DELETE FROM audit_log WHERE seq = 3")
    result = audited.memory.audit.verify()
    assert not result.ok and result.first_bad_seq == 3


def test_verify_finds_reordered_entries(audited: RunningServer, home: Path) -> None:
    tamper(home, "UPDATE audit_log SET seq = -2 WHERE seq = 2")
    tamper(home, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    tamper(home, "UPDATE audit_log SET seq = 3 WHERE seq = -2")
    result = audited.memory.audit.verify()
    assert not result.ok and result.first_bad_seq == 2


def test_verify_finds_a_renumbered_deletion(audited: RunningServer, home: Path) -> None:
    tamper(home, "DELETE FROM audit_log WHERE seq = 2")
    tamper(home, "UPDATE audit_log SET seq = seq - 1 WHERE seq > 2")
    result = audited.memory.audit.verify()
    assert not result.ok and result.first_bad_seq == 2


def test_cli_erase_is_audited(home: Path) -> None:
    from memvault import HashEmbedder, Memory

    with Memory(home, embedder=HashEmbedder()) as m:
        m.add("to be erased", user_id="zoe")
    assert runner.invoke(app, ["user", "erase", "zoe", "--yes"]).exit_code == 0
    assert runner.invoke(app, ["user", "erase", "zoe", "--yes"]).exit_code != 0
    listed = json.loads(runner.invoke(app, ["audit", "list", "--json"]).stdout)
    assert [(e["action"], e["outcome"]) for e in listed[:2]] == [
        ("cli user erase", "not_found"),
        ("cli user erase", "ok"),
    ]


def test_entries_are_written_while_requests_never_pause(home: Path) -> None:
    """The writer thread takes entries in batches; a batch used to close only after 0.2 s
    without a new entry (or at 500), so steady traffic held every entry in memory, where a
    SIGKILL lost them all. Now a batch is written 0.2 s after its first entry at the latest."""
    import threading

    from memvault import HashEmbedder, Memory
    from memvault.security.audit import AuditEntry

    with Memory(home, embedder=HashEmbedder()) as m:
        stop = threading.Event()

        def traffic() -> None:
            while not stop.wait(0.05):  # one entry every 50 ms: 500 would take 25 s
                m.audit.record(AuditEntry(action="steady", outcome="ok"))

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            wait_for(
                lambda: bool(m.audit.entries(None, limit=1)),
                10,
                "an entry written while traffic went on",
            )
            assert thread.is_alive()  # written while entries kept coming
        finally:
            stop.set()
            thread.join()
