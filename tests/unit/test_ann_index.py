"""The HNSW path of a large scope's index against the exact scan on generated data (issue 16).

Two ``ScopeIndex`` hold the same rows: one with a low ``ann_threshold`` (searched through the
graph), one with none (always scanned exactly). Their top 10 must agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from memvault import Memory
from memvault.retrieval import ann, vector_index
from memvault.retrieval.vector_index import ScopeIndex, VectorCache, VectorEntry
from tests.polling import wait_for

pytestmark = pytest.mark.skipif(not ann.available(), reason="the ann extra (usearch) is missing")

DIMS = 48
ROWS = 3_000
THRESHOLD = 1_000
NOW = 1_000.0
ANYONE = (None, None, None)


def _unit(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    return (matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)).astype(np.float32)


def _clustered(rng: np.random.Generator, count: int) -> npt.NDArray[np.float32]:
    """Unit vectors around 60 centres, like sentence embeddings of related texts."""
    centres = _unit(rng.standard_normal((60, DIMS)))
    return _unit(centres[rng.integers(0, 60, count)] + 0.25 * rng.standard_normal((count, DIMS)))


def _entries(vectors: npt.NDArray[np.float32], first: int = 0) -> list[VectorEntry]:
    return [
        VectorEntry(
            f"m{first + i}",
            "u1",
            "agent-a" if (first + i) % 2 else "agent-b",
            None,
            500.0 if (first + i) % 7 == 0 else math.inf,  # one row in seven has expired
            vector,
            f"token{(first + i) % 10}",
            "",
        )
        for i, vector in enumerate(vectors)
    ]


@pytest.fixture(scope="module")
def data() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    rng = np.random.default_rng(16)
    rows = _clustered(rng, ROWS + 60)
    vectors, queries = rows[:ROWS], rows[ROWS:]
    return vectors, _unit(queries + 0.1 * rng.standard_normal(queries.shape))


def _pair(vectors: npt.NDArray[np.float32]) -> tuple[ScopeIndex, ScopeIndex]:
    graph = ScopeIndex(1, DIMS, ann_threshold=THRESHOLD)
    exact = ScopeIndex(1, DIMS)
    graph.add(_entries(vectors))
    exact.add(_entries(vectors))
    graph.prepare()
    return graph, exact


@pytest.fixture(scope="module")
def pair(
    data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
) -> tuple[ScopeIndex, ScopeIndex]:
    return _pair(data[0])


def _recall(
    graph: ScopeIndex,
    exact: ScopeIndex,
    queries: npt.NDArray[np.float32],
    owners: tuple[str | None, str | None, str | None] = ANYONE,
    allowed: set[str] | None = None,
) -> Iterator[tuple[list[tuple[str, float]], list[tuple[str, float]]]]:
    for query in queries:
        kwargs = {"now": NOW, "owners": owners, "allowed": allowed}
        yield graph.search(query, 10, **kwargs), exact.search(query, 10, **kwargs)  # type: ignore[arg-type]


def _check(pairs: Iterator[tuple[list[tuple[str, float]], list[tuple[str, float]]]]) -> float:
    found = total = 0
    for approximate, exact in pairs:
        assert len(approximate) == len(exact) == 10
        scores = dict(exact)
        for memory_id, score in approximate:  # scores are exact cosines, not quantised ones
            if memory_id in scores:
                assert score == pytest.approx(scores[memory_id], abs=1e-5)
        found += len({i for i, _ in approximate} & set(scores))
        total += len(exact)
    return found / total


def test_graph_top10_matches_exact_scan(
    pair: tuple[ScopeIndex, ScopeIndex],
    data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
) -> None:
    graph, exact = pair
    assert graph.uses_graph and graph.graph is not None and not exact.uses_graph
    assert _check(_recall(graph, exact, data[1])) >= 0.98


def test_graph_applies_owner_mask_filter_and_expiry(
    pair: tuple[ScopeIndex, ScopeIndex],
    data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
) -> None:
    graph, exact = pair
    half = {f"m{i}" for i in range(ROWS) if i % 3 != 0}
    owners = (None, "agent-a", None)
    assert _check(_recall(graph, exact, data[1], owners, half)) >= 0.98
    for approximate, _ in _recall(graph, exact, data[1][:10], owners, half):
        for memory_id, _score in approximate:
            number = int(memory_id[1:])
            assert number % 2 == 1 and number % 3 != 0 and number % 7 != 0


def test_selective_filter_falls_back_to_exact_scan(
    pair: tuple[ScopeIndex, ScopeIndex],
    data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph, exact = pair
    assert graph.graph is not None
    asked: list[int] = []
    real = graph.graph.candidates
    monkeypatch.setattr(graph.graph, "candidates", lambda q, n: asked.append(n) or real(q, n))
    few = {f"m{i}" for i in range(0, ROWS, 97)} | {"not-in-this-scope"}
    for approximate, expected in _recall(graph, exact, data[1], ANYONE, few):
        assert approximate == expected  # the passing rows were scanned exactly
    assert asked == []
    # An owner mask that few candidates pass is measured on them, then scanned exactly too.
    graph.add(_entries(data[0][:5], first=ROWS))
    exact.add(_entries(data[0][:5], first=ROWS))
    for row in range(ROWS, ROWS + 5):
        graph.owners[graph.positions[f"m{row}"], 2] = "run-x"
        exact.owners[exact.positions[f"m{row}"], 2] = "run-x"
    for approximate, expected in _recall(graph, exact, data[1][:5], ("u1", None, "run-x")):
        assert approximate == expected and len(approximate) == 4  # m3003 has expired
    assert asked, "the graph was asked first: no filter bounded the share beforehand"
    graph.remove([f"m{row}" for row in range(ROWS, ROWS + 5)])
    exact.remove([f"m{row}" for row in range(ROWS, ROWS + 5)])


def test_adds_updates_and_deletes_reach_the_graph_without_rebuild(
    data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
) -> None:
    vectors, queries = data
    graph, exact = _pair(vectors)
    built = graph.graph
    assert built is not None and built.size == ROWS
    target = queries[0]
    for index in (graph, exact):  # a new row equal to the query, and one replaced by it
        index.add(_entries(np.stack([target]), first=ROWS + 1))  # odd: agent-a, not expired
        index.add([VectorEntry("m1", "u1", "agent-a", None, math.inf, target, "", "")])
    found = graph.search(target, 10, now=NOW, owners=ANYONE, allowed=None)
    assert {i for i, _ in found[:2]} == {f"m{ROWS + 1}", "m1"}
    assert found[0][1] == pytest.approx(1.0, abs=1e-5)
    for index in (graph, exact):
        index.remove([f"m{ROWS + 1}", "m1", "m2", "m3"])
    assert graph.graph is built and built.removed == 5  # m1 replaced once, then 4 removed
    assert built.size == ROWS + 1 - 4
    removed = {f"m{ROWS + 1}", "m1", "m2", "m3"}
    assert _check(_recall(graph, exact, queries)) >= 0.98
    for approximate, _ in _recall(graph, exact, queries):
        assert not removed & {i for i, _ in approximate}


def test_graph_with_many_removals_is_rebuilt_in_the_background(
    data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
) -> None:
    vectors, queries = data
    graph, exact = _pair(vectors)
    old = graph.graph
    cache = VectorCache(2**30)
    cache.get("scope", 1, lambda: graph)
    cache.apply("scope", 1, 2, removed=[f"m{i}" for i in range(0, 1_200, 2)])
    assert old is not None and old.removed == 600 and cache.builds == 0  # under the minimum
    cache.apply("scope", 2, 3, removed=[f"m{i}" for i in range(1, 1_200, 2)])
    exact.remove([f"m{i}" for i in range(1_200)])
    wait_for(lambda: cache.builds == 1, 60, "the background rebuild")
    fresh = graph.graph
    assert fresh is not None and fresh is not old
    assert fresh.removed == 0 and fresh.size == graph.size == ROWS - 1_200
    assert _check(_recall(graph, exact, queries)) >= 0.98


def test_write_during_background_build_is_not_lost(
    data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vectors, queries = data
    index = ScopeIndex(1, DIMS, ann_threshold=THRESHOLD)
    index.add(_entries(vectors))
    cache = VectorCache(2**30)
    built: list[int] = []
    real = ann.HnswIndex.build

    def build(graph: ann.HnswIndex, matrix: npt.NDArray[np.float32]) -> None:
        built.append(len(matrix))
        if len(built) == 1:  # a write lands while the first graph is being built
            new = _entries(np.stack([queries[0]]), first=ROWS + 1)
            cache.apply("scope", 1, 2, added=new, removed=["m5"])
        real(graph, matrix)

    monkeypatch.setattr(ann.HnswIndex, "build", build)
    cache.get("scope", 1, lambda: index)
    wait_for(lambda: cache.builds == 1, 60, "the background build")
    assert built == [ROWS, ROWS]  # the first graph, overtaken by the write, was built again
    assert index.uses_graph and index.graph is not None and index.graph.size == ROWS
    found = index.search(queries[0], 10, now=NOW, owners=ANYONE, allowed=None)
    assert found[0][0] == f"m{ROWS + 1}" and "m5" not in {i for i, _ in found}


def test_small_scope_keeps_exact_scan(
    data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
) -> None:
    small = ScopeIndex(1, DIMS, ann_threshold=THRESHOLD)
    small.add(_entries(data[0][: THRESHOLD - 1]))
    small.prepare()
    small.search(data[1][0], 10, now=NOW, owners=ANYONE, allowed=None)
    assert not small.uses_graph and small.graph is None
    cache = VectorCache(2**30)
    cache.get("scope", 1, lambda: small)
    cache.apply(
        "scope", 1, 2, added=_entries(data[0][THRESHOLD - 1 : THRESHOLD], first=THRESHOLD - 1)
    )
    # The write that crossed the threshold started a build; searches scan exactly meanwhile.
    wait_for(lambda: cache.builds == 1, 60, "the background build")
    assert small.uses_graph and small.graph is not None and small.graph.size == THRESHOLD


def test_memory_setting_reaches_the_scope_index(tmp_path: object) -> None:
    with Memory(str(tmp_path), embedder="hash", ann_threshold=40) as m:
        texts = [f"note {i} about topic {i % 9} and colour {i % 5}" for i in range(60)]
        m.add_many([{"messages": t, "user_id": "alice"} for t in texts])
        m.search("note about topic 3", user_id="alice", mode="vector", top_k=5)
        wait_for(lambda: m._cache.builds == 1, 60, "the background build")
        hits = m.search("note about topic 3", user_id="alice", mode="vector", top_k=5)["results"]
        assert len(hits) == 5
        indexes = list(m._cache._entries.values())
        assert [index.graph is not None for index in indexes] == [True]
        assert indexes[0].graph is not None and indexes[0].graph.size == 60
        m.delete(hits[0]["id"])
        again = m.search("note about topic 3", user_id="alice", mode="vector", top_k=5)
        assert hits[0]["id"] not in {hit["id"] for hit in again["results"]}


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_filtered_search_through_memory_matches_exact(
    tmp_path: object, store: str, request: pytest.FixtureRequest
) -> None:
    """The index lives beside the store: the same on SQLite and on Postgres."""
    options = {"database_url": request.getfixturevalue("pg_url")} if store == "postgres" else {}
    texts = [f"memo {i} on subject {i % 11} in room {i % 4}" for i in range(600)]
    questions = [f"subject {i} in room {i % 4}" for i in range(12)]

    def answers(threshold: int) -> list[list[str]]:
        # A generous filter budget: the test is about answers, not the time a loaded machine takes.
        with Memory(
            str(tmp_path),
            embedder="hash",
            ann_threshold=threshold,
            max_filter_seconds=30,
            **options,
        ) as m:
            if not m.get_all(user_id="bob", top_k=1)["results"]:
                m.add_many(
                    [
                        {
                            "messages": t,
                            "user_id": "bob",
                            "metadata": {"room": i % 4, "subject": i % 11},
                        }
                        for i, t in enumerate(texts)
                    ]
                )
            m.search("warm up", user_id="bob")
            if threshold:
                wait_for(lambda: m._cache.builds == 1, 60, "the background build")
            found = []
            for q in questions:
                for filters in ({"room": 1}, {"room": {"in": [1, 2, 3]}}, {"subject": 3}):
                    hits = m.search(q, user_id="bob", filters=filters, top_k=10, mode="vector")
                    found.append([hit["id"] for hit in hits["results"]])
            indexes = list(m._cache._entries.values())
            assert [index.graph is not None for index in indexes] == [threshold > 0]
            return found

    approximate, exact = answers(300), answers(0)
    same = sum(len(set(a) & set(e)) for a, e in zip(approximate, exact, strict=True))
    assert all(len(e) == 10 for e in exact)
    assert same / (10 * len(exact)) >= 0.98


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_memory_rescores_from_the_store_without_float_vectors(
    tmp_path: object, store: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ``Memory`` the graph's scope drops its float matrix and re-scores candidates with
    vectors read (one batched read) from the store: the scores are exact cosines, a selective
    filter (the int8 scan bounded then read, READ_ALL_ROWS lowered) gives the exact top 10, and a
    row deleted by another process is not answered."""
    monkeypatch.setattr(vector_index, "READ_ALL_ROWS", 20)
    options = {"database_url": request.getfixturevalue("pg_url")} if store == "postgres" else {}
    texts = [f"entry {i} on subject {i % 11} in room {i % 4}" for i in range(600)]
    items = [
        {"messages": t, "user_id": "carol", "metadata": {"room": i % 4, "subject": i % 11}}
        for i, t in enumerate(texts)
    ]
    questions = [f"subject {i} in room {i % 4}" for i in range(8)]
    home = str(tmp_path)
    with Memory(home, embedder="hash", ann_threshold=0, **options) as plain:
        plain.add_many(items)
        exact = {
            (q, str(f)): plain.search(q, user_id="carol", filters=f, top_k=10, mode="vector")
            for q in questions
            for f in (None, {"subject": 3})
        }
        hybrid = plain.search(questions[1], user_id="carol", top_k=10, explain=True)["results"]
    with Memory(home, embedder="hash", ann_threshold=300, **options) as m:
        m.search("warm up", user_id="carol")
        wait_for(lambda: m._cache.builds == 1, 60, "the background build")
        (index,) = m._cache._entries.values()
        assert index.uses_graph and index.compact and index.matrix.nbytes == 0
        reads: list[int] = []
        real = m.engine.store.vectors_of
        monkeypatch.setattr(
            m.engine.store, "vectors_of", lambda s, ids: reads.append(len(ids)) or real(s, ids)
        )
        same = 0
        for (q, f), expected in exact.items():
            filters = None if f == "None" else {"subject": 3}
            found = m.search(q, user_id="carol", filters=filters, top_k=10, mode="vector")
            got = [(h["id"], h["score"]) for h in found["results"]]
            want = [(h["id"], h["score"]) for h in expected["results"]]
            scores = dict(want)
            for memory_id, score in got:  # exact cosines, as the exact scan gives them
                if memory_id in scores:
                    assert score == pytest.approx(scores[memory_id], abs=1e-5)
            if filters is not None:  # 55 passing rows, over READ_ALL_ROWS: bounded, exact
                assert [i for i, _ in got] == [i for i, _ in want]
            same += len({i for i, _ in got} & set(scores))
        assert same >= 0.98 * 10 * len(exact)
        assert reads and max(reads) < 600
        # Hybrid search with vector feedback (on by default) takes its seeds' vectors from the
        # store too: the graph's scope holds no float vector to move the query with.
        compact = m.search(questions[1], user_id="carol", top_k=10, explain=True)["results"]
        assert all("vector_feedback" in h["explain"] for h in compact[:3])
        assert compact[0]["id"] == hybrid[0]["id"]
        assert len({h["id"] for h in compact} & {h["id"] for h in hybrid}) >= 8
        top = m.search(questions[0], user_id="carol", top_k=3, mode="vector")["results"][0]["id"]
        with Memory(home, embedder="hash", ann_threshold=300, **options) as other:
            other.delete(top)  # another process: this cache's graph still holds the row
        hits = m.search(questions[0], user_id="carol", top_k=10, mode="vector")["results"]
        assert top not in {h["id"] for h in hits} and len(hits) == 10


