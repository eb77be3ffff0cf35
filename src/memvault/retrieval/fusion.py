"""Fusing the vector and BM25 rankings into one.

Two methods, both measured by bench/locomo.py:
- ``rrf``: reciprocal rank fusion, ``sum 1 / (k + rank)``; ignores the scores' scale.
- ``zscore``: each list's scores standardised (mean 0, deviation 1) over its candidates, then
  added with weights; a candidate missing from a list counts as that list's lowest score. It keeps
  how far ahead a clear winner is, which RRF throws away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["FusedHit", "fuse"]

RRF_K = 60


@dataclass(slots=True)
class FusedHit:
    id: str
    score: float
    parts: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)


def _standardise(scores: Sequence[float]) -> tuple[float, float]:
    mean = sum(scores) / len(scores)
    spread = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    return mean, spread if spread > 1e-9 else 1.0


def fuse(
    rankings: dict[str, list[tuple[str, float]]],
    *,
    method: str = "zscore",
    weights: dict[str, float] | None = None,
) -> list[FusedHit]:
    """Fuse ``{name: [(id, score), ...best first]}`` into hits, best first."""
    weights = weights or {}
    hits: dict[str, FusedHit] = {}
    for name, ranking in rankings.items():
        for rank, (memory_id, score) in enumerate(ranking, start=1):
            hit = hits.setdefault(memory_id, FusedHit(memory_id, 0.0))
            hit.parts[name] = score
            hit.ranks[name] = rank
    for name, ranking in rankings.items():
        weight = weights.get(name, 1.0)
        if not ranking:
            continue
        if method == "rrf":
            for hit in hits.values():
                if name in hit.ranks:
                    hit.score += weight / (RRF_K + hit.ranks[name])
            continue
        mean, spread = _standardise([score for _, score in ranking])
        floor = (min(score for _, score in ranking) - mean) / spread
        for hit in hits.values():
            z = (hit.parts[name] - mean) / spread if name in hit.parts else floor
            hit.score += weight * z
    return sorted(hits.values(), key=lambda h: (-h.score, h.id))
