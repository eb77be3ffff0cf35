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
``ann`` extra, keep the exact scan. Once the graph is in, a ``VectorCache(compact=True)`` (as
``Memory`` makes) drops the scope's float matrix: searches then return a ``Rescore``, finished
outside the cache's lock with the candidates' vectors read from the store. With ``GraphFiles`` a
built graph is also written to disk sealed with the scope's key (and again after later writes),
and a loaded scope takes it from there, caught up with the writes since, instead of building it
(``retrieval/graph_files.py``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from memvault.embedding.base import Vectors
from memvault.errors import MemvaultError
from memvault.retrieval import ann
from memvault.retrieval.graph_files import GraphFiles
from memvault.retrieval.keywords import KeywordIndex

__all__ = ["Rescore", "ScopeIndex", "VectorCache", "VectorEntry"]

log = logging.getLogger(__name__)

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
# A graph patched by writes is sealed to disk again after this many row changes, or this many
# seconds after the first unsaved one.
RESEAL_CHANGES = 10_000
RESEAL_SECONDS = 300.0


# Without the float matrix (``ScopeIndex.compact``): the graph's candidates are re-scored with
# their vectors read from the store, the best RESCORE_SHARE of them by the graph's int8 order
# (and any other whose int8 score reaches the last exact one). A selective filter's passing rows
# are all read when at most READ_ALL_ROWS, else scored from the int8 vectors (SCAN_CHUNK rows a
# step) and read only where their error bound reaches the top. READ_CHUNK ids per store read.
RESCORE_SHARE = 0.6
READ_ALL_ROWS = 2_000
SCAN_CHUNK = 50_000
READ_CHUNK = 10_000
SLACK_EPSILON = 1e-4
# A graph candidate outside the first RESCORE_SHARE (and limit + RESCORE_MARGIN) is read too when
# its int8 cosine is within GRAPH_SLACK of the limit-th exact score (a margin, not a bound: the
# graph's candidates are approximate anyway; measured, a wider one read many rows for little).
RESCORE_MARGIN = 10
GRAPH_SLACK = 0.0


def _top(
    positions: npt.NDArray[np.intp], scores: npt.NDArray[np.floating[Any]], limit: int
) -> npt.NDArray[np.intp]:
    """Indexes of the ``limit`` best: score, then position (a fixed order among equal scores
    keeps answers the same however the candidates were cut)."""
    k = min(limit, len(positions))
    if k == 0:
        return np.zeros(0, dtype=np.intp)
    if k < len(positions):
        kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
        above = np.flatnonzero(scores > kth)
        top = np.concatenate([above, np.flatnonzero(scores == kth)[: k - len(above)]])
    else:
        top = np.arange(k)
    ordered: npt.NDArray[np.intp] = top[np.lexsort((positions[top], -scores[top]))]
    return ordered


Fetch = Callable[[Sequence[str]], Mapping[str, Vectors]]


@dataclass(slots=True)
class Rescore:
    """Candidates of a scope that keeps no float matrix, scored exactly by ``finish`` with their
    vectors read from the store. ``finish`` runs outside ``VectorCache``'s lock: reading a key
    may tell the keyring's listeners of a key destroyed meanwhile, and they take that lock.
    ``approximate``: the int8 score of each candidate, which orders the reads; ``slack``: its
    error bound when ``bounded`` (the answer must be exact: a row is read unless its bound cannot
    reach the limit-th exact score), else a margin. Without them all are read. A row gone from
    the store meanwhile is left out."""

    query: npt.NDArray[np.float32]
    limit: int
    ids: list[str]
    positions: npt.NDArray[np.intp]
    approximate: npt.NDArray[np.float32] | None
    slack: npt.NDArray[np.float32] | None
    bounded: bool = True  # ``slack`` is a bound (exact answer), not a margin (graph candidates)

    def finish(self, fetch: Fetch) -> list[tuple[str, float]]:
        everything = np.arange(len(self.ids), dtype=np.intp)
        if self.approximate is None:
            chosen, scores = self._score(everything, fetch)
        else:
            assert self.slack is not None
            order = everything[np.lexsort((self.positions, -self.approximate))]
            if self.bounded:
                first = order[: 4 * self.limit]
            else:
                share = math.ceil(RESCORE_SHARE * len(order))
                first = order[: max(self.limit + RESCORE_MARGIN, share)]
            chosen, scores = self._score(first, fetch)
            rest = order[len(first) :]
            if len(rest):
                if len(scores) >= self.limit:
                    kth = float(np.partition(scores, len(scores) - self.limit)[-self.limit])
                    rest = rest[self.approximate[rest] + self.slack[rest] >= kth]
                elif not self.bounded:  # rows gone meanwhile: the next best by the graph
                    rest = rest[: self.limit]
                more, extra = self._score(rest, fetch)
                chosen, scores = np.concatenate([chosen, more]), np.concatenate([scores, extra])
        top = _top(self.positions[chosen], scores, self.limit)
        return [(self.ids[chosen[i]], float(scores[i])) for i in top]

    def _score(
        self, which: npt.NDArray[np.intp], fetch: Fetch
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
        """The exact scores of the candidates ``which`` still in the store."""
        kept: list[int] = []
        rows: list[Vectors] = []
        for start in range(0, len(which), READ_CHUNK):
            part = which[start : start + READ_CHUNK].tolist()
            found = fetch([self.ids[i] for i in part])
            for i in part:
                vector = found.get(self.ids[i])
                if vector is not None:
                    kept.append(i)
                    rows.append(vector)
        if not rows:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float32)
        return np.array(kept, dtype=np.intp), _dot_rows(np.stack(rows), self.query)


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
    # Once the graph is in, a scope of ``VectorCache(compact=True)`` drops its float matrix: the
    # graph keeps int8 vectors, the norms are kept here, and candidates are re-scored exactly
    # with their vectors read from the store (``Rescore``).
    compact: bool = field(init=False)
    norms: npt.NDArray[np.float32] = field(init=False)
    unsaved: int = field(init=False)  # row changes to the graph since its file was written
    unsaved_since: float = field(init=False)  # monotonic time of the first of them

    def __post_init__(self) -> None:
        self.matrix = np.zeros((16, self.dimensions), dtype=np.float32)
        self.owners = np.empty((16, 3), dtype=object)
        self.expires = np.full(16, math.inf)
        self.sequence = np.zeros(16, dtype=np.int64)
        self.norms = np.zeros(16, dtype=np.float32)
        self.keywords = KeywordIndex(self.bm25_weights)
        self.graph = None
        self.compact = False
        self.unsaved = 0
        self.unsaved_since = 0.0

    @property
    def wants_graph(self) -> bool:
        """Whether the scope is large enough for the HNSW graph (and the library is there)."""
        return 0 < self.ann_threshold <= self.size and ann.available()

    @property
    def uses_graph(self) -> bool:
        """Whether searches go through the HNSW graph: wanted, and built (always, once the
        float matrix is dropped)."""
        return self.graph is not None and (self.wants_graph or self.compact)

    def drop_floats(self) -> None:
        """Keep no float matrix (the graph holds the vectors as int8): needs the graph."""
        assert self.graph is not None
        self.compact = True
        self.matrix = np.zeros((0, self.dimensions), dtype=np.float32)

    def memory(self) -> dict[str, int]:
        """Bytes held, by part (``graph``: usearch's own count, int8 vectors and links)."""
        return {
            "graph": self.graph.nbytes if self.graph is not None else 0,
            "float_matrix": int(self.matrix.nbytes),
            "rows": int(self.owners.nbytes + self.expires.nbytes + self.norms.nbytes)
            + 100 * self.size,
            "keywords": self.keywords.nbytes,
        }

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
        return sum(self.memory().values())

    def _reserve(self, count: int) -> None:
        need = self.size + count
        if need <= len(self.expires):
            return
        capacity = max(need, 2 * len(self.expires))
        if not self.compact:
            matrix = np.zeros((capacity, self.dimensions), dtype=np.float32)
            matrix[: self.size] = self.matrix[: self.size]
            self.matrix = matrix
        owners = np.empty((capacity, 3), dtype=object)
        owners[: self.size] = self.owners[: self.size]
        expires = np.full(capacity, math.inf)
        expires[: self.size] = self.expires[: self.size]
        sequence = np.zeros(capacity, dtype=np.int64)
        sequence[: self.size] = self.sequence[: self.size]
        norms = np.zeros(capacity, dtype=np.float32)
        norms[: self.size] = self.norms[: self.size]
        self.owners, self.expires, self.norms = owners, expires, norms
        self.sequence = sequence

    def add(self, entries: Sequence[VectorEntry]) -> None:
        self._reserve(len(entries))
        start = self.size
        fresh: list[VectorEntry] = []
        written: dict[int, Vectors] = {}  # position -> its vector (the last one given)
        for entry in entries:
            if entry.id in self.positions:
                position = self.positions[entry.id]
                if position >= start:  # the same new id twice in one call: the last wins
                    fresh[position - start] = entry
                else:
                    self.keywords.put(position, entry.body, entry.context)
            else:
                position = self.size
                self.positions[entry.id] = position
                self.ids.append(entry.id)
                fresh.append(entry)
                self.sequence[position] = self._next_sequence
                self._next_sequence += 1
                self._order = self._rank = None
            if not self.compact:
                self.matrix[position] = entry.vector
            written[position] = entry.vector
            self.norms[position] = np.linalg.norm(entry.vector)
            self.owners[position] = (entry.user_id, entry.agent_id, entry.run_id)
            self.expires[position] = entry.expires
        # New rows take consecutive positions: their postings are built in one pass.
        self.keywords.put_many(start, [e.body for e in fresh], [e.context for e in fresh])
        if self.graph is not None and written:
            touched = np.array(sorted(written), dtype=np.intp)
            self.graph.put(touched, np.stack([written[p] for p in touched.tolist()]))

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
                if not self.compact:
                    self.matrix[position] = self.matrix[last]
                self.norms[position] = self.norms[last]
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
        top = _top(positions, scores, limit)
        return [(self.ids[positions[i]], float(scores[i])) for i in top]

    def search(
        self,
        query: npt.NDArray[np.float32],
        limit: int,
        *,
        now: float,
        owners: tuple[str | None, str | None, str | None],
        allowed: set[str] | None,
    ) -> list[tuple[str, float]] | Rescore:
        """Top ``limit`` (id, cosine) among live rows owned as asked (and in ``allowed``); for a
        scope without its float matrix, the candidates to re-score (``Rescore.finish``)."""
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
    ) -> list[tuple[str, float]] | Rescore:
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
            positions, similarity = self.graph.candidates(query, count)
            live = self._live_at(positions, now, owners, allowed)
            positions, similarity = positions[live], similarity[live]
            if len(positions) >= wanted or count >= n:
                if not self.compact:
                    return self._best(positions, _dot_rows(self.matrix[positions], query), limit)
                # The graph's own (int8) cosine picks which candidates are read and re-scored.
                norms = self.norms[positions]
                return self._rescore(
                    query, limit, positions, similarity * norms, norms * GRAPH_SLACK, bounded=False
                )
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
    ) -> list[tuple[str, float]] | Rescore:
        """Exact scores of the passing rows only. Without the float matrix: their int8 scores
        and error bounds, so that ``Rescore`` reads every row that can reach the top."""
        if allowed is not None:
            found = (self.positions.get(memory_id) for memory_id in allowed)
            positions = np.sort(np.fromiter((p for p in found if p is not None), dtype=np.intp))
            positions = positions[self._live_at(positions, now, owners, None)]
        else:
            positions = np.flatnonzero(self._live(self.size, now, owners, None))
        if not self.compact:
            return self._best(positions, _dot_rows(self.matrix[positions], query), limit)
        assert self.graph is not None
        if len(positions) <= READ_ALL_ROWS:  # few: all read and scored exactly
            return self._rescore(query, limit, positions, None, None)
        approximate = np.empty(len(positions), dtype=np.float32)
        for start in range(0, len(positions), SCAN_CHUNK):
            part = positions[start : start + SCAN_CHUNK]
            approximate[start : start + SCAN_CHUNK] = _dot_rows(self.graph.vectors(part), query)
        norms = self.norms[positions]
        # usearch holds trunc(127 u) of the unit vector u: each coordinate within 1/127.
        slack = norms * (float(np.abs(query).sum()) / 127) + SLACK_EPSILON
        return self._rescore(query, limit, positions, approximate * norms, slack, bounded=True)

    def _rescore(
        self,
        query: npt.NDArray[np.float32],
        limit: int,
        positions: npt.NDArray[np.intp],
        approximate: npt.NDArray[np.float32] | None,
        slack: npt.NDArray[np.float32] | None,
        *,
        bounded: bool = True,
    ) -> Rescore:
        ids = [self.ids[p] for p in positions.tolist()]
        return Rescore(query, limit, ids, positions, approximate, slack, bounded)

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
    """Scope indexes, least recently used dropped first once over ``budget_bytes``.

    ``compact``: a scope whose graph is in drops its float matrix (``ScopeIndex.drop_floats``);
    its searches then return ``Rescore`` for the caller to finish with the store's vectors.
    With ``files``, a graph is written sealed once built, and again, in the background, after
    ``RESEAL_CHANGES`` row changes or ``RESEAL_SECONDS`` after the first unsaved one (checked at
    each read and write of the scope)."""

    def __init__(
        self, budget_bytes: int, files: GraphFiles | None = None, *, compact: bool = False
    ) -> None:
        self._budget = budget_bytes
        self._entries: OrderedDict[str, ScopeIndex] = OrderedDict()
        self._lock = threading.Lock()
        self._files_lock = threading.Lock()  # a file's write against its deletion (``drop``)
        self._rebuilding: set[str] = set()
        self._saving: set[str] = set()
        self._files = files
        self._compact = compact
        self.builds = 0  # background graph jobs finished (loaded, built, or given up)
        self.saves = 0  # background re-seals finished (written or given up)
        self._counts = {
            "built": 0,
            "loaded": 0,
            "caught_up": 0,
            "stale": 0,
            "refused": 0,
            "saved": 0,
        }

    def stats(self) -> dict[str, int]:
        """Graphs ``built`` from vectors, ``loaded`` from their sealed file as written or
        ``caught_up`` with the writes since, files found ``stale`` (too many writes since: built
        again) or ``refused`` (failed to open), graphs ``saved``."""
        with self._lock:
            return dict(self._counts)

    def get(self, scope_id: str, version: int, load: Callable[[], ScopeIndex]) -> ScopeIndex:
        with self._lock:
            index = self._entries.get(scope_id)
            if index is not None and index.version == version:
                self._entries.move_to_end(scope_id)
                self._save_if_due(scope_id, index)
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
            if index.graph is not None:
                if not index.unsaved:
                    index.unsaved_since = time.monotonic()
                index.unsaved += len(added) + len(removed)
            self._evict()
            self._build_if_needed(scope_id, index)
            self._save_if_due(scope_id, index)

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
        """A fresh HNSW graph built off the lock from the scope's vectors (read in place: a write
        meanwhile changes the version, and the graph is then not used), swapped in if no write
        came meanwhile (else tried again, up to BUILD_ATTEMPTS times; the next write starts
        another). Until then the scope is scanned exactly (or through its old graph)."""
        try:
            if self._files is not None and index.graph is None and self._load(scope_id, index):
                return
            for _ in range(BUILD_ATTEMPTS):
                with self._lock:
                    if self._entries.get(scope_id) is not index:
                        return
                    version, size, matrix, old = (
                        index.version,
                        index.size,
                        index.matrix,
                        index.graph,
                    )
                    ids = list(index.ids)
                graph = self._fresh_graph(scope_id, index, version, size, matrix, old)
                if graph is None:
                    continue
                plain = graph.dump(ids) if self._files is not None else None
                with self._lock:
                    if index.version == version and self._entries.get(scope_id) is index:
                        self._swap_in(index, graph)
                        self._counts["built"] += 1
                    else:
                        continue
                if plain is not None:
                    self._save(scope_id, index, version, plain)
                return
        finally:
            with self._lock:
                self._rebuilding.discard(scope_id)
                self.builds += 1
                if self._entries.get(scope_id) is index:  # a caught-up file is written anew
                    self._save_if_due(scope_id, index)

    def _fresh_graph(
        self,
        scope_id: str,
        index: ScopeIndex,
        version: int,
        size: int,
        matrix: Vectors,
        old: ann.HnswIndex | None,
    ) -> ann.HnswIndex | None:
        """A graph of the scope's ``size`` rows: from the float matrix, or (a scope without it)
        from the old graph's int8 vectors, read under the lock a chunk at a time."""
        if old is None or not index.compact:
            graph = ann.HnswIndex(index.dimensions)
            graph.build(matrix[:size])
            return graph

        def read(step: Callable[[], None]) -> bool:
            with self._lock:
                if index.version != version or self._entries.get(scope_id) is not index:
                    return False
                step()
                return True

        return old.rebuilt(size, read)

    def _swap_in(self, index: ScopeIndex, graph: ann.HnswIndex) -> None:
        """(Under the lock.) ``graph`` becomes the scope's; the float matrix goes if compact."""
        index.graph = graph
        index.unsaved = 0
        if self._compact:
            index.drop_floats()
        self._evict()

    def _load(self, scope_id: str, index: ScopeIndex) -> bool:
        """Take the scope's graph from its sealed file, caught up with the writes since it was
        written. The rows are read in place, off the lock: a write meanwhile changes the
        version, and the file is then read again (up to BUILD_ATTEMPTS times)."""
        assert self._files is not None
        for _ in range(BUILD_ATTEMPTS):
            with self._lock:
                if self._entries.get(scope_id) is not index:
                    return True
                version, positions, matrix = index.version, dict(index.positions), index.matrix
            found = self._files.load(
                scope_id, index.dimensions, positions, matrix[: len(positions)]
            )
            with self._lock:
                if found.outcome != "missing":
                    self._counts[found.outcome] += 1
                if found.graph is None:
                    return False
                if index.version == version and self._entries.get(scope_id) is index:
                    self._swap_in(index, found.graph)
                    if found.outcome == "caught_up":  # the file lags: written anew after the job
                        index.unsaved = max(found.changed, 1)
                        index.unsaved_since = time.monotonic() - RESEAL_SECONDS
                    return True
        return False

    def _save_if_due(self, scope_id: str, index: ScopeIndex) -> None:
        """(Under the lock.) Start a background re-seal of a graph patched since its file."""
        if (
            self._files is None
            or index.graph is None
            or not index.unsaved
            or scope_id in self._saving
            or scope_id in self._rebuilding
        ):
            return
        if (
            index.unsaved < RESEAL_CHANGES
            and time.monotonic() - index.unsaved_since < RESEAL_SECONDS
        ):
            return
        self._saving.add(scope_id)
        threading.Thread(
            target=self._reseal, args=(scope_id, index), name="memvault-ann-save", daemon=True
        ).start()

    def _reseal(self, scope_id: str, index: ScopeIndex) -> None:
        try:
            with self._lock:
                if self._entries.get(scope_id) is not index or index.graph is None:
                    return
                version, unsaved = index.version, index.unsaved
                plain = index.graph.dump(index.ids)
            try:
                self._save(scope_id, index, version, plain)
            except (MemvaultError, OSError) as exc:  # store closed or busy: a later write retries
                log.warning("could not seal an HNSW graph again: %s", type(exc).__name__)
                return
            with self._lock:
                index.unsaved = max(0, index.unsaved - unsaved)
                if index.unsaved:
                    index.unsaved_since = time.monotonic()
        finally:
            with self._lock:
                self._saving.discard(scope_id)
                self.saves += 1

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
