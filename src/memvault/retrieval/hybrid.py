"""Hybrid retrieval: vector candidates and BM25 candidates inside one scope, fused.

Both candidate lists come from the key scope's in-memory index (decrypted vectors and keyword
postings, which hold that key scope's rows only) and are masked by owner, expiry and filter before
any score counts; metadata filters become an id set computed by the store.

Bounded work per search, whatever the query and the scope (a search holds one of the process's
few search slots): BM25 uses the first ``MAX_QUERY_TERMS`` (64) distinct terms of the query, in
order (a longer query adds nothing to rank by, and each term is hashed with every key scope's
key), and one search visits at most ``MAX_SEARCH_SCOPES`` (1,000) key scopes -- a search by
``agent_id`` or ``run_id`` alone visits one per user holding such rows; beyond that it is refused
with ``InvalidInput`` (422): narrow it with ``user_id``. So a search hashes at most 64,000 terms.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from memvault.clock import now_iso
from memvault.codec import Codec
from memvault.embedding.base import Vectors
from memvault.errors import InvalidInput
from memvault.filters import FilterNode
from memvault.retrieval.fusion import FusedHit, fuse
from memvault.retrieval.ranking import (
    Adjustment,
    Clock,
    RankingAdjustments,
    score_spread,
    system_clock,
)
from memvault.retrieval.relevance import relevance
from memvault.retrieval.text import words
from memvault.retrieval.vector_index import Rescore, ScopeIndex, VectorCache
from memvault.storage.base import MemoryStore
from memvault.storage.rows import MemoryRow
from memvault.validation import Scope

__all__ = ["HybridSearcher", "Mode", "SearchHit"]

_R = TypeVar("_R")

Mode = Literal["hybrid", "vector", "bm25"]
Owners = tuple[str | None, str | None, str | None]
CANDIDATES = 100
FILTER_POOL = 500
MAX_QUERY_TERMS = 64
MAX_SEARCH_SCOPES = 1_000


def query_terms(text: str) -> list[str]:
    """The distinct index terms of a query, in order, at most ``MAX_QUERY_TERMS``."""
    return list(dict.fromkeys(words(text)))[:MAX_QUERY_TERMS]


@dataclass(slots=True)
class _Ranked:
    """A fused candidate on its way to a hit: its ranking score and ranking adjustment."""

    hit: FusedHit
    row: MemoryRow
    score: float
    change: Adjustment | None


@dataclass(slots=True)
class SearchHit:
    row: MemoryRow
    score: float
    explain: dict[str, float | int | None]


def _implied_owners(scope: Scope, scope_id: str, own: Collection[str]) -> Owners:
    """Owner columns still to check inside a key scope's index. In an index of the query's own
    key (``own``: the ids of its live generations) every row has the key owner's column, which
    the associated data binds; any other index is checked on every column."""
    user, agent, run = scope.user_id, scope.agent_id, scope.run_id
    if scope_id in own:
        kind = scope.key_owner[0]
        user = None if kind == "user" else user
        agent = None if kind == "agent" else agent
        run = None if kind == "run" else run
    return user, agent, run


class HybridSearcher:
    def __init__(
        self,
        store: MemoryStore,
        codec: Codec,
        cache: VectorCache,
        embedder_dimensions: Callable[[], int],
        *,
        fusion: str = "zscore",
        bm25_weights: tuple[float, float] = (1.0, 0.5),
        vector_weight: float = 1.0,
        ann_threshold: int = 0,
        adjustments: RankingAdjustments | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._store = store
        self._codec = codec
        self._cache = cache
        self._embedder_dimensions = embedder_dimensions
        self._fusion = fusion
        self._bm25_weights = bm25_weights
        self._ann_threshold = ann_threshold
        self._weights = {"vector": vector_weight, "bm25": 1.0}
        self._adjustments = adjustments or RankingAdjustments()
        self._clock = clock
        self._resealed = False  # once every legacy row is resealed, it stays so
        self._dimensions: int | None = None

    def _legacy_possible(self) -> bool:
        if not self._resealed:
            self._resealed = self._store.get_meta("seal_format") is not None
        return not self._resealed

    def _scope_ids(self, scope: Scope) -> tuple[list[str], frozenset[str]]:
        """The key scopes holding the scope's rows, and which of them are the scope's own key
        owner's (one key-store read)."""
        own = self._codec.live_scopes(scope)
        if scope.user_id is not None:
            # A user's rows are always sealed with the user's key: no query needed (but rows
            # of an older version not resealed yet may still name the key the old way).
            legacy = self._codec.legacy_scopes(scope) if self._legacy_possible() else []
            return own + legacy, frozenset(own)
        return self._store.scope_ids(self._codec.namespace, scope), frozenset(own)

    def _load(self, scope_id: str) -> ScopeIndex:
        # The store records the dimension at its first write; only an empty store asks the
        # embedder (which for an OpenAI-compatible endpoint can cost a probe request).
        if self._dimensions is None:  # written once, never changed: read until it exists
            recorded = self._store.get_meta("embedding_dimensions")
            self._dimensions = int(recorded) if recorded else None
        dimensions = self._dimensions or self._embedder_dimensions()
        index = ScopeIndex(0, dimensions, self._bm25_weights, self._ann_threshold)
        index.version = self._store.scope_vectors(
            scope_id, lambda rows: index.add([self._codec.vector_entry(scope_id, r) for r in rows])
        )
        return index

    def _vectors_of(self, scope_id: str, ids: Sequence[str]) -> dict[str, Vectors]:
        """The decrypted vectors of the scope's rows among ``ids`` (one store read)."""
        return self._codec.vectors(scope_id, self._store.vectors_of(scope_id, ids))

    def _read(
        self, scope_id: str, reader: Callable[[ScopeIndex], _R], version: int | None = None
    ) -> _R:
        """``version``: the scope's version read already by this search (one read serves both
        sides of a hybrid search); else read now."""
        if version is None:
            version = self._store.scope_version(scope_id)
        return self._cache.read(scope_id, version, lambda: self._load(scope_id), reader)

    def _best_of_scopes(
        self,
        scope: Scope,
        scope_ids: Sequence[str],
        limit: int,
        ask: Callable[[str, Owners, ScopeIndex], list[tuple[str, float]] | Rescore],
        own: frozenset[str],
        versions: Mapping[str, int] | None = None,
    ) -> list[tuple[str, float]]:
        """The best ``limit`` hits that ``ask`` finds in each key scope's index, with the owner
        columns the scope does not already imply."""
        found: list[tuple[str, float]] = []
        for scope_id in scope_ids:
            owners = _implied_owners(scope, scope_id, own)
            version = None if versions is None else versions.get(scope_id)
            hits = self._read(scope_id, partial(ask, scope_id, owners), version)
            if isinstance(hits, Rescore):  # outside the cache's lock: reads the store
                hits = hits.finish(partial(self._vectors_of, scope_id))
            found.extend(hits)
        found.sort(key=lambda hit: -hit[1])
        return found[:limit]

    def vector_candidates(
        self,
        query: npt.NDArray[np.float32],
        scope: Scope,
        scope_ids: Sequence[str],
        allowed: set[str] | None,
        limit: int,
        own: frozenset[str] = frozenset(),
        versions: Mapping[str, int] | None = None,
    ) -> list[tuple[str, float]]:
        now = time.time()

        def ask(
            scope_id: str, owners: Owners, index: ScopeIndex
        ) -> list[tuple[str, float]] | Rescore:
            return index.search(query, limit, now=now, owners=owners, allowed=allowed)

        return self._best_of_scopes(scope, scope_ids, limit, ask, own, versions)

    def bm25_candidates(
        self,
        text: str,
        scope: Scope,
        scope_ids: Sequence[str],
        allowed: set[str] | None,
        limit: int,
        own: frozenset[str] = frozenset(),
        versions: Mapping[str, int] | None = None,
    ) -> list[tuple[str, float]]:
        terms = query_terms(text)
        tokens: dict[str, set[str]] = {}  # each scope hashes the words with its own key
        for scope_id in scope_ids:
            cipher = self._codec.existing_cipher(scope_id)
            if cipher is not None and terms:
                tokens[scope_id] = {cipher.token(term) for term in terms}
        now = time.time()

        def ask(scope_id: str, owners: Owners, index: ScopeIndex) -> list[tuple[str, float]]:
            return index.keyword_search(
                tokens[scope_id], limit, now=now, owners=owners, allowed=allowed
            )

        return self._best_of_scopes(scope, list(tokens), limit, ask, own, versions)

    def search(
        self,
        embed_query: Callable[[], npt.NDArray[np.float32]] | None,
        query_text: str,
        scope: Scope,
        node: FilterNode | None,
        *,
        top_k: int,
        threshold: float | None,
        mode: Mode,
    ) -> list[SearchHit]:
        """Fused hits, best first. Both sides read the scope's in-memory index; the query
        embedding is most of the cost, so nothing runs beside it."""
        scope_ids, own = self._scope_ids(scope)
        if not scope_ids:
            return []
        if len(scope_ids) > MAX_SEARCH_SCOPES:
            raise InvalidInput(
                f"this search spans {len(scope_ids)} key scopes (one per user holding such rows);"
                f" a search spans at most {MAX_SEARCH_SCOPES}: add user_id"
            )
        limit = max(CANDIDATES, top_k)
        query_vector = embed_query() if embed_query is not None else None
        # Each scope's version read once, after the embedding: both sides (and every pass of a
        # filtered search) check their indexes against it (one round trip each on Postgres).
        versions = {scope_id: self._store.scope_version(scope_id) for scope_id in scope_ids}

        def candidates(side: str, allowed: set[str] | None, count: int) -> list[tuple[str, float]]:
            if side == "vector":
                assert query_vector is not None
                return self.vector_candidates(
                    query_vector, scope, scope_ids, allowed, count, own, versions
                )
            return self.bm25_candidates(query_text, scope, scope_ids, allowed, count, own, versions)

        sides = [side for side in ("vector", "bm25") if mode in (side, "hybrid")]
        if node is None:
            rankings = {side: candidates(side, None, limit) for side in sides}
        else:
            rankings = self._filtered(candidates, sides, scope, node, limit)
        # Adjustments can lift a candidate from beyond top_k: they rank every fused candidate.
        # The shown score never rises down the list, so a threshold keeps a prefix of it and
        # needs no more candidates than top_k.
        adjusting = self._adjustments.enabled
        fused = fuse(
            rankings,
            method=self._fusion,
            weights=self._weights,
            limit=None if adjusting else top_k,
        )
        rows = self._store.get_many(self._codec.namespace, [hit.id for hit in fused])
        ranked = [
            _Ranked(hit, rows[hit.id], self._score(hit, mode), None)
            for hit in fused
            if hit.id in rows  # else deleted between the two reads
        ]
        if adjusting:
            ranked = self._adjusted(ranked)
        hits = []
        shown = 1.0
        for entry in ranked[:top_k]:
            cosine = self._cosine(entry.hit, entry.row, query_vector)
            calibrated = relevance(cosine, entry.hit.parts.get("bm25"), mode)
            shown = min(shown, calibrated)  # never rising down the list
            if threshold is not None and shown < threshold:
                break
            explain = self._explain(entry.hit, cosine) | {"relevance": calibrated}
            if entry.change is not None:
                explain |= {
                    "unadjusted": entry.score,
                    "adjusted": entry.score + entry.change.total,
                    "decay": entry.change.decay,
                    "recency": entry.change.recency,
                    "reinforcement": entry.change.reinforcement,
                }
            hits.append(SearchHit(entry.row, shown, explain))
        return hits

    def _adjusted(self, ranked: list[_Ranked]) -> list[_Ranked]:
        """The candidates re-ranked by their adjusted ranking scores (ties keep the fused
        order), each with its adjustment."""
        now = self._clock()
        spread = score_spread([entry.score for entry in ranked])
        adjusted = [
            _Ranked(
                entry.hit, entry.row, entry.score, self._adjustments.adjust(entry.row, now, spread)
            )
            for entry in ranked
        ]
        adjusted.sort(
            key=lambda entry: -(entry.score + (entry.change.total if entry.change else 0.0))
        )
        return adjusted

    def _filtered(
        self,
        candidates: Callable[[str, set[str] | None, int], list[tuple[str, float]]],
        sides: list[str],
        scope: Scope,
        node: FilterNode,
        limit: int,
    ) -> dict[str, list[tuple[str, float]]]:
        """Each side's best ``limit`` rows among those the filter admits.

        The filter is first checked on each side's best ``FILTER_POOL`` rows only: when at least
        ``limit`` of them pass (or the pool held every candidate), they are exactly the best
        ``limit`` passing rows, because the filter does not reorder. Otherwise the filter's whole
        id set is computed over the scope and the side searched again inside it. At 10,000
        memories a filter that most rows pass costs 2,000 row checks instead of 10,000.
        """
        pools = {side: candidates(side, None, FILTER_POOL) for side in sides}
        namespace, now = self._codec.namespace, now_iso()
        pooled = {memory_id for pool in pools.values() for memory_id, _ in pool}
        admitted = self._store.ids_matching(namespace, scope, node, now, among=pooled)
        rankings: dict[str, list[tuple[str, float]]] = {}
        allowed: set[str] | None = None
        for side, pool in pools.items():
            kept = [hit for hit in pool if hit[0] in admitted]
            if len(kept) >= limit or len(pool) < FILTER_POOL:
                rankings[side] = kept[:limit]
                continue
            if allowed is None:
                allowed = self._store.ids_matching(namespace, scope, node, now)
            rankings[side] = candidates(side, allowed, limit)
        return rankings

    def _cosine(
        self, hit: FusedHit, row: MemoryRow, query: npt.NDArray[np.float32] | None
    ) -> float | None:
        if "vector" in hit.parts:
            return hit.parts["vector"]
        if query is None:
            return None
        return float(self._codec.open_vector(row) @ query)

    @staticmethod
    def _score(hit: FusedHit, mode: Mode) -> float:
        # The ranking score: a single ranking keeps its own (cosine or BM25), hybrid the fused.
        if mode == "vector":
            return hit.parts["vector"]
        if mode == "bm25":
            return hit.parts["bm25"]
        return hit.score

    @staticmethod
    def _explain(hit: FusedHit, cosine: float | None) -> dict[str, float | int | None]:
        return {
            "fused": hit.score,
            "vector": cosine,
            "vector_rank": hit.ranks.get("vector"),
            "bm25": hit.parts.get("bm25"),
            "bm25_rank": hit.ranks.get("bm25"),
        }
