"""No memory text or key material in logs, tracebacks or error messages; refusals touch nothing."""

from __future__ import annotations

import base64
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from memvault import Client, HashEmbedder, IntegrityError, Memory, MemvaultError
from memvault.security.keyscope import KeyScope
from tests.server.conftest import RunningServer

CANARY = "quokka-canary-7f3a"


def test_full_api_run_logs_no_text_and_no_keys(
    server: RunningServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    key = server.key("write")
    with Client(server.base_url, key) as c:
        memory_id = c.add(f"the {CANARY} sleeps", user_id="u", metadata={"tag": CANARY})["results"][
            0
        ]["id"]
        c.add_many([{"messages": f"{CANARY} batch {i}", "user_id": "u"} for i in range(3)])
        c.search(f"where is the {CANARY}", user_id="u", filters={"tag": CANARY})
        c.get_all(user_id="u", filters={"tag": {"icontains": CANARY}})
        c.update(memory_id, f"the {CANARY} woke up")
        c.history(memory_id)
        for bad in (
            lambda: c.add(CANARY * 3000, user_id="u"),
            lambda: c.search(CANARY, user_id="u", filters={"tag": {"near": CANARY}}),
            lambda: c.add(CANARY, user_id=f"bad {CANARY}"),
            lambda: c.update(memory_id, metadata={"user_id": CANARY}),
        ):
            with pytest.raises(MemvaultError) as caught:
                bad()
            assert CANARY not in str(caught.value)
        c.delete(memory_id)
    with server.http(server.admin_key) as admin:
        admin.get("/v1/users/u/export/")
        admin.delete("/v1/users/u/")
        admin.get("/v1/audit/")
    with server.http(f"mvk_{CANARY}") as wrong:
        wrong.get("/v1/memories/", params={"user_id": "u"})
    server.memory.audit.flush()
    captured = capsys.readouterr()
    everything = caplog.text + captured.out + captured.err
    assert everything  # the access log did write
    assert CANARY not in everything
    assert key not in everything and server.admin_key not in everything
    secret = key[len("mvk_") + 13 :]  # after the 12-character id and its "_"; may hold "_" itself
    assert secret[:20] not in everything  # not even part of a secret


def test_corrupted_wrapped_data_key_is_an_integrity_error(home: Path) -> None:
    key_id = KeyScope("default", "user", "u").id
    with Memory(home, embedder=HashEmbedder()) as m:
        memory_id = m.add("precious", user_id="u")["results"][0]["id"]
    db = sqlite3.connect(home / "keys.db")
    wrapped = bytearray(
        db.execute("SELECT wrapped FROM data_keys WHERE scope_id = ?", (key_id,)).fetchone()[0]
    )
    wrapped[20] ^= 0x01
    db.execute("UPDATE data_keys SET wrapped = ? WHERE scope_id = ?", (bytes(wrapped), key_id))
    db.commit()
    db.close()
    with Memory(home, embedder=HashEmbedder()) as m, pytest.raises(IntegrityError) as caught:
        m.get(memory_id)
    assert "data key" in str(caught.value)


def test_server_refuses_a_wrong_or_missing_master_key_and_touches_nothing(home: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    with Memory(home, embedder=HashEmbedder(), master_key=key) as m:
        m.add("kept safe", user_id="u")
    before = {p.name: p.read_bytes() for p in home.iterdir() if not p.name.endswith("-shm")}
    for env_key in (base64.b64encode(os.urandom(32)).decode(), None):
        env = {**os.environ, "MEMVAULT_HOME": str(home), "MEMVAULT_EMBEDDER": "hash"}
        env.pop("MEMVAULT_MASTER_KEY", None)
        if env_key:
            env["MEMVAULT_MASTER_KEY"] = env_key
        done = subprocess.run(
            [sys.executable, "-m", "memvault", "serve", "--port", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1
        assert "[wrong_master_key]" in done.stderr
        assert "Traceback" not in done.stderr
        assert env_key is None or env_key not in done.stdout + done.stderr
    after = {p.name: p.read_bytes() for p in home.iterdir() if not p.name.endswith("-shm")}
    assert after == before
