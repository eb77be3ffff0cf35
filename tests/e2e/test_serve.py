"""``memvault serve`` as a real process: the admin key is printed once, on the first start only."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.server.conftest import free_port

KEY = re.compile(r"mvk_[a-z0-9]{12}_[A-Za-z0-9_-]{49}")


def start(home: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "MEMVAULT_HOME": str(home), "MEMVAULT_EMBEDDER": "hash", "COLUMNS": "200"}
    process = subprocess.Popen(
        [sys.executable, "-m", "memvault", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    while "memvault serving" not in seen:
        line = process.stdout.readline()
        assert line or process.poll() is None, seen
        seen += line
        assert time.monotonic() < deadline, seen
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    return process, seen


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    assert process.stdout is not None
    process.stdout.close()


def test_first_start_prints_an_admin_key_once(home: Path) -> None:
    port = free_port()
    process, output = start(home, port)
    try:
        [key] = set(KEY.findall(output))
        assert "curl" in output and f"http://127.0.0.1:{port}/docs" in output
        headers = {"Authorization": f"Bearer {key}"}
        base = f"http://127.0.0.1:{port}"
        added = httpx.post(
            f"{base}/v1/memories/",
            json={"messages": "served fact", "user_id": "u"},
            headers=headers,
        )
        assert added.status_code == 200
        found = httpx.post(
            f"{base}/v1/memories/search/", json={"query": "served", "user_id": "u"}, headers=headers
        )
        assert found.json()["results"][0]["memory"] == "served fact"
    finally:
        stop(process)
    process, output = start(home, port)
    try:
        assert not KEY.findall(output)
        listed = httpx.get(
            f"http://127.0.0.1:{port}/v1/memories/", params={"user_id": "u"}, headers=headers
        )
        assert listed.json()["count"] == 1  # the key and the memory survived the restart
    finally:
        stop(process)


def test_a_port_in_use_is_one_message_before_anything_is_created(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "MEMVAULT_HOME": str(home), "MEMVAULT_EMBEDDER": "hash"}
        result = subprocess.run(
            [sys.executable, "-m", "memvault", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert result.returncode == 1
    assert "[address_unavailable]" in result.stderr and f"127.0.0.1:{port}" in result.stderr
    assert "already in use" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was printed or made: no admin key shown (and lost), no store created.
    assert "memvault serving" not in result.stdout and not KEY.findall(result.stdout)
    assert not home.exists()


def test_the_served_socket_answers_without_nagle_delays() -> None:
    """``serve`` binds its socket itself (a port in use is one clear error); asyncio then turns
    Nagle's algorithm off on each connection only if the socket says TCP. Without it every
    answer written in two parts waited for the client's delayed ACK (40 ms a request)."""
    import asyncio

    from memvault.server.run import listen

    sock = listen("127.0.0.1", 0)
    seen: list[int] = []

    async def scenario() -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = writer.get_extra_info("socket")
            seen.append(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            await asyncio.sleep(0)
            for _ in range(100):  # until the server side has run its callback
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    try:
        asyncio.run(scenario())
    finally:
        sock.close()
    assert seen and seen[0] != 0
