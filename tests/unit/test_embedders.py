"""The three built-in embedders, behind one protocol, and the store's refusal to mix models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memvault import (
    Embedder,
    EmbedderError,
    EmbeddingModelMismatch,
    HashEmbedder,
    InvalidConfig,
    Memory,
)
from memvault.embedding import register_embedder
from memvault.testing import FakeOpenAIServer


def test_hash_embedder_is_deterministic_and_normalized() -> None:
    e = HashEmbedder()
    a = e.embed_batch(["green tea", "green tea", "stock market"])
    assert isinstance(e, Embedder)
    assert a.dtype == np.float32 and a.shape == (3, e.dimensions)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0)
    assert np.array_equal(a[0], a[1]) and a[0] @ a[2] < 0.5


def test_local_model_gives_meaningful_vectors(local_embedder: Embedder) -> None:
    vectors = local_embedder.embed_batch(
        [
            "I love hiking in the mountains",
            "Hiking is my favourite hobby",
            "The stock market fell today",
        ]
    )
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > 0.6 > 0.2 > vectors[0] @ vectors[2]
    # Batching and ordering do not change a text's vector.
    single = local_embedder.embed_batch(["The stock market fell today"])[0]
    assert np.allclose(single, vectors[2], atol=1e-5)


def test_local_model_in_memory(home: Path, local_embedder: Embedder) -> None:
    with Memory(home, embedder=local_embedder) as m:
        m.add_many(
            [
                {"messages": t, "user_id": "u"}
                for t in (
                    "Alice is allergic to peanuts",
                    "Alice prefers green tea",
                    "Alice runs marathons",
                )
            ]
        )
        hits = m.search("what can't she eat?", user_id="u", mode="vector")["results"]
        assert hits[0]["memory"] == "Alice is allergic to peanuts"


def test_openai_compatible_endpoint(home: Path) -> None:
    with FakeOpenAIServer(dimensions=32, api_key="sk-test") as server:
        with Memory(
            home,
            embedder="openai",
            openai_base_url=server.base_url,
            openai_model="text-embedding-fake",
            openai_api_key="sk-test",
        ) as m:
            assert m.embedder.model_id == "openai:text-embedding-fake"
            m.add_many([{"messages": f"fact {i} about rivers", "user_id": "u"} for i in range(300)])
            assert m.search("rivers", user_id="u", mode="vector")["results"]
        posts = [r for r in server.requests if r["path"] == "/v1/embeddings"]
        assert posts[0]["body"]["model"] == "text-embedding-fake"
        assert max(len(r["body"]["input"]) for r in posts) == 256  # batched


def test_openai_failures_are_embedder_errors_and_write_nothing(home: Path) -> None:
    with FakeOpenAIServer() as server:
        with Memory(home, embedder="openai", openai_base_url=server.base_url) as m:
            m.add("first", user_id="u")
            server.fail_with = 503
            with pytest.raises(EmbedderError):
                m.add("second", user_id="u")
            server.fail_with = None
            server.respond = lambda body: {"data": [{"index": 0, "embedding": [1.0, 2.0]}]}
            with pytest.raises(EmbedderError):
                m.add_many([{"messages": "a", "user_id": "u"}, {"messages": "b", "user_id": "u"}])
            server.respond = lambda body: {"nonsense": True}
            with pytest.raises(EmbedderError):
                m.add("third", user_id="u")
            server.respond = None
            assert [x["memory"] for x in m.get_all(user_id="u")["results"]] == ["first"]
    with Memory(home, embedder="openai", openai_base_url="http://127.0.0.1:9/v1") as m:
        with pytest.raises(EmbedderError):
            m.search("unreachable", user_id="u")


def test_store_refuses_another_model(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder(64)) as m:
        m.add("made with 64 dimensions", user_id="u")
    with pytest.raises(EmbeddingModelMismatch):
        Memory(home, embedder=HashEmbedder(128))


def test_unknown_embedder_lists_the_known_ones(home: Path) -> None:
    with pytest.raises(InvalidConfig) as caught:
        Memory(home, embedder="word2vec")
    assert "hash" in str(caught.value) and "local" in str(caught.value)


def test_registering_twice_is_refused() -> None:
    with pytest.raises(InvalidConfig):
        register_embedder("hash", lambda settings: HashEmbedder())
