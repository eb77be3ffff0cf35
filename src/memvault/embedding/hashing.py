"""A deterministic embedder with no model: for tests and for trying the API offline in a second.

Words (stemmed, as BM25 sees them) are hashed into signed buckets, so texts that share words have a
positive dot product. It captures no meaning beyond shared words: use ``local`` for real recall.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

import numpy as np

from memvault.embedding.base import Vectors, normalize_rows
from memvault.retrieval.text import words

__all__ = ["HashEmbedder"]


class HashEmbedder:
    """Feature hashing of words and word pairs into ``dimensions`` buckets."""

    def __init__(self, dimensions: int = 256) -> None:
        self.dimensions = dimensions
        self.model_id = f"hash-v1-{dimensions}"

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimensions, dtype=np.float32)
        terms = words(text) or text.lower().split()
        features = terms + [f"{a} {b}" for a, b in itertools.pairwise(terms)]
        for feature in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dimensions
            vector[bucket] += 1.0 if digest[4] & 1 else -1.0
        return vector

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return normalize_rows(np.stack([self._vector(t) for t in texts]))
