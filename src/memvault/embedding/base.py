"""The embedder seam: one method to implement, capabilities as typed attributes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["Embedder", "Vectors", "normalize_rows"]

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors; similar meaning gives a high dot product.

    ``model_id`` names the model and version: a store remembers it and refuses another, because
    vectors of two models do not compare. ``dimensions`` is the vector length.
    """

    @property
    def model_id(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """An array of shape ``(len(texts), dimensions)``, rows L2-normalized."""
        ...


def normalize_rows(matrix: npt.NDArray[np.floating]) -> Vectors:
    """Rows scaled to unit length (a zero row stays zero)."""
    as32 = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(as32, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(as32 / norms, dtype=np.float32)
