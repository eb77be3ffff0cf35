"""Decrypted vectors of a key scope, held in memory for exact search, in an LRU bounded in bytes.

Vectors are stored encrypted, so the database cannot search them; a scope's vectors are decrypted
once into a numpy matrix and searched exactly (a 10,000 x 384 dot product is about a millisecond).
The same entry holds the scope's keyword postings (``keywords.KeywordIndex``) for BM25.
Each entry remembers the scope version it was built at; the store bumps that version on every
write, so an entry built by this process is patched in place after its own writes and rebuilt when
another process wrote.

A scope of ``ann_threshold`` rows or more is also searched through an HNSW graph
(``retrieval/ann.py``): the graph proposes candidates, which are re-scored exactly here and masked
by owner, expiry and filter; a selective mask (few rows pass) goes to the exact scan of the passing
rows instead. ``VectorCache`` builds the graph in a background thread (the scope is scanned exactly
until it is in) and again once it has had many removals. Smaller scopes, or a process without the
``ann`` extra, keep the exact scan. With ``GraphFiles`` a built graph is also written to disk
sealed with the scope's key, and a scope loaded at the version it was written at takes it from
there instead of building it (``retrieval/graph_files.py``).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from memvault.embedding.base import Vectors
from memvault.retrieval import ann
from memvault.retrieval.graph_files import GraphFiles
from memvault.retrieval.keywords import KeywordIndex

__all__ = ["ScopeIndex", "VectorCache", "VectorEntry"]

_R = TypeVar("_R")


# Below this many rows the scores are computed without BLAS. OpenBLAS runs a matrix-vector
# product on all cores and its idle threads then spin for a while, stealing the core that the
# concurrent BM25 query and the next query's embedding need: measured on 2 cores, hybrid search
# p50 went from 12.5 ms to 8 ms at 10,000 memories with the plain loop, which costs 0.6 ms there.
_BLAS_MIN_ROWS = 50_000

# The ANN path asks the graph for OVERSAMPLING times the candidates wanted among passing rows.
# When the share of rows that pass the masks is below MIN_PASS_SHARE, or the graph would have to
# return more than MAX_CANDIDATE_SHARE of the scope, the passing rows are scanned exactly instead.
OVERSAMPLING = 2
MIN_PASS_SHARE = 0.1
MAX_CANDIDATE_SHARE = 0.05
# A graph is rebuilt in the background once it has had more removals than this share of the
# scope's rows (and at least REBUILD_MIN_REMOVED): removed nodes still cost search time.
REBUILD_REMOVED_SHARE = 0.25
REBUILD_MIN_REMOVED = 1_000
BUILD_ATTEMPTS = 3


def _dot_rows(
    matrix: npt.NDArray[np.float32], query: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    if len(matrix) >= _BLAS_MIN_ROWS:
        return matrix @ query
    scores: npt.NDArray[np.float32] = np.einsum("ij,j->i", matrix, query)
    return scores


@dataclass(slots=True)
class VectorEntry:
    id: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    expires: float  # epoch seconds; inf when it never expires
    vector: npt.NDArray[np.float32]
    body: str  # the keyed token hashes of the text, as the full-text table holds them
    context: str  # the same for the context field


@dataclass(slots=True)
class ScopeIndex:
    """One key scope's vectors and keyword postings plus the scope ids needed to mask them."""

    version: int
    dimensions: int
    bm25_weights: tuple[float, float] = (1.0, 0.5)
    ann_threshold: int = 0  # rows from which the HNSW graph is used; 0: never
    ids: list[str] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    matrix: Vectors = field(init=False)
    owners: npt.NDArray[np.object_] = field(init=False)  # (n, 3): user_id, agent_id, run_id
    expires: npt.NDArray[np.float64] = field(init=False)
    keywords: KeywordIndex = field(init=False)
    graph: ann.HnswIndex | None = field(init=False)
    # Write order: a row's sequence number, given when it is added (the store loads a scope in
    # write order, ``ORDER BY rowid``) and kept through updates and moves. Positions are in
    # write order until a removal moves a row; then the order is sorted when next asked.
    sequence: npt.NDArray[np.int64] = field(init=False)
    _next_sequence: int = field(init=False, default=0)
    _moved: bool = field(init=False, default=False)
    _order: npt.NDArray[np.intp] | None = field(init=False, default=None)
    _rank: npt.NDArray[np.intp] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.matrix = np.zeros((16, self.dimensions), dtype=np.float32)
        self.owners = np.empty((16, 3), dtype=object)
        self.expires = np.full(16, math.inf)
        self.sequence = np.zeros(16, dtype=np.int64)
        self.keywords = KeywordIndex(self.bm25_weights)
        self.graph = None

    @property
    def wants_graph(self) -> bool:
        """Whether the scope is large enough for the HNSW graph (and the library is there)."""
        return 0 < self.ann_threshold <= self.size and ann.available()

    @property
    def uses_graph(self) -> bool:
        """Whether searches go through the HNSW graph: wanted, and built."""
        return self.graph is not None and self.wants_graph

    def prepare(self) -> None:
        """Build the HNSW graph now if the scope wants one and has none yet (``VectorCache``
        builds it in the background instead; this is for callers that can wait)."""
        if self.graph is None and self.wants_graph:
            graph = ann.HnswIndex(self.dimensions)
            graph.build(self.matrix[: self.size])
            self.graph = graph

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        arrays = self.matrix.nbytes + self.owners.nbytes + self.expires.nbytes
        graph = self.graph.nbytes if self.graph is not None else 0
        return int(arrays) + self.keywords.nbytes + 100 * self.size + graph

    def _reserve(self, count: int) -> None:
        need = self.size + count
        if need <= len(self.matrix):
            return
        capacity = max(need, 2 * len(self.matrix))
        matrix = np.zeros((capacity, self.dimensions), dtype=np.float32)
        matrix[: self.size] = self.matrix[: self.size]
        owners = np.empty((capacity, 3), dtype=object)
        owners[: self.size] = self.owners[: self.size]
        expires = np.full(capacity, math.inf)
        expires[: self.size] = self.expires[: self.size]
        sequence = np.zeros(capacity, dtype=np.int64)
        sequence[: self.size] = self.sequence[: self.size]
        self.matrix, self.owners, self.expires = matrix, owners, expires
        self.sequence = sequence

    def add(self, entries: Sequence[VectorEntry]) -> None:
        self._reserve(len(entries))
        start = self.size
        fresh: list[VectorEntry] = []
        replaced: set[int] = set()
        for entry in entries:
            if entry.id in self.positions:
                position = self.positions[entry.id]
                if position >= start:  # the same new id twice in one call: the last wins
                    fresh[position - start] = entry
                else:
                    self.keywords.put(position, entry.body, entry.context)
                    replaced.add(position)
            else:
                position = self.size
                self.positions[entry.id] = position
                self.ids.append(entry.id)
                fresh.append(entry)
                self.sequence[position] = self._next_sequence
                self._next_sequence += 1
                self._order = self._rank = None
            self.matrix[position] = entry.vector
            self.owners[position] = (entry.user_id, entry.agent_id, entry.run_id)
            self.expires[position] = entry.expires
        # New rows take consecutive positions: their postings are built in one pass.
        self.keywords.put_many(start, [e.body for e in fresh], [e.context for e in fresh])
        if self.graph is not None:
            touched = np.array(sorted(replaced), dtype=np.intp)
            touched = np.concatenate([touched, np.arange(start, self.size, dtype=np.intp)])
            self.graph.put(touched, self.matrix[touched])

    def remove(self, ids: Sequence[str]) -> None:
        """Swap each removed row with the last one: O(1) per removal."""
        for memory_id in ids:
            position = self.positions.pop(memory_id, None)
            if position is None:
                continue
            last = self.size - 1
            self.keywords.drop(position)
            if self.graph is not None:
                self.graph.remove(position, last)
            if position != last:
                moved = self.ids[last]
                self.ids[position] = moved
                self.positions[moved] = position
                self.matrix[position] = self.matrix[last]
                self.owners[position] = self.owners[last]
                self.expires[position] = self.expires[last]
                self.sequence[position] = self.sequence[last]
                self.keywords.move(last, position)
                self._moved = True
            self._order = self._rank = None
            self.ids.pop()
            self.owners[last] = (None, None, None)

    def _live(
        self,
        n: int,
        now: float,
        owners: tuple[str | None, str | None, str | None],
        allowed: set[str] | None,
    ) -> npt.NDArray[np.bool_]:
        """Which of the first n rows are unexpired, owned as asked and in ``allowed``."""
        mask = self.expires[:n] > now
        for column, wanted in enumerate(owners):
            if wanted is not None:
                mask &= self.owners[:n, column] == wanted
        if allowed is not None:
            mask &= np.fromiter((i in allowed for i in self.ids), dtype=bool, count=n)
        return mask

    def _live_at(
        self,
        positions: npt.NDArray[np.intp],
        now: float,
        owners: tuple[str | None, str | None, str | None],
        allowed: set[str] | None,
    ) -> npt.NDArray[np.bool_]:
        """``_live`` for the rows at ``positions`` only."""
        mask = self.expires[positions] > now
        for column, wanted in enumerate(owners):
            if wanted is not None:
                mask &= self.owners[positions, column] == wanted
        if allowed is not None:
            ids = self.ids
            mask &= np.fromiter(
                (ids[p] in allowed for p in positions), dtype=bool, count=len(positions)
            )
        return mask

    def _best(
        self, positions: npt.NDArray[np.intp], scores: npt.NDArray[np.floating[Any]], limit: int
    ) -> list[tuple[str, float]]:
        """The ``limit`` best, in one total order: score, then position in the index. A fixed
        order among equal scores keeps answers the same however the candidates were cut."""
        k = min(limit, len(positions))
        if k == 0:
            return []
        if k < len(positions):
            kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
            above = np.flatnonzero(scores > kth)
            top = np.concatenate([above, np.flatnonzero(scores == kth)[: k - len(above)]])
        else:
            top = np.arange(k)
        top = top[np.lexsort((top, -scores[top]))]
        return [(self.ids[positions[i]], float(scores[i])) for i in top]

    def search(
        self,
        query: npt.NDArray[np.float32],
        limit: int,
        *,
        now: float,
        owners: tuple[str | None, str | None, str | None],
        allowed: set[str] | None,
    ) -> list[tuple[str, float]]:
        """Top ``limit`` (id, cosine) among live rows owned as asked (and in ``allowed``)."""
        n = self.size
        if n == 0:
            return []
        if self.uses_graph:
            return self._graph_search(query, limit, now=now, owners=owners, allowed=allowed)
        scores = _dot_rows(self.matrix[:n], query)
        positions = np.flatnonzero(self._live(n, now, owners, allowed))
        return self._best(positions, scores[positions], limit)

    def _graph_search(
        self,
        query: npt.NDArray[np.float32],
        limit: int,
        *,
        now: float,
        owners: tuple[str | None, str | None, str | None],
        allowed: set[str] | None,
    ) -> list[tuple[str, float]]:
        """The HNSW graph's candidates, masked, then re-scored exactly; the passing rows scanned
        exactly when few pass. The share of passing rows is first bounded by the filter's size,
        then measured on the candidates, and the graph asked again for enough of them."""
        assert self.graph is not None
        n = self.size
        wanted = min(limit * OVERSAMPLING, n)
        share = 1.0 if allowed is None else len(allowed) / n
        while share >= MIN_PASS_SHARE:
            count = math.ceil(wanted / share)
            if count > max(MAX_CANDIDATE_SHARE * n, wanted):
                break
            positions = np.sort(self.graph.candidates(query, count))
            positions = positions[self._live_at(positions, now, owners, allowed)]
            if len(positions) >= wanted or count >= n:
                return self._best(positions, _dot_rows(self.matrix[positions], query), limit)
            # Too few passed: ask again for as many as this pass rate needs, and a margin.
            share = min(share, 0.8 * len(positions) / count)
        return self._passing_scan(query, limit, now=now, owners=owners, allowed=allowed)

    def _passing_scan(
        self,
        query: npt.NDArray[np.float32],
        limit: int,
        *,
        now: float,
        owners: tuple[str | None, str | None, str | None],
        allowed: set[str] | None,
    ) -> list[tuple[str, float]]:
        """Exact scores of the passing rows only."""
        if allowed is not None:
            found = (self.positions.get(memory_id) for memory_id in allowed)
            positions = np.sort(np.fromiter((p for p in found if p is not None), dtype=np.intp))
            positions = positions[self._live_at(positions, now, owners, None)]
        else:
            positions = np.flatnonzero(self._live(self.size, now, owners, None))
        return self._best(positions, _dot_rows(self.matrix[positions], query), limit)

    def _write_order(self) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """The positions in write order, and each position's rank in it."""
        if self._order is None or self._rank is None or len(self._order) != self.size:
            if self._moved:
                order = np.argsort(self.sequence[: self.size], kind="stable").astype(np.intp)
                rank = np.empty(self.size, dtype=np.intp)
                rank[order] = np.arange(self.size, dtype=np.intp)
            else:
                order = rank = np.arange(self.size, dtype=np.intp)
            self._order, self._rank = order, rank
        return self._order, self._rank

    def neighbours(
        self, memory_id: str, count: int, *, now: float, reach: int = 64
    ) -> list[tuple[str, int]]:
        """The unexpired rows written just before and just after ``memory_id`` by the same
        owners (user, agent and run all equal): at most ``count`` on each side, each with its
        signed offset in that owners' write order (-1 = just before it, 1 = just after). At
        most ``reach`` rows are looked at on each side, so the work is bounded however the
        owners' rows interleave."""
        position = self.positions.get(memory_id)
        if position is None or count <= 0:
            return []
        order, rank = self._write_order()
        owner = tuple(self.owners[position])
        at = int(rank[position])
        found: list[tuple[str, int]] = []
        for step in (-1, 1):
            distance = 0
            cursor = at
            for _ in range(reach):
                cursor += step
                if cursor < 0 or cursor >= self.size or distance >= count:
                    break
                other = int(order[cursor])
                if tuple(self.owners[other]) != owner:
                    continue
                if self.expires[other] <= now:
                    continue
                distance += 1
                found.append((self.ids[other], step * distance))
        return found

    def admitted(
        self,
        ids: Collection[str],
        *,
        now: float,
        owners: tuple[str | None, str | None, str | None],
        allowed: set[str] | None,
    ) -> set[str]:
        """Which of ``ids`` are rows of this index that are unexpired, owned as asked and in
        ``allowed``: the same masks a search applies to its own candidates."""
        known = [memory_id for memory_id in ids if memory_id in self.positions]
        if not known:
            return set()
        positions = np.fromiter((self.positions[m] for m in known), dtype=np.intp, count=len(known))
        keep = self._live_at(positions, now, owners, allowed)
        return {memory_id for memory_id, kept in zip(known, keep, strict=True) if kept}

    def keyword_search(
        self,
        tokens: set[str],
        limit: int,
        *,
        now: float,
        owners: tuple[str | None, str | None, str | None],
        allowed: set[str] | None,
    ) -> list[tuple[str, float]]:
        """Top ``limit`` (id, BM25) among live rows holding a token, owned as asked."""
        n = self.size
        if n == 0 or not tokens:
            return []
        positions, scores = self.keywords.scores(tokens, n)
        keep = self._live(n, now, owners, allowed)[positions]
        return self._best(positions[keep], scores[keep], limit)


