"""Opt-in: a real OpenAI-compatible endpoint. Run with MEMVAULT_LLM_LIVE=1 and
MEMVAULT_LLM_BASE_URL / MEMVAULT_LLM_MODEL (/ MEMVAULT_LLM_API_KEY) set."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from memvault import HashEmbedder, Memory
from tests import conftest

# Read now: the hermetic fixture clears MEMVAULT_* before each test.
LIVE = {
    name: os.environ.get(f"MEMVAULT_LLM_{name.upper()}")
    for name in ("live", "base_url", "model", "api_key")
}

pytestmark = pytest.mark.skipif(
    LIVE["live"] != "1" or not LIVE["base_url"] or not LIVE["model"],
    reason="set MEMVAULT_LLM_LIVE=1, MEMVAULT_LLM_BASE_URL and MEMVAULT_LLM_MODEL",
)


def test_live_extraction_and_update(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", conftest._real_connect)
    options = {"llm_base_url": LIVE["base_url"], "llm_model": LIVE["model"]}
    if LIVE["api_key"]:
        options["llm_api_key"] = LIVE["api_key"]
    with Memory(home, embedder=HashEmbedder(), **options) as m:
        first = m.add(
            [{"role": "user", "content": "Hi, I'm Alice. I love green tea and I live in Lyon."}],
            user_id="alice",
            infer=True,
        )["results"]
        assert first and all(r["inferred"] for r in first), first
        second = m.add(
            [{"role": "user", "content": "I moved from Lyon to Paris last month."}],
            user_id="alice",
            infer=True,
        )["results"]
        assert all(r["inferred"] for r in second), second
        texts = " ".join(r["memory"] for r in m.get_all(user_id="alice")["results"])
        assert "Paris" in texts
