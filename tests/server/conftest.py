"""A real memvault server on 127.0.0.1 (uvicorn in a thread, run as ``memvault serve`` runs it)
over a store in tmp_path."""

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
from fastapi import FastAPI

from memvault import Embedder, HashEmbedder, Memory, Settings
from memvault.server import create_app
from memvault.server.run import uvicorn_options


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningServer:
    base_url: str
    memory: Memory
    admin_key: str
    app: FastAPI
    port: int

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


def launch_server(
    home: Path,
    *,
    embedder: Embedder | str | None = None,
    uvicorn_defaults: bool = False,
    **overrides: Any,
) -> tuple[RunningServer, Callable[[], None]]:
    """Start a server over ``home``; returns it and the function that stops it.

    ``embedder``: an instance, or a registered name (the server then loads it, as ``memvault
    serve`` does); ``uvicorn_defaults``: run the app as plain ``uvicorn`` would (proxy headers
    on)."""
    port = free_port()
    name = embedder if isinstance(embedder, str) else "hash"
    settings = Settings.load(home=home, embedder=name, port=port, **overrides)
    if isinstance(embedder, str):
        memory = Memory(settings=settings)
    else:
        memory = Memory(settings=settings, embedder=embedder or HashEmbedder())
    app = create_app(settings, memory)
    options = uvicorn_options(settings)
    if uvicorn_defaults:
        options = {"host": settings.host, "port": port, "log_level": "warning"}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=20)
        memory.close()

    admin = memory.api_keys.create("default", "admin", name="test admin").key
    return RunningServer(f"http://127.0.0.1:{port}", memory, admin, app, port), stop


@pytest.fixture
def start_server(home: Path) -> Iterator[Callable[..., RunningServer]]:
    stops: list[Callable[[], None]] = []

    def start(**options: Any) -> RunningServer:
        running, stop = launch_server(home, **options)
        stops.append(stop)
        return running

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def server(start_server: Callable[..., RunningServer]) -> RunningServer:
    return start_server()
