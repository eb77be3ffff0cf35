"""Concurrent query embeddings share model calls; each caller gets its own vector or error."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from memvault import HashEmbedder
from memvault.embedding.batching import QueryBatcher
from memvault.errors import EmbedderError


class SlowModel:
    def __init__(self) -> None:
        self.inner = HashEmbedder()
        self.calls: list[int] = []
        self.running = 0
        self.most_running = 0
        self.fail_on: str | None = None
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.calls.append(len(texts))
        try:
            time.sleep(0.02)
            if self.fail_on in texts:
                raise EmbedderError("the model failed")
            return self.inner.embed_batch(texts)
        finally:
            with self._lock:
                self.running -= 1


def _together(batcher: QueryBatcher, texts: list[str]) -> dict[str, object]:
    results: dict[str, object] = {}
    start = threading.Barrier(len(texts))

    def call(text: str) -> None:
        start.wait()
        try:
            results[text] = batcher.embed(text)
        except EmbedderError as exc:
            results[text] = exc

    threads = [threading.Thread(target=call, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_concurrent_queries_share_calls_and_each_gets_its_own_vector() -> None:
    model = SlowModel()
    batcher = QueryBatcher(model.embed, max_running=2)
    texts = [f"query number {i}" for i in range(16)]
    results = _together(batcher, texts)
    expected = HashEmbedder().embed_batch(texts)
    for text, vector in zip(texts, expected, strict=True):
        np.testing.assert_allclose(results[text], vector)  # type: ignore[arg-type]
    assert sum(model.calls) == 16
    assert len(model.calls) < 16  # batched
    assert model.most_running <= 2  # never more calls at once than allowed


def test_a_lone_query_runs_at_once_and_a_failure_reaches_every_caller_of_its_batch() -> None:
    model = SlowModel()
    batcher = QueryBatcher(model.embed, max_running=1)
    np.testing.assert_allclose(batcher.embed("alone"), HashEmbedder().embed_batch(["alone"])[0])
    assert model.calls == [1]
    model.fail_on = "poison"
    results = _together(batcher, ["poison", *[f"q{i}" for i in range(5)]])
    assert isinstance(results["poison"], EmbedderError)
    # The others either shared the failing call (and see its error) or ran in a later one.
    shared = [t for t, r in results.items() if isinstance(r, EmbedderError)]
    assert all(isinstance(results[t], np.ndarray) for t in results if t not in shared)
    model.fail_on = None
    assert batcher.embed("after") is not None  # the batcher is not stuck
    with pytest.raises(EmbedderError):
        model.fail_on = "again"
        batcher.embed("again")