class VectorCache:
    """Scope indexes, least recently used dropped first once over ``budget_bytes``."""

    def __init__(self, budget_bytes: int, files: GraphFiles | None = None) -> None:
        self._budget = budget_bytes
        self._entries: OrderedDict[str, ScopeIndex] = OrderedDict()
        self._lock = threading.Lock()
        self._files_lock = threading.Lock()  # a file's write against its deletion (``drop``)
        self._rebuilding: set[str] = set()
        self._files = files
        self.builds = 0  # background graph jobs finished (loaded, built, or given up)
        self._counts = {"built": 0, "loaded": 0, "stale": 0, "refused": 0, "saved": 0}

    def stats(self) -> dict[str, int]:
        """Graphs ``built`` from vectors, ``loaded`` from their sealed file, files found
        ``stale`` (writes came since) or ``refused`` (failed to open), graphs ``saved``."""
        with self._lock:
            return dict(self._counts)

    def get(self, scope_id: str, version: int, load: Callable[[], ScopeIndex]) -> ScopeIndex:
        with self._lock:
            index = self._entries.get(scope_id)
            if index is not None and index.version == version:
                self._entries.move_to_end(scope_id)
                return index
        index = load()
        with self._lock:
            self._entries[scope_id] = index
            self._entries.move_to_end(scope_id)
            self._evict()
            self._build_if_needed(scope_id, index)
        return index

    def read(
        self,
        scope_id: str,
        version: int,
        load: Callable[[], ScopeIndex],
        reader: Callable[[ScopeIndex], _R],
    ) -> _R:
        """``reader(index)`` on the scope's index, loaded first when missing or stale."""
        index = self.get(scope_id, version, load)
        with self._lock:  # apply() patches indexes in place
            return reader(index)

    def apply(
        self,
        scope_id: str,
        before: int,
        after: int,
        *,
        added: Sequence[VectorEntry] = (),
        removed: Sequence[str] = (),
    ) -> None:
        """Patch a cached index after this process's own committed write, or drop it if stale."""
        with self._lock:
            index = self._entries.get(scope_id)
            if index is None:
                return
            if index.version != before:
                del self._entries[scope_id]
                return
            index.remove(removed)
            index.add(added)
            index.version = after
            self._evict()
            self._build_if_needed(scope_id, index)

    def _build_if_needed(self, scope_id: str, index: ScopeIndex) -> None:
        """Start a background graph build for a scope that wants one and has none, or whose graph
        has had many removals (removed nodes still cost search time). Called under the lock."""
        graph = index.graph
        if not index.wants_graph or scope_id in self._rebuilding:
            return
        if graph is None or graph.removed > max(
            REBUILD_MIN_REMOVED, REBUILD_REMOVED_SHARE * index.size
        ):
            self._rebuilding.add(scope_id)
            threading.Thread(
                target=self._build,
                args=(scope_id, index),
                name="memvault-ann-build",
                daemon=True,
            ).start()

    def _build(self, scope_id: str, index: ScopeIndex) -> None:
        """A fresh HNSW graph built off the lock from a snapshot of the scope's vectors, swapped
        in if no write came meanwhile (else tried again, up to BUILD_ATTEMPTS times; the next
        write starts another). Until then the scope is scanned exactly."""
        try:
            if self._files is not None and index.graph is None and self._load(scope_id, index):
                return
            for _ in range(BUILD_ATTEMPTS):
                with self._lock:
                    if self._entries.get(scope_id) is not index:
                        return
                    version, snapshot = index.version, index.matrix[: index.size].copy()
                    ids = list(index.ids)
                graph = ann.HnswIndex(index.dimensions)
                graph.build(snapshot)
                plain = graph.dump(ids) if self._files is not None else None
                with self._lock:
                    if index.version == version and self._entries.get(scope_id) is index:
                        index.graph = graph
                        self._counts["built"] += 1
                        self._evict()
                    else:
                        continue
                if plain is not None:
                    self._save(scope_id, index, version, plain)
                return
        finally:
            with self._lock:
                self._rebuilding.discard(scope_id)
                self.builds += 1

    def _load(self, scope_id: str, index: ScopeIndex) -> bool:
        """Take the scope's graph from its sealed file if that was written at this version."""
        assert self._files is not None
        with self._lock:
            if self._entries.get(scope_id) is not index:
                return True
            version, positions = index.version, dict(index.positions)
        found = self._files.load(scope_id, version, index.dimensions, positions)
        with self._lock:
            if found.outcome != "missing":
                self._counts[found.outcome] += 1
            if found.graph is None:
                return False
            if index.version == version and self._entries.get(scope_id) is index:
                index.graph = found.graph
                self._evict()
                return True
            return False

    def _save(self, scope_id: str, index: ScopeIndex, version: int, plain: bytes) -> None:
        """Write the sealed graph; deleted again if the scope was dropped meanwhile (an erase or
        a key rotation), so no file outlives the drop."""
        assert self._files is not None
        with self._files_lock:
            saved = self._files.save(scope_id, version, index.dimensions, plain)
            with self._lock:
                dropped = self._entries.get(scope_id) is not index
                self._counts["saved"] += int(saved and not dropped)
            if dropped:
                self._files.delete(scope_id)

    def drop(self, scope_id: str | None = None) -> None:
        """Forget a scope's index (every one with None); a scope's sealed graph file too (its key
        was destroyed or its rows moved to another key)."""
        with self._lock:
            if scope_id is None:
                self._entries.clear()
            else:
                self._entries.pop(scope_id, None)
        if scope_id is not None and self._files is not None:
            with self._files_lock:
                self._files.delete(scope_id)

    def _evict(self) -> None:
        total = sum(index.nbytes for index in self._entries.values())
        while total > self._budget and len(self._entries) > 1:
            _, dropped = self._entries.popitem(last=False)
            total -= dropped.nbytes
