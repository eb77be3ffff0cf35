"""Recency decay per memory type and reinforcement by reads: off by default, bounded, explained.

Every pair of memories here is equally similar to the query (same word counts, same overlap,
no context field): their fused scores tie, so only an adjustment decides their order (without one
the tie goes to the smaller id, and two ids made in the same millisecond order at random). The
ranking clock is fixed; stored times are in the past.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from memvault import HashEmbedder, InvalidConfig, Memory, Settings

NOW = datetime(2025, 6, 1, tzinfo=UTC)
OLD = "2024-01-01T00:00:00+00:00"  # 517 days before NOW
RECENT = "2025-05-31T00:00:00+00:00"  # 1 day before NOW
QUERY = "alpha beta"


def _memory(home: Path, **options: Any) -> Memory:
    return Memory(
        home,
        embedder=HashEmbedder(4096),
        context_window=0,
        ranking_clock=lambda: NOW,
        **options,
    )


def _store_pair(memory: Memory, memory_type: str) -> tuple[str, str]:
    """An old memory, then a recent one, equally similar to ``QUERY``: (old id, recent id)."""
    added = memory.add_many(
        [
            {
                "messages": "alpha beta gamma",
                "user_id": "u",
                "memory_type": memory_type,
                "created_at": OLD,
            },
            {
                "messages": "alpha beta delta",
                "user_id": "u",
                "memory_type": memory_type,
                "created_at": RECENT,
            },
        ]
    )
    old, recent = (item["id"] for item in added["results"])
    return old, recent


def _assert_tied(memory: Memory, pair: tuple[str, str]) -> None:
    hits = memory.search(QUERY, user_id="u", explain=True)["results"]
    assert {hit["id"] for hit in hits} == set(pair)
    assert hits[0]["score"] == hits[1]["score"]
    assert "decay" not in hits[0]["explain"]  # no adjustment is on


def _ids(memory: Memory, query: str = QUERY, **options: Any) -> list[str]:
    return [hit["id"] for hit in memory.search(query, user_id="u", **options)["results"]]


def test_an_old_episodic_memory_falls_below_a_recent_equal_one(home: Path) -> None:
    with _memory(home) as memory:
        old, recent = _store_pair(memory, "episodic")
        _assert_tied(memory, (old, recent))
    with _memory(home, recency_half_life_days={"episodic": 30}) as memory:
        assert _ids(memory) == [recent, old]
        # The recent one is lifted from beyond top_k: adjustments rank every candidate.
        assert _ids(memory, top_k=1) == [recent]


def test_a_type_without_a_half_life_does_not_decay(home: Path) -> None:
    with _memory(home, recency_half_life_days={"episodic": 30}) as memory:
        old, recent = _store_pair(memory, "semantic")
        hits = memory.search(QUERY, user_id="u", explain=True)["results"]
    assert {hit["id"] for hit in hits} == {old, recent}
    assert hits[0]["score"] == hits[1]["score"]  # still tied: neither decays
    assert all(hit["explain"]["decay"] is None for hit in hits)
    assert all(hit["explain"]["recency"] == 0 for hit in hits)


def test_reinforcement_lifts_a_frequently_read_memory(home: Path) -> None:
    with _memory(home) as memory:
        first, often_read = _store_pair(memory, "semantic")
        _assert_tied(memory, (first, often_read))
        for _ in range(12):  # reads of the second memory alone
            assert _ids(memory, query="delta", top_k=1) == [often_read]
    # Closing wrote the counted reads.
    with _memory(home, reinforcement_weight=0.5) as memory:
        hits = memory.search(QUERY, user_id="u", explain=True)["results"]
    assert [hit["id"] for hit in hits] == [often_read, first]
    # Tied scores have a spread of 1: the lift is 0.5 * reads / (reads + 10). The tie check read
    # both once, and the second memory 12 times more.
    lift = hits[0]["explain"]["reinforcement"]
    assert lift == pytest.approx(0.5 * 13 / 23)
    assert hits[1]["explain"]["reinforcement"] == pytest.approx(0.5 * 1 / 11)
    assert hits[0]["explain"]["adjusted"] == pytest.approx(hits[0]["explain"]["unadjusted"] + lift)
    # The shown score is the calibrated relevance, never rising down the list.
    assert 1 >= hits[0]["score"] >= hits[1]["score"] >= 0


def test_decay_is_bounded_by_the_recency_weight(home: Path) -> None:
    with _memory(home, recency_half_life_days={"episodic": 1}, recency_weight=0.2) as memory:
        old, recent = _store_pair(memory, "episodic")
        hits = memory.search(QUERY, user_id="u", explain=True)["results"]
    by_id = {hit["id"]: hit["explain"] for hit in hits}
    assert by_id[old]["decay"] == pytest.approx(0.0, abs=1e-12)  # 517 half-lives
    assert by_id[recent]["decay"] == pytest.approx(0.5)  # one half-life
    # The candidates' scores are tied, so their spread is 1: the change is in weight units.
    assert by_id[old]["recency"] == pytest.approx(-0.2)
    assert by_id[recent]["recency"] == pytest.approx(-0.1)


def _corpus(memory: Memory) -> None:
    texts = [
        "the cat sat on the mat",
        "a dog chased the cat",
        "Paris is the capital of France",
        "we hiked in the alps last summer",
        "the cat likes fish",
        "dinner with Anna on friday",
        "my cat is called Miso",
        "the meeting moved to monday",
    ]
    memory.add_many(
        [{"messages": text, "user_id": "u", "memory_type": "episodic"} for text in texts]
    )


@pytest.mark.parametrize("mode", ["hybrid", "vector", "bm25"])
def test_adjustments_that_change_nothing_rank_as_without_them(home: Path, mode: str) -> None:
    """The adjusted path (every candidate ranked) gives today's answer when no adjustment
    applies: a half-life only for a type nobody stored. Same store, so ties break the same."""
    with _memory(home) as memory:
        _corpus(memory)
    answers = []
    for options in ({}, {"recency_half_life_days": {"procedural": 30}}):
        with _memory(home, **options) as memory:
            hits = memory.search("cat", user_id="u", top_k=4, mode=mode, explain=True)["results"]
            answers.append([(hit["memory"], hit["score"], hit["explain"]) for hit in hits])
    plain, adjusted = answers
    assert len(plain) == 4
    assert [(text, score) for text, score, _ in adjusted] == [(t, s) for t, s, _ in plain]
    for (_, _, before), (_, _, after) in zip(plain, adjusted, strict=True):
        assert after == before | {
            "unadjusted": after["unadjusted"],
            "adjusted": after["unadjusted"],
            "decay": None,
            "recency": 0.0,
            "reinforcement": 0.0,
        }
    # Off by default: no adjustment parts in the explanation.
    assert "decay" not in plain[0][2]


def test_threshold_applies_to_the_shown_score_after_the_adjustments(home: Path) -> None:
    with _memory(home, recency_half_life_days={"episodic": 30}) as memory:
        _corpus(memory)
        every = memory.search("cat", user_id="u", top_k=8, explain=True)["results"]
        cut = every[2]["score"]
        hits = memory.search("cat", user_id="u", top_k=8, threshold=cut, explain=True)
    kept = hits["results"]
    assert kept and all(hit["score"] >= cut for hit in kept)
    # A prefix of the unthresholded answer: the shown score never rises down the list.
    assert [hit["id"] for hit in kept] == [hit["id"] for hit in every[: len(kept)]]
    assert all(hit["score"] < cut for hit in every[len(kept) :])


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"recency_half_life_days": {"episodic": 0}}, "half-life of episodic"),
        ({"recency_half_life_days": {"episodic": -5}}, "half-life of episodic"),
        ({"recency_half_life_days": {"episodic": float("inf")}}, "half-life of episodic"),
        ({"recency_half_life_days": {"episodic": float("nan")}}, "half-life of episodic"),
        ({"recency_half_life_days": {"working": 30}}, "recency_half_life_days"),
        ({"recency_half_life_days": {"episodic": "soon"}}, "recency_half_life_days"),
        ({"recency_weight": -1}, "recency_weight"),
        ({"recency_weight": 11}, "recency_weight"),
        ({"reinforcement_weight": -0.1}, "reinforcement_weight"),
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidConfig) as caught:
        Settings.load(**overrides)
    assert fragment in caught.value.message


def test_settings_from_toml_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "memvault.toml"
    config.write_text(
        "[memvault]\nreinforcement_weight = 0.3\n"
        "[memvault.recency_half_life_days]\nepisodic = 90\nprocedural = 365\n"
    )
    monkeypatch.setenv("MEMVAULT_CONFIG", str(config))
    settings = Settings.load()
    assert settings.recency_half_life_days == {"episodic": 90, "procedural": 365}
    assert settings.reinforcement_weight == 0.3
    monkeypatch.setenv("MEMVAULT_RECENCY_HALF_LIFE_DAYS", '{"episodic": 7}')
    assert Settings.load().recency_half_life_days == {"episodic": 7}


def test_off_by_default(home: Path) -> None:
    settings = Settings.load()
    assert settings.recency_half_life_days == {} and settings.reinforcement_weight == 0
