"""A loopback receiver that records what it is sent, and Memories allowed to reach it only."""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from memvault import HashEmbedder, Memory


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next of ``statuses`` (then 200), recording it."""

    url: str
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.received.append(Received(self.path, dict(self.headers), body))
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/memvault?src=test"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


class FakeClock:
    """Time the test moves: it starts a minute ahead (events written now are due at once)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))


# The receiver's network alone: loopback is refused unless listed.
LOOPBACK = ["127.0.0.1/32"]


@pytest.fixture
def open_memory(home: Path, backend: str | None) -> Iterator[Callable[..., Memory]]:
    opened: list[Memory] = []
    master = base64.b64encode(secrets.token_bytes(32)).decode()

    def make(**options: Any) -> Memory:
        options.setdefault("webhook_allowed_hosts", LOOPBACK)
        options.setdefault("webhook_allow_http", True)
        options.setdefault("webhook_retry_seconds", 10)
        if backend is not None:
            options["database_url"] = backend
            options["master_key"] = master
        memory = Memory(home, embedder=HashEmbedder(), **options)
        opened.append(memory)
        return memory

    yield make
    for memory in opened:
        memory.close()
