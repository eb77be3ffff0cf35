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
    limit: int | None = None,
) -> list[FusedHit]:
    """Fuse ``{name: [(id, score), ...best first]}`` into hits, best first (the first ``limit``)."""
    weights = weights or {}
    found = {
        name: {memory_id: (rank, score) for rank, (memory_id, score) in enumerate(ranking, 1)}
        for name, ranking in rankings.items()
    }
    totals = dict.fromkeys((m for entries in found.values() for m in entries), 0.0)
    for name, ranking in rankings.items():
        weight = weights.get(name, 1.0)
        if not ranking:
            continue
        if method == "rrf":
            for rank, (memory_id, _) in enumerate(ranking, start=1):
                totals[memory_id] += weight / (RRF_K + rank)
            continue
        mean, spread = _standardise([score for _, score in ranking])
        floor = (min(score for _, score in ranking) - mean) / spread
        # Every candidate gets the list's floor, and those in the list their lift above it.
        for memory_id in totals:
            totals[memory_id] += weight * floor
        for memory_id, score in ranking:
            totals[memory_id] += weight * ((score - mean) / spread - floor)
    order = sorted(totals, key=lambda memory_id: (-totals[memory_id], memory_id))
    hits = []
    for memory_id in order[:limit]:
        hit = FusedHit(memory_id, totals[memory_id])
        for name, entries in found.items():
            entry = entries.get(memory_id)
            if entry is not None:
                hit.ranks[name], hit.parts[name] = entry
        hits.append(hit)
    return hits
