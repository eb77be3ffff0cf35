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
from functools import cache, partial
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from memvault.clock import now_iso
from memvault.codec import Codec
from memvault.embedding.base import Vectors
from memvault.errors import InvalidInput
from memvault.filters import FilterNode
from memvault.retrieval.expansion import Link, LinkSource, Seed, link_ranking
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

__all__ = ["HybridSearcher", "Mode", "SearchHit", "Techniques"]

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


NEIGHBOURS = "conversation"


@dataclass(frozen=True, slots=True)
class Techniques:
    """Optional steps of a hybrid search around the fusion (bench/locomo.py measures each).

    - expansion: the best ``expand_seeds`` hits of a first fusion are expanded through the link
      sources (conversation neighbours first), at most ``expand_per_seed`` links each, and the
      links fused as a third ranking with weight ``expand_weight`` (``retrieval/expansion.py``).
    - pseudo-relevance feedback: the keyed token hashes of the first ``feedback_seeds`` hits'
      words that are not in the query, the ``feedback_terms`` best by tf x idf, searched with
      BM25 as another ranking of weight ``feedback_weight``.
    - vector feedback (Rocchio): the query's vector plus the mean of the first
      ``vector_feedback_seeds`` hits' vectors, normalised, searched again as another ranking of
      weight ``vector_feedback_weight`` (a missing candidate counts as its lowest cosine).
    - diversity: ``diversity`` > 0 re-ranks the fused list greedily, each candidate losing
      ``diversity`` times the score spread times its highest cosine with a hit already chosen
      (maximal marginal relevance): near-duplicates make room for other evidence.
    """

    expand_seeds: int = 0
    expand_per_seed: int = 2
    expand_weight: float = 0.5
    feedback_seeds: int = 0
    feedback_terms: int = 8
    feedback_weight: float = 0.3
    diversity: float = 0.0
    vector_feedback_seeds: int = 0
    vector_feedback_weight: float = 0.3
    expand_sources: str = NEIGHBOURS  # "+"-joined link source names

    @property
    def seeds(self) -> int:
        return max(self.expand_seeds, self.feedback_seeds, self.vector_feedback_seeds)


NEIGHBOUR_DECAY = 0.5  # a neighbour d rows away scores NEIGHBOUR_DECAY ** d
LINK_SHARE = 0.9  # a linked memory shows at most this share of its seed's relevance
SNAPSHOT_TRIES = 3  # passes of a search over several key scopes until their versions hold still
DIVERSITY_POOL = 3  # diversity re-ranks the first DIVERSITY_POOL * top_k fused candidates


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
    explain: dict[str, float | int | str | None]


@dataclass(frozen=True, slots=True)
class _Context:
    """What a search's extra steps need of it: the scope, its key scopes and their versions."""

    scope: Scope
    scope_ids: Sequence[str]
    own: frozenset[str]
    versions: Mapping[str, int]
    node: FilterNode | None


def _seeds(first: Sequence[FusedHit], count: int) -> list[Seed]:
    """The best ``count`` hits of a first fusion, each with its fused score scaled to [0, 1]
    over all its candidates."""
    if not first:
        return []
    top, bottom = first[0].score, first[-1].score
    span = top - bottom
    return [
        Seed(hit.id, (hit.score - bottom) / span if span > 1e-12 else 1.0) for hit in first[:count]
    ]


def _seed_relevance(first: Sequence[FusedHit], seeds: Sequence[Seed]) -> dict[str, float]:
    """Each seed's shown relevance, from its parts in the first fusion."""
    wanted = {seed.memory_id for seed in seeds}
    return {
        hit.id: relevance(hit.parts.get("vector"), hit.parts.get("bm25"), "hybrid")
        for hit in first
        if hit.id in wanted
    }


def _admitted(wanted: set[str], now: float, owners: Owners, index: ScopeIndex) -> set[str]:
    return index.admitted(wanted, now=now, owners=owners, allowed=None)


def _index_vectors(
    wanted: Sequence[str], index: ScopeIndex
) -> tuple[list[npt.NDArray[np.float32]], list[str]]:
    """The vectors of the ``wanted`` rows this index holds (copies: the index is patched in
    place by writes), and the ids of those whose vectors it does not keep (a compact scope on
    the graph path keeps none in float: they are read from the store)."""
    held = [memory_id for memory_id in wanted if memory_id in index.positions]
    if index.compact:
        return [], held
    return [index.matrix[index.positions[memory_id]].copy() for memory_id in held], []


