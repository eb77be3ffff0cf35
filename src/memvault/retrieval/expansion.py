"""Expansion from a search's first results: memories linked to the first hits, fused as a ranking.

A search first fuses its vector and BM25 rankings; the best ``seeds`` of that fusion are the
seeds. Each ``LinkSource`` returns memories linked to a seed (at most ``per_seed`` each, one hop:
a linked memory is never itself expanded), each with a score in (0, 1] and a reason. The links
of every source make one more ranking (``links``), fused with the vector and BM25 rankings with
its own weight, so a linked memory that matches the query too rises most, and one that matches
nothing still enters the fused list below the direct matches it was reached from.

The links' ranking holds the seeds, each with its strength (its fused score scaled to [0, 1]
over the first fusion's candidates), and the linked memories, each with its seed's strength times
the link's own score (at most 1/2 for the nearest neighbour); links reaching the same memory from
several seeds add up. So on this ranking a link never passes its seed, and a seed that is also
linked from another seed rises.

Sources never decide what a caller may see: the searcher masks every linked id with the owner
columns, expiry and filter of the search before it is ranked (the same masks as the direct
candidates), so a source that returned a memory of another scope, or one the filter excludes,
adds nothing.

The first source is ``conversation neighbours`` (the rows written just before and after a seed
by the same user, agent and run, in write order: the turns around it in a conversation); an
entity source can be added through the same protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from memvault.validation import Scope

__all__ = ["Link", "LinkSource", "Seed", "link_ranking"]


@dataclass(frozen=True, slots=True)
class Seed:
    """One of a search's first hits: its id and its strength in [0, 1] (1: the best)."""

    memory_id: str
    strength: float


@dataclass(frozen=True, slots=True)
class Link:
    """A memory reached from a seed: ``score`` in (0, 1], ``source`` the source's name,
    ``reason`` a short phrase for ``explain`` (never user text)."""

    memory_id: str
    seed: str
    score: float
    source: str
    reason: str


class LinkSource(Protocol):
    """Given a search's seeds in a scope, the memories linked to them (at most ``per_seed`` per
    seed). The searcher masks the result; a source need not filter by owner or expiry."""

    name: str

    def links(self, scope: Scope, seeds: Sequence[Seed], per_seed: int) -> list[Link]: ...


@dataclass(slots=True)
class Reached:
    """The link that gave a linked memory most of its score (for ``explain``)."""

    best: Link
    best_score: float


def link_ranking(
    seeds: Sequence[Seed], links: Iterable[Link], admitted: set[str]
) -> tuple[list[tuple[str, float]], dict[str, Link]]:
    """The links' ranking (best first) over the seeds and the ``admitted`` linked ids, and for
    each linked id that is not a seed the link that counted most. Each seed is in the ranking
    with its own strength, so a link (whose score is at most its seed's strength) never ranks
    above its seed on this ranking alone."""
    strength = {seed.memory_id: seed.strength for seed in seeds}
    reached: dict[str, Reached] = {}
    scores = dict(strength)
    for link in links:
        if link.memory_id not in admitted or link.seed not in strength:
            continue
        value = strength[link.seed] * min(1.0, max(0.0, link.score))
        scores[link.memory_id] = scores.get(link.memory_id, 0.0) + value
        entry = reached.get(link.memory_id)
        if entry is None:
            reached[link.memory_id] = Reached(link, value)
        elif value > entry.best_score:
            entry.best, entry.best_score = link, value
    ranking = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
    best = {m: entry.best for m, entry in reached.items() if m not in strength}
    return ranking, best
