"""The contract suite runs over every backend; a backend is done when this suite is green on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memvault import HashEmbedder, Memory

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def open_memory(request: pytest.FixtureRequest, home: Path) -> Iterator[Callable[..., Memory]]:
    """Opens ``Memory`` objects on one backend (several may share it, like several processes)."""
    opened: list[Memory] = []

    def factory(**options: Any) -> Memory:
        options.setdefault("embedder", HashEmbedder())
        m = Memory(home, **options)
        opened.append(m)
        return m

    yield factory
    for m in opened:
        m.close()


@pytest.fixture
def mem(open_memory: Callable[..., Memory]) -> Memory:
    return open_memory()