def _feedback_search(
    tokens: Mapping[str, int], terms: int, limit: int, now: float, owners: Owners, index: ScopeIndex
) -> list[tuple[str, float]]:
    """BM25 over the ``terms`` tokens with the best frequency x idf in the index."""
    weighed = sorted(((n * index.keywords.idf(t), t) for t, n in tokens.items()), reverse=True)
    best = {token for weight, token in weighed[:terms] if weight > 0}
    return index.keyword_search(best, limit, now=now, owners=owners, allowed=None)


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
        techniques: Techniques | None = None,
        link_sources: Sequence[LinkSource] = (),
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
        self.techniques = techniques or Techniques()
        self.link_sources = list(link_sources)  # beside the conversation neighbours
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
        techniques: Techniques | None = None,
    ) -> list[SearchHit]:
        """Fused hits, best first. Both sides read the scope's in-memory index; the query
        embedding is most of the cost, so nothing runs beside it.

        A search over several key scopes (a key rotation moving rows from the old generation to
        the new one, or an agent's memories across users) reads one index per key scope, each
        loaded or cached at its own moment; a row moved between two of them in the meantime
        could be in neither. So such a search checks that no scope's version moved while it
        ran, and runs again if one did (at most ``SNAPSHOT_TRIES`` times): its hits are those
        of one moment."""
        # Embedded at most once, and only by a pass that has a scope to search.
        embed = cache(embed_query) if embed_query is not None else None
        hits: list[SearchHit] = []
        for _ in range(SNAPSHOT_TRIES):
            hits, versions = self._search_once(
                embed,
                query_text,
                scope,
                node,
                top_k=top_k,
                threshold=threshold,
                mode=mode,
                techniques=techniques,
            )
            if len(versions) <= 1 or all(
                self._store.scope_version(scope_id) == version
                for scope_id, version in versions.items()
            ):
                break
        return hits

    def _search_once(
        self,
        embed_query: Callable[[], npt.NDArray[np.float32]] | None,
        query_text: str,
        scope: Scope,
        node: FilterNode | None,
        *,
        top_k: int,
        threshold: float | None,
        mode: Mode,
        techniques: Techniques | None = None,
    ) -> tuple[list[SearchHit], dict[str, int]]:
        """One pass of ``search``: its hits and the scope versions it read."""
        scope_ids, own = self._scope_ids(scope)
        if not scope_ids:
            return [], {}
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

        def candidates_at(vector: npt.NDArray[np.float32]) -> list[tuple[str, float]]:
            found = self.vector_candidates(vector, scope, scope_ids, None, limit, own, versions)
            if node is None or not found:
                return found
            passing = self._store.ids_matching(
                self._codec.namespace, scope, node, now_iso(), among={m for m, _ in found}
            )
            return [hit for hit in found if hit[0] in passing]

        sides = [side for side in ("vector", "bm25") if mode in (side, "hybrid")]
        if node is None:
            rankings = {side: candidates(side, None, limit) for side in sides}
        else:
            rankings = self._filtered(candidates, sides, scope, node, limit)
        techniques = self.techniques if techniques is None else techniques
        weights = dict(self._weights)
        context = _Context(scope, scope_ids, own, versions, node)
        links: dict[str, Link] = {}
        link_relevance: dict[str, float] = {}
        if mode == "hybrid" and techniques.seeds > 0 and any(rankings.values()):
            first = fuse(rankings, method=self._fusion, weights=weights)
            seeds = _seeds(first, techniques.seeds)
            if techniques.feedback_seeds > 0:
                feedback = self._feedback(
                    seeds[: techniques.feedback_seeds], query_text, techniques, context, limit
                )
                if feedback:
                    rankings["feedback"] = feedback
                    weights["feedback"] = techniques.feedback_weight
            if techniques.vector_feedback_seeds > 0 and query_vector is not None:
                wanted = [seed.memory_id for seed in seeds[: techniques.vector_feedback_seeds]]
                vectors: list[npt.NDArray[np.float32]] = []
                for scope_id in scope_ids:  # the seeds' vectors, from the scope's index
                    ask = partial(_index_vectors, wanted)
                    held, elsewhere = self._read(scope_id, ask, versions.get(scope_id))
                    vectors.extend(held)
                    if elsewhere:  # a compact scope: from the store, decrypted for this search
                        vectors.extend(self._vectors_of(scope_id, elsewhere).values())
                if vectors:
                    centroid = np.mean(vectors, axis=0)
                    moved = (query_vector + centroid).astype(np.float32)
                    moved /= max(float(np.linalg.norm(moved)), 1e-12)
                    rankings["vector_feedback"] = candidates_at(moved)
                    weights["vector_feedback"] = techniques.vector_feedback_weight
            if techniques.expand_seeds > 0:
                expand = seeds[: techniques.expand_seeds]
                found = self._links(
                    expand,
                    techniques.expand_per_seed,
                    context,
                    set(techniques.expand_sources.split("+")),
                )
                ranking, links = link_ranking(expand, found, self._admit(found, context))
                if ranking:
                    rankings["links"] = ranking[:limit]
                    weights["links"] = techniques.expand_weight
                    link_relevance = _seed_relevance(first, expand)
        # Adjustments can lift a candidate from beyond top_k: they rank every fused candidate.
        # The shown score never rises down the list, so a threshold keeps a prefix of it and
        # needs no more candidates than top_k.
        adjusting = self._adjustments.enabled
        diverse = techniques.diversity > 0 and mode == "hybrid"
        pool = DIVERSITY_POOL * top_k if diverse else top_k
        fused = fuse(
            rankings,
            method=self._fusion,
            weights=weights,
            limit=None if adjusting else pool,
            floors={"links": 0.0, "feedback": 0.0},
        )
        rows = self._store.get_many(self._codec.namespace, [hit.id for hit in fused])
        ranked = [
            _Ranked(hit, rows[hit.id], self._score(hit, mode), None)
            for hit in fused
            if hit.id in rows  # else deleted between the two reads
        ]
        if adjusting:
            ranked = self._adjusted(ranked)
        if diverse:
            ranked = self._diversified(ranked[:pool], top_k, techniques.diversity)
        hits = []
        shown = 1.0
        for entry in ranked[:top_k]:
            cosine = self._cosine(entry.hit, entry.row, query_vector)
            calibrated = relevance(cosine, entry.hit.parts.get("bm25"), mode)
            link = links.get(entry.hit.id)
            if link is not None:
                # A linked memory shows at most what its seed shows, scaled by the link.
                via = link_relevance.get(link.seed, 0.0) * min(1.0, max(0.0, link.score))
                calibrated = max(calibrated, LINK_SHARE * via)
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
            if "vector_feedback" in entry.hit.parts:
                explain |= {
                    "vector_feedback": entry.hit.parts["vector_feedback"],
                    "vector_feedback_rank": entry.hit.ranks["vector_feedback"],
                }
            if "feedback" in entry.hit.parts:
                explain |= {
                    "feedback": entry.hit.parts["feedback"],
                    "feedback_rank": entry.hit.ranks["feedback"],
                }
            if link is not None:
                explain |= {
                    "link": entry.hit.parts["links"],
                    "link_rank": entry.hit.ranks["links"],
                    "linked_from": link.seed,
                    "link_source": link.source,
                    "link_reason": link.reason,
                }
            hits.append(SearchHit(entry.row, shown, explain))
        return hits, versions

    def _links(
        self, seeds: Sequence[Seed], per_seed: int, context: _Context, sources: set[str]
    ) -> list[Link]:
        """The links of the seeds from the named ``sources``: the conversation neighbours, then
        every other source's (e.g. shared entities)."""
        now = time.time()
        per_side = (per_seed + 1) // 2

        def ask(index: ScopeIndex) -> list[Link]:
            found: list[Link] = []
            for seed in seeds:
                near = index.neighbours(seed.memory_id, per_side, now=now)
                near.sort(key=lambda pair: (abs(pair[1]), pair[1]))
                for memory_id, offset in near[:per_seed]:
                    side = "before" if offset < 0 else "after"
                    apart = "just" if abs(offset) == 1 else f"{abs(offset)} memories"
                    found.append(
                        Link(
                            memory_id,
                            seed.memory_id,
                            NEIGHBOUR_DECAY ** abs(offset),
                            NEIGHBOURS,
                            f"written {apart} {side} it in the same conversation",
                        )
                    )
            return found

        links: list[Link] = []
        if NEIGHBOURS in sources:
            for scope_id in context.scope_ids:
                links.extend(self._read(scope_id, ask, context.versions.get(scope_id)))
        for source in self.link_sources:
            if source.name in sources:
                links.extend(source.links(context.scope, seeds, per_seed))
        return links

    def _admit(self, links: Sequence[Link], context: _Context) -> set[str]:
        """Which linked ids the search may return: rows of the scope's key scopes, unexpired,
        owned as the search asks and passing its filter (the direct candidates' masks)."""
        wanted = {link.memory_id for link in links}
        if not wanted:
            return set()
        now = time.time()
        admitted: set[str] = set()
        for scope_id in context.scope_ids:
            owners = _implied_owners(context.scope, scope_id, context.own)
            admitted |= self._read(
                scope_id,
                partial(_admitted, wanted, now, owners),
                context.versions.get(scope_id),
            )
        if context.node is not None and admitted:
            admitted &= self._store.ids_matching(
                self._codec.namespace, context.scope, context.node, now_iso(), among=admitted
            )
        return admitted

    def _feedback(
        self,
        seeds: Sequence[Seed],
        query_text: str,
        techniques: Techniques,
        context: _Context,
        limit: int,
    ) -> list[tuple[str, float]]:
        """Pseudo-relevance feedback: BM25 over the best new token hashes of the seeds' words.
        The words are read from the seeds' texts and hashed with the scope's key, so the index
        stays wordless; each token is weighed by its frequency in the seeds times its idf."""
        rows = self._store.get_many(self._codec.namespace, [seed.memory_id for seed in seeds])
        texts = [self._codec.open_text(rows[s.memory_id]) for s in seeds if s.memory_id in rows]
        asked = set(query_terms(query_text))
        counts: dict[str, int] = {}
        for text in texts:
            for term in dict.fromkeys(words(text)):
                if term not in asked:
                    counts[term] = counts.get(term, 0) + 1
        if not counts:
            return []
        now = time.time()
        found: list[tuple[str, float]] = []
        for scope_id in context.scope_ids:
            cipher = self._codec.existing_cipher(scope_id)
            if cipher is None:
                continue
            tokens = {cipher.token(term): n for term, n in counts.items()}
            owners = _implied_owners(context.scope, scope_id, context.own)

            ask = partial(_feedback_search, tokens, techniques.feedback_terms, limit, now, owners)
            found.extend(self._read(scope_id, ask, context.versions.get(scope_id)))
        found.sort(key=lambda hit: -hit[1])
        if context.node is not None and found:
            passing = self._store.ids_matching(
                self._codec.namespace,
                context.scope,
                context.node,
                now_iso(),
                among={memory_id for memory_id, _ in found},
            )
            found = [hit for hit in found if hit[0] in passing]
        return found[:limit]

    def _diversified(self, ranked: list[_Ranked], top_k: int, weight: float) -> list[_Ranked]:
        """Maximal marginal relevance over the candidates: each pick is the candidate whose score
        minus ``weight`` x spread x (highest cosine with a pick) is best."""
        if len(ranked) <= 1:
            return ranked
        vectors = np.stack([self._codec.open_vector(entry.row) for entry in ranked])
        similar = vectors @ vectors.T
        scores = np.array(
            [entry.score + (entry.change.total if entry.change else 0.0) for entry in ranked]
        )
        penalty = weight * score_spread(list(scores))
        closest = np.full(len(ranked), -np.inf)
        left = list(range(len(ranked)))
        picked: list[int] = []
        while left and len(picked) < top_k:
            marginal = [
                scores[i] - penalty * max(0.0, closest[i]) if picked else scores[i] for i in left
            ]
            best = left[int(np.argmax(marginal))]
            picked.append(best)
            left.remove(best)
            closest = np.maximum(closest, similar[best])
        return [ranked[i] for i in picked] + [ranked[i] for i in left]

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
    def _explain(hit: FusedHit, cosine: float | None) -> dict[str, float | int | str | None]:
        return {
            "fused": hit.score,
            "vector": cosine,
            "vector_rank": hit.ranks.get("vector"),
            "bm25": hit.parts.get("bm25"),
            "bm25_rank": hit.ranks.get("bm25"),
        }
