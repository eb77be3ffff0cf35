"""The in-memory BM25 gives FTS5's scores when the scope is the whole table, through adds,
updates, deletes and compaction; and it ranks within the scope only."""

from __future__ import annotations

import random
import sqlite3

import numpy as np
import pytest

from memvault.retrieval.vector_index import ScopeIndex, VectorEntry

WEIGHTS = (1.0, 0.5)
PLAIN = [f"w{i:03d}" for i in range(60)]  # words of a store without encryption (benchmark)
HASHED = [f"t{i * 7919:016x}" for i in range(60)]  # keyed token hashes: read by the numpy path


def _text(rng: random.Random, low: int, high: int, vocabulary: list[str]) -> str:
    return " ".join(rng.choice(vocabulary) for _ in range(rng.randint(low, high)))


def _entry(memory_id: str, body: str, context: str, user: str = "u") -> VectorEntry:
    return VectorEntry(
        memory_id, user, None, None, float("inf"), np.zeros(4, np.float32), body, context
    )


class Mirror:
    """The same rows in an FTS5 table and a ScopeIndex."""

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE f USING fts5 (body, context, tokenize = 'ascii')")
        self.index = ScopeIndex(0, 4, WEIGHTS)
        self.rowids: dict[str, int] = {}
        self.next_rowid = 1

    def put(self, memory_id: str, body: str, context: str) -> None:
        if memory_id in self.rowids:
            self.db.execute("DELETE FROM f WHERE rowid = ?", (self.rowids[memory_id],))
        rowid = self.rowids.setdefault(memory_id, self.next_rowid)
        self.next_rowid += 1
        self.db.execute(
            "INSERT INTO f (rowid, body, context) VALUES (?, ?, ?)", (rowid, body, context)
        )
        self.index.add([_entry(memory_id, body, context)])

    def put_all(self, rows: list[tuple[str, str, str]]) -> None:
        """Many new rows in one ``add`` (the bulk path that scope loads take)."""
        for memory_id, body, context in rows:
            rowid = self.rowids.setdefault(memory_id, self.next_rowid)
            self.next_rowid += 1
            self.db.execute(
                "INSERT INTO f (rowid, body, context) VALUES (?, ?, ?)", (rowid, body, context)
            )
        self.index.add([_entry(*row) for row in rows])

    def remove(self, memory_id: str) -> None:
        self.db.execute("DELETE FROM f WHERE rowid = ?", (self.rowids.pop(memory_id),))
        self.index.remove([memory_id])

    def check(self, query: set[str]) -> None:
        names = {rowid: memory_id for memory_id, rowid in self.rowids.items()}
        expected = {
            names[rowid]: -score
            for rowid, score in self.db.execute(
                "SELECT rowid, bm25(f, ?, ?) FROM f WHERE f MATCH ?",
                (*WEIGHTS, " OR ".join(sorted(query))),
            )
        }
        found = dict(
            self.index.keyword_search(
                query, 10_000, now=0.0, owners=(None, None, None), allowed=None
            )
        )
        assert found.keys() == expected.keys()
        for memory_id, score in expected.items():
            assert found[memory_id] == pytest.approx(score, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("vocabulary", [PLAIN, HASHED], ids=["plain", "hashed"])
def test_scores_equal_fts5_through_adds_updates_deletes_and_compaction(
    vocabulary: list[str],
) -> None:
    rng = random.Random(3)

    def text(low: int, high: int) -> str:
        return _text(rng, low, high, vocabulary)

    mirror = Mirror()
    ids = [f"m{i}" for i in range(9000)]
    mirror.put_all([(m, text(1, 12), text(0, 20)) for m in ids[:2000]])
    for memory_id in ids[2000:3000]:
        mirror.put(memory_id, text(1, 12), text(0, 20))
    for _ in range(5):
        mirror.check(set(rng.sample(vocabulary, 3)))
    # Updates in place, then deletes enough rows to compact the postings more than once.
    for memory_id in rng.sample(ids[:3000], 500):
        mirror.put(memory_id, text(1, 12), text(0, 20))
    for memory_id in rng.sample(ids[:3000], 2500):
        mirror.remove(memory_id)
    mirror.put_all([(m, text(1, 12), "") for m in ids[3000:6000]])
    for memory_id in rng.sample(sorted(mirror.rowids), 2000):
        mirror.remove(memory_id)
    for _ in range(10):
        mirror.check(set(rng.sample(vocabulary, rng.randint(1, 5))))
    mirror.check({"absent"})
    # The O(1) size the cache budgets with counts exactly the postings' entries.
    keywords = mirror.index.keywords
    stored = sum(len(serials) for serials, _ in keywords._postings.values())
    assert keywords._live_postings + keywords._dead_postings == stored


def test_a_scope_is_ranked_by_its_own_statistics() -> None:
    """Rows another scope adds never change this scope's scores (FTS5 shares one table's
    statistics across every user, which lets one user shift another's ranking)."""
    alone = ScopeIndex(0, 4, WEIGHTS)
    alone.add([_entry("a", "apple pie", ""), _entry("b", "apple tart", "")])
    before = alone.keyword_search(
        {"apple", "pie"}, 10, now=0.0, owners=(None, None, None), allowed=None
    )
    other = ScopeIndex(0, 4, WEIGHTS)
    other.add([_entry(f"x{i}", "apple apple", "") for i in range(100)])
    after = alone.keyword_search(
        {"apple", "pie"}, 10, now=0.0, owners=(None, None, None), allowed=None
    )
    assert before == after
    assert [memory_id for memory_id, _ in before] == ["a", "b"]


def test_masks_owner_expiry_and_allowed_ids() -> None:
    index = ScopeIndex(0, 4, WEIGHTS)
    index.add(
        [
            _entry("mine", "shared word", "", user="u1"),
            _entry("theirs", "shared word", "", user="u2"),
            VectorEntry("old", "u1", None, None, 5.0, np.zeros(4, np.float32), "shared", ""),
        ]
    )

    def ids(**kwargs: object) -> list[str]:
        hits = index.keyword_search({"shared"}, 10, **kwargs)  # type: ignore[arg-type]
        return sorted(memory_id for memory_id, _ in hits)

    assert ids(now=10.0, owners=("u1", None, None), allowed=None) == ["mine"]
    assert ids(now=1.0, owners=("u1", None, None), allowed=None) == ["mine", "old"]
    assert ids(now=1.0, owners=(None, None, None), allowed={"theirs"}) == ["theirs"]
