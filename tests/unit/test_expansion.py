"""Search expansion from the first hits (#18): conversation neighbours and pluggable link sources.

Bounded (at most ``expand_per_seed`` links per seed, one hop), scoped (a link never reaches
another user's, agent's or run's memory, nor one the caller's filter or expiry excludes, even
when a source returns it), explained, and off by default. Run on SQLite and on Postgres: the
write order comes from the store's ``ORDER BY rowid`` when a scope's index is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from memvault import HashEmbedder, Memory
from memvault.retrieval.expansion import Link, Seed
from memvault.validation import Scope

FILLER = [f"filler {word} remark" for word in ("one", "two", "three", "four", "five", "six")]
PAST = "2020-01-01T00:00:00+00:00"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("pg_url")}


@pytest.fixture
def expanding(home: Path, store: dict[str, Any]) -> Iterator[Memory]:
    with Memory(
        home,
        embedder=HashEmbedder(),
        context_window=0,
        expand_seeds=1,
        expand_per_seed=2,
        expand_weight=1.0,
        **store,
    ) as memory:
        yield memory


def _conversation(memory: Memory, texts: Sequence[str], **owner: Any) -> list[str]:
    added = memory.add_many([{"messages": text, **owner} for text in texts])
    return [item["id"] for item in added["results"]]


def _linked(hits: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {hit["id"]: hit["explain"] for hit in hits if "link_source" in hit["explain"]}


def test_neighbours_of_the_first_hit_join_the_results_with_their_reason(
    expanding: Memory,
) -> None:
    ids = _conversation(expanding, [*FILLER[:3], "zebra crossing", *FILLER[3:]], user_id="u")
    hits = expanding.search("zebra", user_id="u", top_k=5, explain=True)["results"]
    assert hits[0]["id"] == ids[3]
    linked = _linked(hits)
    assert set(linked) == {ids[2], ids[4]}  # one before, one after: two per seed
    assert linked[ids[2]]["linked_from"] == ids[3]
    assert linked[ids[2]]["link_source"] == "conversation"
    assert linked[ids[2]]["link_reason"] == "written just before it in the same conversation"
    assert linked[ids[4]]["link_reason"] == "written just after it in the same conversation"
    # A linked memory shows at most its seed's relevance, and the shown scores never rise.
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= score <= hits[0]["score"] for score in scores)


def test_expansion_is_bounded_per_seed_and_one_hop(home: Path, store: dict[str, Any]) -> None:
    texts = [*FILLER[:3], "zebra crossing", *FILLER[3:]]
    with Memory(
        home,
        embedder=HashEmbedder(),
        context_window=0,
        expand_seeds=1,
        expand_per_seed=4,
        expand_weight=1.0,
        **store,
    ) as memory:
        ids = _conversation(memory, texts, user_id="u")
        hits = memory.search("zebra", user_id="u", top_k=10, explain=True)["results"]
        linked = _linked(hits)
    # Four links: two on each side, none farther (a link is never expanded again).
    assert set(linked) == {ids[1], ids[2], ids[4], ids[5]}
    assert linked[ids[1]]["link_reason"] == "written 2 memories before it in the same conversation"
    assert ids[0] not in linked and ids[6] not in linked


def test_expansion_is_off_by_default(memory: Memory) -> None:
    _conversation(memory, [*FILLER[:3], "zebra crossing", *FILLER[3:]], user_id="u")
    hits = memory.search("zebra", user_id="u", top_k=5, explain=True)["results"]
    assert _linked(hits) == {}
    assert all("link" not in hit["explain"] for hit in hits)


def test_neighbours_never_cross_users_agents_or_runs(expanding: Memory) -> None:
    # Interleaved writes: the rows next to u's hit in the table belong to others.
    mine: list[str] = []
    for index, text in enumerate(["before mine", "zebra mine", "after mine"]):
        mine += _conversation(expanding, [text], user_id="u", run_id="r1")
        _conversation(expanding, [f"other user {index}"], user_id="v", run_id="r1")
        _conversation(expanding, [f"other run {index}"], user_id="u", run_id="r2")
        _conversation(expanding, [f"other agent {index}"], user_id="u", agent_id="a", run_id="r1")
    hits = expanding.search("zebra", user_id="u", run_id="r1", top_k=10, explain=True)
    found = {hit["id"]: hit for hit in hits["results"]}
    assert set(_linked(hits["results"])) == {mine[0], mine[2]}
    texts = {hit["memory"] for hit in found.values()}
    assert not any(text.startswith(("other user", "other run")) for text in texts)
    # A search of the whole user sees its agent's and other run's rows, but the neighbours of a
    # hit stay in that hit's own conversation (same user, agent and run).
    wide = expanding.search("zebra", user_id="u", top_k=10, explain=True)["results"]
    assert set(_linked(wide)) == {mine[0], mine[2]}


def test_neighbours_respect_the_callers_filter_and_expiry(expanding: Memory) -> None:
    added = expanding.add_many(
        [
            {"messages": "expired before", "user_id": "u", "expiration_date": PAST},
            {"messages": "hidden before", "user_id": "u", "metadata": {"hidden": True}},
            {"messages": "zebra crossing", "user_id": "u", "metadata": {"hidden": False}},
            {"messages": "shown after", "user_id": "u", "metadata": {"hidden": False}},
        ]
    )
    expired, hidden, seed, shown = (item["id"] for item in added["results"])
    hits = expanding.search(
        "zebra", user_id="u", filters={"hidden": False}, top_k=10, explain=True
    )["results"]
    ids = {hit["id"] for hit in hits}
    assert hidden not in ids and expired not in ids
    assert set(_linked(hits)) == {shown}
    # Without the filter the hidden one is a neighbour; the expired one is skipped, so the walk
    # goes on past it only within expand_per_seed's bound (one each side here).
    unfiltered = expanding.search("zebra", user_id="u", top_k=10, explain=True)["results"]
    assert set(_linked(unfiltered)) == {hidden, shown}
    assert expired not in {hit["id"] for hit in unfiltered}
    assert seed == hits[0]["id"]


def test_neighbours_follow_write_order_after_deletes_and_updates(expanding: Memory) -> None:
    ids = _conversation(
        expanding, ["first note", "second note", "zebra note", "fourth"], user_id="u"
    )
    expanding.search("zebra", user_id="u")  # the scope's index is loaded and then patched
    expanding.delete(ids[1])  # the last row moves into its place in the index
    expanding.update(ids[0], "first note, edited")
    hits = expanding.search("zebra", user_id="u", top_k=5, explain=True)["results"]
    assert set(_linked(hits)) == {ids[0], ids[3]}
    added = _conversation(expanding, ["fifth"], user_id="u")
    hits = expanding.search("zebra", user_id="u", top_k=5, explain=True)["results"]
    assert set(_linked(hits)) == {ids[0], ids[3]}
    assert added[0] not in _linked(hits)


class _Hostile:
    """A link source that returns what the caller may not see: another user's memory, an
    expired one, a filtered-out one, an unknown id, and one allowed memory."""

    name = "test-source"

    def __init__(self, targets: list[str]) -> None:
        self.targets = targets
        self.calls: list[tuple[Scope, list[str], int]] = []

    def links(self, scope: Scope, seeds: Sequence[Seed], per_seed: int) -> list[Link]:
        self.calls.append((scope, [seed.memory_id for seed in seeds], per_seed))
        return [
            Link(target, seeds[0].memory_id, 1.0, self.name, "shares a test entity")
            for target in self.targets
        ]


def test_a_link_source_is_masked_like_the_direct_candidates(expanding: Memory) -> None:
    theirs = _conversation(expanding, ["someone else's secret"], user_id="v")[0]
    mine = expanding.add_many(
        [
            {"messages": "gone", "user_id": "u", "expiration_date": PAST},
            {"messages": "private thing", "user_id": "u", "metadata": {"hidden": True}},
            {"messages": "allowed linked thing", "user_id": "u", "metadata": {"hidden": False}},
            {"messages": "padding words here", "user_id": "u", "metadata": {"hidden": False}},
            {"messages": "zebra crossing", "user_id": "u", "metadata": {"hidden": False}},
        ]
    )
    expired, hidden, allowed, _, seed = (item["id"] for item in mine["results"])
    source = _Hostile([theirs, expired, hidden, allowed, "not-an-id"])
    searcher = expanding._get_searcher()
    searcher.link_sources.append(source)
    searcher.techniques = replace(searcher.techniques, expand_sources="conversation+test-source")
    hits = expanding.search(
        "zebra", user_id="u", filters={"hidden": False}, top_k=10, explain=True
    )["results"]
    ids = {hit["id"] for hit in hits}
    assert theirs not in ids and expired not in ids and hidden not in ids
    linked = _linked(hits)
    assert linked[allowed]["link_source"] == "test-source"
    assert linked[allowed]["linked_from"] == seed
    assert linked[allowed]["link_reason"] == "shares a test entity"
    scope, seeds, per_seed = source.calls[-1]
    assert scope.user_id == "u" and seeds == [seed] and per_seed == 2


def test_entity_links_join_the_results_within_the_callers_scope(
    home: Path, store: dict[str, Any]
) -> None:
    with Memory(
        home,
        embedder=HashEmbedder(),
        context_window=0,
        expand_seeds=1,
        expand_per_seed=3,
        expand_weight=1.0,
        expand_sources="entities",
        **store,
    ) as memory:
        seed = memory.add("Priya adopted a greyhound", user_id="u")["results"][0]["id"]
        for text in FILLER:
            memory.add(text, user_id="u")
        linked = memory.add("Lunch with Priya on Friday", user_id="u")["results"][0]["id"]
        theirs = memory.add("Priya is my sister", user_id="v")["results"][0]["id"]
        agent = memory.add("Priya asked the agent", user_id="u", agent_id="a")["results"][0]
        hits = memory.search("greyhound", user_id="u", top_k=5, explain=True)["results"]
        assert hits[0]["id"] == seed
        links = _linked(hits)
        assert links[linked]["link_source"] == "entities"
        assert links[linked]["linked_from"] == seed
        assert links[linked]["link_reason"] == "names 1 of the same entity"
        ids = {hit["id"] for hit in hits}
        assert theirs not in ids  # another user's memory naming Priya never joins
        assert agent["id"] in links  # the user's agent memories are in a user search's scope
        only_mine = memory.search("greyhound", user_id="u", agent_id="a", top_k=5, explain=True)[
            "results"
        ]
        assert linked not in {hit["id"] for hit in only_mine}  # narrower scope, narrower links
        memory.update(linked, "Lunch on Friday")  # no longer names Priya: the link goes
        again = memory.search("greyhound", user_id="u", top_k=5, explain=True)["results"]
        assert linked not in _linked(again)


def test_expansion_only_applies_to_hybrid_search(expanding: Memory) -> None:
    _conversation(expanding, [*FILLER[:3], "zebra crossing", *FILLER[3:]], user_id="u")
    for mode in ("vector", "bm25"):
        hits = expanding.search("zebra", user_id="u", top_k=5, explain=True, mode=mode)
        assert _linked(hits["results"]) == {}


def test_threshold_keeps_a_prefix_with_links(expanding: Memory) -> None:
    _conversation(expanding, [*FILLER[:3], "zebra crossing", *FILLER[3:]], user_id="u")
    every = expanding.search("zebra", user_id="u", top_k=10)["results"]
    cut = every[1]["score"]
    kept = expanding.search("zebra", user_id="u", top_k=10, threshold=cut)["results"]
    assert [hit["id"] for hit in kept] == [hit["id"] for hit in every if hit["score"] >= cut]


def test_a_links_ranking_lifts_its_members_above_the_unlinked() -> None:
    from memvault.retrieval.fusion import fuse

    rankings = {
        "vector": [("a", 0.9), ("b", 0.5), ("c", 0.5), ("d", 0.5)],
        "links": [("a", 1.0), ("b", 0.5), ("c", 0.5)],
    }
    # Counted as its lowest score, a missing candidate ties with the lowest members...
    plain = {hit.id: hit.score for hit in fuse(rankings)}
    assert plain["b"] == plain["c"] == plain["d"]
    # ...counted as 0, the linked ones rise above it.
    floored = {hit.id: hit.score for hit in fuse(rankings, floors={"links": 0.0})}
    assert floored["b"] == floored["c"] > floored["d"]


def test_on_the_links_ranking_a_link_never_passes_its_seed() -> None:
    from memvault.retrieval.expansion import link_ranking

    seeds = [Seed("s1", 1.0), Seed("s2", 0.4)]
    links = [
        Link("n1", "s1", 1.0, "conversation", "r"),
        Link("n2", "s2", 1.0, "conversation", "r"),
        Link("s2", "s1", 0.5, "conversation", "r"),  # a seed linked from another seed rises
        Link("x", "s1", 1.0, "conversation", "r"),  # not admitted
        Link("y", "unknown-seed", 1.0, "conversation", "r"),
    ]
    ranking, best = link_ranking(seeds, links, {"n1", "n2", "s2"})
    scores = dict(ranking)
    assert scores == {"s1": 1.0, "n1": 1.0, "s2": 0.9, "n2": 0.4}
    assert set(best) == {"n1", "n2"}  # seeds are not shown as links


def test_vector_feedback_is_on_by_default_scoped_and_filtered(
    home: Path, store: dict[str, Any]
) -> None:
    with Memory(home, embedder=HashEmbedder(), context_window=0, **store) as memory:
        assert memory._get_searcher().techniques.vector_feedback_seeds == 3
        _conversation(memory, ["zebra stripes pattern", "zebra stripes again"], user_id="v")
        added = memory.add_many(
            [
                {"messages": "zebra crossing", "user_id": "u", "metadata": {"hidden": False}},
                {"messages": "zebra stripes", "user_id": "u", "metadata": {"hidden": True}},
                {"messages": "stripes pattern", "user_id": "u", "metadata": {"hidden": False}},
                {"messages": "zebra gone", "user_id": "u", "expiration_date": PAST},
            ]
        )
        crossing, hidden, pattern, expired = (item["id"] for item in added["results"])
        hits = memory.search(
            "zebra", user_id="u", filters={"hidden": False}, top_k=10, explain=True
        )["results"]
        ids = [hit["id"] for hit in hits]
        assert set(ids) == {crossing, pattern}  # no other user's, hidden or expired memory
        assert all(hit["explain"]["vector_feedback_rank"] >= 1 for hit in hits)
        plain = memory.search("zebra", user_id="u", top_k=10, explain=True, mode="vector")
        assert all("vector_feedback" not in hit["explain"] for hit in plain["results"])
        assert expired not in ids and hidden not in ids
