"""Fixtures of the CrewAI checks (run in .venv-crewai by tests/integrations/test_crewai.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from crewai.memory import Memory as CrewMemory

from memvault import HashEmbedder, Memory
from memvault.integrations.crewai import MemvaultStorage

# The parent test passes these; a run by hand must not reach CrewAI's tracing service either.
assert os.environ.get("CREWAI_TRACING_ENABLED") == "false", "run through test_crewai.py"


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[Memory]:
    with Memory(tmp_path / "home", embedder=HashEmbedder()) as m:
        yield m


def crew(storage: MemvaultStorage, **kwargs: Any) -> CrewMemory:
    """CrewAI's Memory on the storage, with what keeps it from calling an LLM: every field given
    to remember, consolidation off, no LLM exploration round in recall."""
    settings: dict[str, Any] = {"consolidation_threshold": 1.0, "exploration_budget": 0}
    settings.update(kwargs)
    return CrewMemory(storage=storage, embedder=storage.embedder, **settings)


@pytest.fixture
def make_crew(memory: Memory) -> Iterator[Callable[..., tuple[MemvaultStorage, CrewMemory]]]:
    made: list[CrewMemory] = []

    def make(**binding: Any) -> tuple[MemvaultStorage, CrewMemory]:
        storage = MemvaultStorage(memory, **binding)
        crew_memory = crew(storage)
        made.append(crew_memory)
        return storage, crew_memory

    yield make
    for crew_memory in made:
        crew_memory.close()
