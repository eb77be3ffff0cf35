"""Fusing the vector and BM25 rankings into one.

Two methods, both measured by bench/locomo.py:
- ``rrf``: reciprocal rank fusion, ``sum 1 / (k + rank)``; ignores the scores' scale.
- ``zscore``: each list's scores standardised (mean 0, deviation 1) over its candidates, then
  added with weights; a candidate missing from a list counts as that list's lowest score. It keeps
  how far ahead a clear winner is, which RRF throws away.
- ``adaptive``: ``zscore`` with two query-dependent damping rules (#18), for questions whose
  words match only names and common words: (1) a list's spread counts as at least
  ``SPREAD_FLOOR`` times its mean score's size, so a flat list (every candidate sharing the
  same weak word) is not stretched into large z-scores; (2) the BM25 list's weight is multiplied
  by ``top / (top + KEYWORD_HALF)`` of its best raw score, so weak keyword evidence counts less.
  Both constants are fixed; bench/paraphrase.py and bench/locomo.py measured them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["FusedHit", "fuse"]

RRF_K = 60
SPREAD_FLOOR = 1.0
KEYWORD_HALF = 12.0


@dataclass(slots=True)
class FusedHit:
    id: str
    score: float
    parts: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)


def _standardise(scores: Sequence[float], floor: float = 0.0) -> tuple[float, float]:
    mean = sum(scores) / len(scores)
    spread = max(math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores)), floor * abs(mean))
    return mean, spread if spread > 1e-9 else 1.0


def fuse(
    rankings: dict[str, list[tuple[str, float]]],
    *,
    method: str = "zscore",
    weights: dict[str, float] | None = None,
    limit: int | None = None,
    floors: dict[str, float] | None = None,
) -> list[FusedHit]:
    """Fuse ``{name: [(id, score), ...best first]}`` into hits, best first (the first ``limit``).

    ``floors``: for the named lists, the score a candidate missing from the list counts as (a
    list of links scores 0 for the unlinked), standardised with the list's own scores; other
    lists count a missing candidate as their lowest score."""
    floors = floors or {}
    weights = dict(weights or {})
    adaptive = method == "adaptive"
    keywords = rankings.get("bm25")
    if adaptive and keywords and len(rankings) > 1:
        top = max(0.0, keywords[0][1])
        weights["bm25"] = weights.get("bm25", 1.0) * top / (top + KEYWORD_HALF)
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
        floor = SPREAD_FLOOR if adaptive else 0.0
        scores = [score for _, score in ranking]
        if name in floors:
            scores.append(min(floors[name], *scores))
        mean, spread = _standardise(scores, floor)
        lowest = (min(scores) - mean) / spread
        # Every candidate gets the list's floor, and those in the list their lift above it.
        for memory_id in totals:
            totals[memory_id] += weight * lowest
        for memory_id, score in ranking:
            totals[memory_id] += weight * ((score - mean) / spread - lowest)
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
