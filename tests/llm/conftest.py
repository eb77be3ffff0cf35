"""Fixtures of the inference tests: a scripted chat server on loopback and a Memory using it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memvault import HashEmbedder, Memory
from memvault.testing import ScriptedChatServer


def facts(*items: str | tuple[str, str]) -> str:
    """An extraction answer: texts (semantic) or (text, type) pairs."""
    out = [
        {"text": i, "type": "semantic"} if isinstance(i, str) else {"text": i[0], "type": i[1]}
        for i in items
    ]
    return json.dumps({"facts": out})


def decisions(*items: dict[str, Any]) -> str:
    return json.dumps({"decisions": list(items)})


@pytest.fixture
def chat() -> Iterator[ScriptedChatServer]:
    with ScriptedChatServer() as server:
        yield server


@pytest.fixture
def mem(home: Path, chat: ScriptedChatServer) -> Iterator[Memory]:
    with Memory(
        home,
        embedder=HashEmbedder(),
        llm_base_url=chat.base_url,
        llm_model="scripted",
        llm_backoff_seconds=0.01,
        llm_timeout_seconds=2,
    ) as m:
        yield m
