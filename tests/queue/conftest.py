"""The queue's tests run on SQLite and on Postgres (a fresh database per test)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memvault import HashEmbedder, Memory

# The server tests' fixture: ``start_server(**settings)`` starts a real server over the home.
from tests.server.conftest import start_server  # noqa: F401


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str | None:
    """None for SQLite, else a fresh Postgres database URL."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def open_memory(home: Path, backend: str | None) -> Iterator[Callable[..., Memory]]:
    """``open_memory(name="a", **settings)``: a Memory over the test's store; each name has its
    own home (another "node" over the same Postgres database)."""
    opened: list[Memory] = []
    master = base64.b64encode(secrets.token_bytes(32)).decode()

    def make(name: str = "a", **options: Any) -> Memory:
        options.setdefault("job_poll_seconds", 0.05)
        options.setdefault("job_retry_seconds", 0.05)
        node_home = home if name == "a" else home.parent / f"home-{name}"
        if backend is not None:
            options["database_url"] = backend
            options["master_key"] = master  # nodes share the key store and the master key
        memory = Memory(node_home, embedder=HashEmbedder(), **options)
        opened.append(memory)
        return memory

    yield make
    for memory in opened:
        memory.close()


@pytest.fixture(autouse=True)
def an_llm_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``infer`` add is queued only where an LLM is configured (else it is refused at once,
    not left to die in the queue). These tests run their own handlers, so the endpoint named
    here (a closed loopback port) is never asked."""
    monkeypatch.setenv("MEMVAULT_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("MEMVAULT_LLM_MODEL", "unused-by-these-tests")
