"""The contract suite runs over every backend; a backend is done when this suite is green on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memvault import HashEmbedder, Memory

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str | None:
    """The backend of a contract case: None for SQLite in the home, else a fresh Postgres
    database on the session's embedded server."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def open_memory(database_url: str | None, home: Path) -> Iterator[Callable[..., Memory]]:
    """Opens ``Memory`` objects on one backend (several may share it, like several processes)."""
    opened: list[Memory] = []

    def factory(**options: Any) -> Memory:
        options.setdefault("embedder", HashEmbedder())
        if database_url is not None:
            options.setdefault("database_url", database_url)
        m = Memory(home, **options)
        opened.append(m)
        return m

    yield factory
    for m in opened:
        m.close()


@pytest.fixture
def mem(open_memory: Callable[..., Memory]) -> Memory:
    return open_memory()
