"""The score a search shows: a relevance in [0, 1] with fixed constants, not a fused z-score.

Fusion (``fusion.py``) ranks the candidates by standardised scores, which only mean something
relative to the other candidates of the same search: a lone hit scores 0 and the rest go
negative. The number shown to callers (``score``, and what ``threshold`` compares with) is
instead computed from each hit's own raw parts, with constants that do not depend on the
query, the scope or how many hits there are:

- meaning: ``v = 1 / (1 + exp(-(cosine - VECTOR_MIDPOINT) / VECTOR_SCALE))``, a logistic of the
  cosine similarity. With all-MiniLM-L6-v2 on bench/data/paraphrase.json, the memory a question
  paraphrases has a cosine of 0.51-0.77 (5th-95th percentile, median 0.66) and the others
  0.01-0.51 (median 0.18; a shared name lifts them), the same text 1.0; so cosine 0.66 gives 0.91,
  0.5 gives 0.5, 0.3 gives 0.05.
- words: ``k = bm25 / (bm25 + BM25_HALF)``, the BM25 score saturated; one rare shared word in a
  scope of a few hundred memories scores about 4-6 BM25, so ``k`` about 0.4-0.5 (in the
  50-memory paraphrase set the right memory's BM25 has a median of 1.1, ``k`` 0.16). BM25's
  idf is the scope's own, so in a scope of one or two memories a shared word is not rare and
  ``k`` stays near 0.
- hybrid: ``1 - (1 - v) * (1 - KEYWORD_SHARE * k)``: meaning alone can reach 1, shared words
  alone at most ``KEYWORD_SHARE``, both together more than either.
- ``mode="vector"`` shows ``v``, ``mode="bm25"`` shows ``k``.

The order of the hits is the fusion's (plus the ranking adjustments'); so that the shown score
never rises down the list, each hit shows at most the score of the hit ranked above it (a running
minimum). ``threshold`` therefore keeps a prefix of the ranking. ``explain=True`` shows the raw
parts: ``fused``, ``vector`` (the cosine), ``bm25``, their ranks, and ``relevance`` (this module's
value before the running minimum).
"""

from __future__ import annotations

import math

__all__ = [
    "BM25_HALF",
    "KEYWORD_SHARE",
    "VECTOR_MIDPOINT",
    "VECTOR_SCALE",
    "relevance",
]

VECTOR_MIDPOINT = 0.5
VECTOR_SCALE = 0.07
BM25_HALF = 6.0
KEYWORD_SHARE = 0.5


def _unit(value: float) -> float:
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


def vector_relevance(cosine: float) -> float:
    exponent = -(cosine - VECTOR_MIDPOINT) / VECTOR_SCALE
    if exponent > 700:  # exp would overflow: the relevance is 0 to double precision
        return 0.0
    return _unit(1.0 / (1.0 + math.exp(exponent)))


def keyword_relevance(bm25: float) -> float:
    bm25 = max(0.0, bm25) if not math.isnan(bm25) else 0.0
    if math.isinf(bm25):
        return 1.0
    return _unit(bm25 / (bm25 + BM25_HALF))


def relevance(cosine: float | None, bm25: float | None, mode: str) -> float:
    """The calibrated relevance of one hit; ``None`` parts count as no evidence."""
    meaning = vector_relevance(cosine) if cosine is not None else 0.0
    words = keyword_relevance(bm25) if bm25 is not None else 0.0
    if mode == "vector":
        return meaning
    if mode == "bm25":
        return words
    return _unit(1.0 - (1.0 - meaning) * (1.0 - KEYWORD_SHARE * words))
