"""The tests' own guard: no connection leaves loopback, from this process (session fixtures
included: the guard is installed when tests/conftest.py is imported) or from a Python process a
test starts (PYTHONPATH carries tests/netguard/sitecustomize.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

# TEST-NET-1 (RFC 5737): never routed; the guard must refuse it before any packet is sent.
ELSEWHERE = ("192.0.2.1", 80)
CHILD = (
    "import socket\n"
    "try:\n"
    "    socket.create_connection(('192.0.2.1', 80), timeout=2)\n"
    "except ConnectionRefusedError as exc:\n"
    "    print('refused:', exc)\n"
)


@pytest.fixture(scope="session")
def connect_at_session_setup() -> str:
    try:
        socket.create_connection(ELSEWHERE, timeout=2)
    except ConnectionRefusedError as exc:
        return str(exc)
    return "connected"


def test_this_process_reaches_loopback_only() -> None:
    with pytest.raises(ConnectionRefusedError, match="loopback"):
        socket.create_connection(ELSEWHERE, timeout=2)
    probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    with probe, pytest.raises(ConnectionRefusedError, match="loopback"):
        probe.connect_ex(("2001:db8::1", 80, 0, 0))


def test_a_session_fixture_is_guarded(connect_at_session_setup: str) -> None:
    assert "loopback" in connect_at_session_setup


def test_a_child_python_process_is_guarded() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )
    assert "refused: tests may only reach loopback" in done.stdout, done.stdout + done.stderr
