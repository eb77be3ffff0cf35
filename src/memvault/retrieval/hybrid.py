"""Hybrid retrieval: vector candidates and BM25 candidates inside one scope, fused.

Both candidate lists are restricted to the caller's namespace and scope before any score is
computed: the vector side masks rows by owner in the scope's index (which holds that key scope's
rows only), the BM25 side carries the scope in its SQL WHERE clause, and metadata filters become an
id set computed in SQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from memvault.clock import now_iso
from memvault.codec import Codec
from memvault.filters import FilterNode
from memvault.retrieval.fusion import FusedHit, fuse
from memvault.retrieval.text import words
from memvault.retrieval.vector_index import ScopeIndex, VectorCache
from memvault.storage.sqlite import MemoryRow, SQLiteStore
from memvault.validation import Scope

__all__ = ["HybridSearcher", "Mode", "SearchHit"]

Mode = Literal["hybrid", "vector", "bm25"]
CANDIDATES = 100


@dataclass(slots=True)
class SearchHit:
    row: MemoryRow
    score: float
    explain: dict[str, float | int | None]


def _is_key_scope(scope: Scope) -> bool:
    """True when the query scope is exactly one key scope (today: a user and nothing else)."""
    return scope.user_id is not None and scope.agent_id is None and scope.run_id is None


def _implied_owners(scope: Scope, scope_id: str) -> tuple[str | None, str | None, str | None]:
    """Owner columns still to check inside a key scope's index (its own id holds for every row)."""
    user, agent, run = scope.user_id, scope.agent_id, scope.run_id
    kind, _, owner = scope_id.rpartition("/")[2].partition(":")
    if kind == "user" and owner == user:
        user = None
    elif kind == "agent" and owner == agent and user is None:
        agent = None
    elif kind == "run" and owner == run and user is None and agent is None:
        run = None
    return user, agent, run


class HybridSearcher:
    def __init__(
        self,
        store: SQLiteStore,
        codec: Codec,
        cache: VectorCache,
        embedder_dimensions: Callable[[], int],
        *,
        fusion: str = "zscore",
        bm25_weights: tuple[float, float] = (1.0, 0.5),
        vector_weight: float = 1.0,
    ) -> None:
        self._store = store
        self._codec = codec
        self._cache = cache
        self._embedder_dimensions = embedder_dimensions
        self._fusion = fusion
        self._bm25_weights = bm25_weights
        self._weights = {"vector": vector_weight, "bm25": 1.0}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="memvault-bm25")

    def _scope_ids(self, scope: Scope) -> list[str]:
        if scope.user_id is not None:
            # A user's rows are always sealed with the user's key: no query needed.
            return self._codec.live_scopes(f"user:{scope.user_id}")
        return self._store.scope_ids(self._codec.namespace, scope)

    def _load(self, scope_id: str) -> ScopeIndex:
        version, rows = self._store.scope_vectors(scope_id)
        # The store records the dimension at its first write; only an empty store asks the
        # embedder (which for an OpenAI-compatible endpoint can cost a probe request).
        recorded = self._store.get_meta("embedding_dimensions")
        dimensions = int(recorded) if recorded else self._embedder_dimensions()
        index = ScopeIndex(version, dimensions)
        index.add([self._codec.vector_entry(scope_id, row) for row in rows])
        return index

    def vector_candidates(
        self,
        query: npt.NDArray[np.float32],
        scope: Scope,
        scope_ids: Sequence[str],
        allowed: set[str] | None,
        limit: int,
    ) -> list[tuple[str, float]]:
        now = time.time()
        found: list[tuple[str, float]] = []
        for scope_id in scope_ids:
            owners = _implied_owners(scope, scope_id)
            version = self._store.scope_version(scope_id)
            found.extend(
                self._cache.search(
                    scope_id,
                    version,
                    lambda sid=scope_id: self._load(sid),  # type: ignore[misc]
                    query,
                    limit,
                    now=now,
                    owners=owners,
                    allowed=allowed,
                )
            )
        found.sort(key=lambda hit: -hit[1])
        return found[:limit]

    def bm25_candidates(
        self, text: str, scope: Scope, scope_ids: Sequence[str], node: FilterNode | None, limit: int
    ) -> list[tuple[str, float]]:
        terms = sorted(set(words(text)))
        tokens: set[str] = set()
        for scope_id in scope_ids:
            cipher = self._codec.existing_cipher(scope_id)
            if cipher is not None:
                tokens.update(cipher.token(term) for term in terms)
        if not tokens:
            return []
        match = " OR ".join(sorted(tokens))
        return self._store.bm25(
            self._codec.namespace,
            scope,
            node,
            match,
            now=now_iso(),
            limit=limit,
            weights=self._bm25_weights,
            whole_key_scope=node is None and _is_key_scope(scope),
        )

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
        """Fused hits, best first. In hybrid mode BM25 runs in a worker thread while this
        thread embeds the query: SQLite and ONNX Runtime both release the GIL, so on two cores
        the BM25 side costs almost nothing on top of the embedding."""
        scope_ids = self._scope_ids(scope)
        if not scope_ids:
            return []
        limit = max(CANDIDATES, top_k)
        rankings: dict[str, list[tuple[str, float]]] = {}
        pending: Future[list[tuple[str, float]]] | None = None
        if mode == "hybrid":
            pending = self._pool.submit(
                self.bm25_candidates, query_text, scope, scope_ids, node, limit
            )
        elif mode == "bm25":
            rankings["bm25"] = self.bm25_candidates(query_text, scope, scope_ids, node, limit)
        try:
            query_vector = embed_query() if embed_query is not None else None
            if mode in ("hybrid", "vector"):
                assert query_vector is not None
                allowed = (
                    self._store.ids_matching(self._codec.namespace, scope, node, now_iso())
                    if node is not None
                    else None
                )
                rankings["vector"] = self.vector_candidates(
                    query_vector, scope, scope_ids, allowed, limit
                )
        finally:
            if pending is not None:
                bm25 = pending.result()  # also re-raises a BM25 failure
        if pending is not None:
            rankings["bm25"] = bm25
        fused = fuse(rankings, method=self._fusion, weights=self._weights)
        if threshold is None:
            fused = fused[:top_k]
        rows = self._store.get_many(self._codec.namespace, [hit.id for hit in fused])
        hits = []
        for hit in fused:
            row = rows.get(hit.id)
            if row is None:  # deleted between the two reads
                continue
            cosine = self._cosine(hit, row, query_vector)
            if threshold is not None and (cosine is None or cosine < threshold):
                continue
            hits.append(SearchHit(row, self._score(hit, mode), self._explain(hit, cosine)))
            if len(hits) == top_k:
                break
        return hits

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _cosine(
        self, hit: FusedHit, row: MemoryRow, query: npt.NDArray[np.float32] | None
    ) -> float | None:
        if "vector" in hit.parts:
            return hit.parts["vector"]
        if query is None:
            return None
        return float(self._codec.open_vector(row.scope_id, row.id, row.vector_box) @ query)

    @staticmethod
    def _score(hit: FusedHit, mode: Mode) -> float:
        # A single ranking keeps its own, readable score (cosine or BM25).
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
