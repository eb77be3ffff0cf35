"""The TypeScript client (clients/typescript) against a real memvault server on 127.0.0.1: its
own tests, run by Node's built-in test runner with the server's address and keys in the
environment (clients/typescript/test/server.test.mjs reads them)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.server.conftest import launch_server

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "typescript"
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node (20 or later) is not on PATH")
def test_typescript_client_suite_passes_against_a_real_server(home: Path) -> None:
    assert NODE is not None
    tests = sorted(str(path) for path in (CLIENT / "test").glob("*.test.mjs"))
    assert len(tests) >= 2, tests
    server, stop = launch_server(home)
    try:
        bound_user = "ts-bound-user"
        env = {
            **os.environ,
            "MEMVAULT_TEST_URL": server.base_url,
            "MEMVAULT_TEST_ADMIN_KEY": server.admin_key,
            "MEMVAULT_TEST_READ_KEY": server.key("read"),
            "MEMVAULT_TEST_USER": bound_user,
            "MEMVAULT_TEST_USER_KEY": server.key("write", user_id=bound_user),
            "NODE_NO_WARNINGS": "1",
        }
        result = subprocess.run(
            [NODE, "--test", "--test-reporter=spec", *tests],
            cwd=CLIENT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stop()
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    # The server's tests ran (the suite skips them when the environment lacks the server).
    assert "against memvault serve" in report and "needs a running server" not in report, report
    assert re.search(r"\bskipped 0\b", report) and re.search(r"\bfail 0\b", report), report