def test_the_graph_library_and_the_model_load_in_either_order() -> None:
    """Importing usearch before ONNX Runtime crashed the process (SIGSEGV) at the model load:
    memvault loads the graph library only after ONNX Runtime, in a fresh process here."""
    import subprocess
    import sys

    child = (
        "from memvault.retrieval.ann import HnswIndex\n"
        "HnswIndex(8)\n"
        "import onnxruntime\n"
        "print('both loaded')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and "both loaded" in done.stdout, (done.returncode, done.stderr)


# --- scopes that keep no float matrix (``VectorCache(compact=True)``, as ``Memory`` runs) ---


def _store(vectors: npt.NDArray[np.float32], reads: list[int]) -> vector_index.Fetch:
    """A store's batched read of vectors by id (rows m0..): counts the rows read."""
    by_id = {f"m{i}": vector for i, vector in enumerate(vectors)}

    def fetch(ids: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
        reads.append(len(ids))
        return {i: by_id[i] for i in ids if i in by_id}

    return fetch


def _compact(vectors: npt.NDArray[np.float32]) -> ScopeIndex:
    index = ScopeIndex(1, DIMS, ann_threshold=THRESHOLD)
    index.add(_entries(vectors))
    index.prepare()
    index.drop_floats()
    return index


def _finish(
    index: ScopeIndex,
    query: npt.NDArray[np.float32],
    fetch: vector_index.Fetch,
    limit: int = 10,
    owners: tuple[str | None, str | None, str | None] = ANYONE,
    allowed: set[str] | None = None,
) -> list[tuple[str, float]]:
    found = index.search(query, limit, now=NOW, owners=owners, allowed=allowed)
    assert isinstance(found, vector_index.Rescore), "a compact scope re-scores from the store"
    return found.finish(fetch)


def test_compact_scope_holds_no_floats_and_rescores_candidates_read_from_the_store(
    pair: tuple[ScopeIndex, ScopeIndex],
    data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
) -> None:
    vectors, queries = data
    _, exact = pair
    index = _compact(vectors)
    assert index.matrix.nbytes == 0 and index.memory()["float_matrix"] == 0
    reads: list[int] = []
    fetch = _store(vectors, reads)
    half = {f"m{i}" for i in range(ROWS) if i % 3 != 0}

    def pairs(
        owners: tuple[str | None, str | None, str | None], allowed: set[str] | None
    ) -> Iterator[tuple[list[tuple[str, float]], list[tuple[str, float]]]]:
        for query in queries:
            kwargs = {"now": NOW, "owners": owners, "allowed": allowed}
            expected = exact.search(query, 10, **kwargs)  # type: ignore[arg-type]
            assert isinstance(expected, list)
            yield _finish(index, query, fetch, 10, owners, allowed), expected

    assert _check(pairs(ANYONE, None)) >= 0.98  # scores exact: checked inside
    # One or two batched reads per search, of at most its 20 candidates; with more candidates
    # (limit 40: 80), only part of them are read (the graph's int8 order picks which).
    assert len(queries) <= len(reads) <= 2 * len(queries) and sum(reads) <= len(queries) * 20
    reads.clear()
    for query in queries:
        assert len(_finish(index, query, fetch, 40)) == 40
    assert sum(reads) < len(queries) * 80 * 0.8
    assert _check(pairs((None, "agent-a", None), half)) >= 0.98
    for found, _ in pairs((None, "agent-a", None), half):
        for memory_id, _score in found:
            number = int(memory_id[1:])
            assert number % 2 == 1 and number % 3 != 0 and number % 7 != 0


@pytest.mark.parametrize("read_all_rows", [100_000, 10])
def test_compact_selective_filter_gives_the_exact_top10(
    pair: tuple[ScopeIndex, ScopeIndex],
    data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
    monkeypatch: pytest.MonkeyPatch,
    read_all_rows: int,
) -> None:
    """Few passing rows: all read from the store; more than ``READ_ALL_ROWS``: scored on the
    int8 vectors and read only where the error bound can reach the top. Both exact."""
    monkeypatch.setattr(vector_index, "READ_ALL_ROWS", read_all_rows)
    vectors, queries = data
    _, exact = pair
    index = _compact(vectors)
    reads: list[int] = []
    fetch = _store(vectors, reads)
    few = {f"m{i}" for i in range(0, ROWS, 13)} | {"not-in-this-scope"}
    for query in queries:
        for owners in (ANYONE, (None, "agent-b", None)):
            expected = exact.search(query, 10, now=NOW, owners=owners, allowed=few)
            found = _finish(index, query, fetch, 10, owners, few)
            assert isinstance(expected, list) and len(found) == len(expected) == 10
            assert [i for i, _ in found] == [i for i, _ in expected]
            assert [s for _, s in found] == pytest.approx([s for _, s in expected], abs=1e-6)
    if read_all_rows == 10:  # the bound spared most passing rows a read
        assert sum(reads) < len(queries) * 2 * len(few) / 2


def test_compact_rows_gone_from_the_store_are_left_out(
    data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
) -> None:
    """Another process deleted rows this cache still holds: they are not answered."""
    vectors, queries = data
    index = _compact(vectors)
    full = _finish(index, queries[0], _store(vectors, []))
    gone = {i for i, _ in full[:3]}
    reads: list[int] = []
    by_id = _store(vectors, reads)
    found = _finish(
        index, queries[0], lambda ids: {k: v for k, v in by_id(ids).items() if k not in gone}
    )
    assert len(found) == 10 and not gone & {i for i, _ in found}
    assert [i for i, _ in found[:7]] == [i for i, _ in full[3:10]]


def test_compact_writes_and_background_rebuild_use_the_graphs_own_vectors(
    data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
) -> None:
    vectors, queries = data
    index = ScopeIndex(1, DIMS, ann_threshold=THRESHOLD)
    index.add(_entries(vectors))
    cache = VectorCache(2**30, compact=True)
    cache.get("scope", 1, lambda: index)
    wait_for(lambda: cache.builds == 1, 60, "the background build")
    assert index.compact and index.matrix.nbytes == 0 and index.graph is not None
    target = queries[0]
    stored = np.concatenate([vectors, np.stack([target])])
    cache.apply("scope", 1, 2, added=_entries(np.stack([target]), first=ROWS))
    fetch = _store(stored, [])
    found = _finish(index, target, fetch)
    assert found[0] == (f"m{ROWS}", pytest.approx(1.0, abs=1e-5))
    # Many removals: rebuilt in the background from the int8 vectors the graph holds.
    old = index.graph
    cache.apply("scope", 2, 3, removed=[f"m{i}" for i in range(1, 2_401, 2)])
    wait_for(lambda: cache.builds == 2, 120, "the background rebuild")
    assert index.graph is not old and index.graph is not None and index.graph.removed == 0
    assert index.graph.size == index.size == ROWS + 1 - 1_200
    exact = ScopeIndex(1, DIMS)
    exact.add([e for e in _entries(stored) if e.id in index.positions])
    approximate = (_finish(index, q, fetch) for q in queries)
    assert (
        _check(
            zip(
                approximate,
                (exact.search(q, 10, now=NOW, owners=ANYONE, allowed=None) for q in queries),
                strict=True,
            )
        )
        >= 0.98
    )  # type: ignore[arg-type]
