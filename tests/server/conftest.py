"""A real memvault server on 127.0.0.1 (uvicorn in a thread) over a store in tmp_path."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from memvault import HashEmbedder, Memory, Settings
from memvault.server import create_app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningServer:
    base_url: str
    memory: Memory
    admin_key: str

    def key(
        self,
        role: str = "write",
        *,
        user_id: str | None = None,
        namespace: str = "default",
        **kw: Any,
    ) -> str:
        return self.memory.api_keys.create(namespace, role, user_id=user_id, **kw).key

    def http(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


@pytest.fixture
def start_server(home: Path) -> Iterator[Callable[..., RunningServer]]:
    started: list[tuple[uvicorn.Server, threading.Thread, Memory]] = []

    def start(**overrides: Any) -> RunningServer:
        port = free_port()
        settings = Settings.load(home=home, embedder="hash", port=port, **overrides)
        memory = Memory(settings=settings, embedder=HashEmbedder())
        app = create_app(settings, memory)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        started.append((server, thread, memory))
        admin = memory.api_keys.create("default", "admin", name="test admin").key
        return RunningServer(f"http://127.0.0.1:{port}", memory, admin)

    yield start
    for server, thread, memory in started:
        server.should_exit = True
        thread.join(timeout=20)
        memory.close()


@pytest.fixture
def server(start_server: Callable[..., RunningServer]) -> RunningServer:
    return start_server()
