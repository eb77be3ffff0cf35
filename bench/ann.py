"""One large scope searched through the HNSW path (issue 16), against the exact scan, in process.

Loads N memories in one user's scope, then prints and saves: search p50/p95 (vector and hybrid
modes, end to end in ``Memory.search`` including the query embedding, every query distinct), the
same with the graph switched off (today's exact scan, same process and data), recall@10 of the
graph path against the exact scan on the same query vectors, the cold start to the first answer
(decrypting the scope; the first answers scan exactly while the graph is built in the background),
the time until the graph is in use, its bytes and the RSS.

Vectors for the load are not computed by the model (N model calls would take an hour): the model
embeds ``--base`` real facts once, and each memory's vector is a normalised mix of two of them plus
a little noise (``normalise(a + 0.5 b + 0.05 g)``), so the scope lies where sentence embeddings do.
Queries are real questions embedded by the model at search time.

    .venv/bin/python bench/ann.py [--memories 100000] [--queries 200] [--base 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from corpus import facts, pct, questions
from memvault import Memory
from memvault.config import Settings
from memvault.embedding import create_embedder

HERE = Path(__file__).resolve().parent
USER = "bench-user"


class Preloaded:
    """The real model, except for texts whose vectors were made beforehand."""

    def __init__(self, model: Any, vectors: dict[str, npt.NDArray[np.float32]]) -> None:
        self.model = model
        self.vectors = vectors

    @property
    def model_id(self) -> str:
        return str(self.model.model_id)

    @property
    def dimensions(self) -> int:
        return int(self.model.dimensions)

    def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if all(text in self.vectors for text in texts):
            return np.stack([self.vectors[text] for text in texts])
        return np.asarray(self.model.embed_batch(texts), dtype=np.float32)


def synthetic(base: npt.NDArray[np.float32], count: int, seed: int = 16) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(base), count), rng.integers(0, len(base), count)
    mixed = base[a] + 0.5 * base[b] + 0.05 * rng.standard_normal((count, base.shape[1]))
    return (mixed / np.linalg.norm(mixed, axis=1, keepdims=True)).astype(np.float32)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def timed_searches(m: Memory, asked: list[str], mode: str, tag: str) -> list[float]:
    spent = []
    for q in asked:
        begin = time.perf_counter()
        m.search(f"{q} ({tag})", user_id=USER, mode=mode)  # type: ignore[arg-type]
        spent.append((time.perf_counter() - begin) * 1000)
    return spent


def stats(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 2), "p95": round(pct(values, 0.95), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--base", type=int, default=2_000)
    parser.add_argument("--threshold", type=int, default=20_000, help="ann_threshold")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory() as home:
        model = create_embedder("local", Settings.load(None, home=home))
        base = np.asarray(model.embed_batch(facts(args.base, seed=3)), dtype=np.float32)
        texts = facts(args.memories)
        embedder = Preloaded(model, dict(zip(texts, synthetic(base, len(texts)), strict=True)))
        asked = questions(args.queries)
        with Memory(home, embedder=embedder, ann_threshold=args.threshold) as m:  # type: ignore[arg-type]
            begin = time.perf_counter()
            m.add_many([{"messages": t, "user_id": USER} for t in texts])
            load_s = time.perf_counter() - begin
            embedder.vectors.clear()

            # Cold start: the scope decrypted up to the first answer (an exact scan, the graph
            # being built in the background), then until the graph is in use.
            m._cache.drop()
            begin = time.perf_counter()
            m.search("first question after a cold start", user_id=USER, mode="vector")
            cold_s = time.perf_counter() - begin
            (index,) = m._cache._entries.values()
            deadline = time.monotonic() + 3600
            while index.graph is None and time.monotonic() < deadline:
                time.sleep(0.05)  # a benchmark's wait, not a test's synchronisation
            graph_ready_s = time.perf_counter() - begin
            assert index.graph is not None, "the scope was not searched through the graph"

            # Restart: the graph just built is saved sealed; a cold cache loads it from there.
            while m.engine.cache.stats()["saved"] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            m._cache.drop()
            begin = time.perf_counter()
            m.search("first question after a restart", user_id=USER, mode="vector")
            (index,) = m._cache._entries.values()
            while index.graph is None and time.monotonic() < deadline:
                time.sleep(0.05)
            sealed_ready_s = time.perf_counter() - begin
            counts = m.engine.cache.stats()
            assert counts["loaded"] == 1, f"the sealed graph was not loaded: {counts}"
            graph_file_mb = sum(f.stat().st_size for f in Path(home, "ann").iterdir()) / 2**20

            timed_searches(m, asked[:20], "hybrid", "warm up")
            graph_ms = {
                mode: timed_searches(m, asked, mode, "graph") for mode in ("vector", "hybrid")
            }
            index.ann_threshold = 0  # the exact scan, as before issue 16
            exact_ms = {
                mode: timed_searches(m, asked, mode, "exact") for mode in ("vector", "hybrid")
            }

            recall: dict[int, list[float]] = {10: [], 100: []}
            for q in asked:
                vector = np.asarray(model.embed_batch([q])[0], dtype=np.float32)
                for limit in recall:
                    kwargs: dict[str, Any] = {"now": time.time(), "owners": (None,) * 3}
                    index.ann_threshold = 0
                    exact = [i for i, _ in index.search(vector, limit, allowed=None, **kwargs)]
                    index.ann_threshold = m.settings.ann_threshold
                    found = [i for i, _ in index.search(vector, limit, allowed=None, **kwargs)]
                    recall[limit].append(len(set(found[:10]) & set(exact[:10])) / 10)
            graph_mb = index.graph.nbytes / 2**20
            matrix_mb = index.matrix[: index.size].nbytes / 2**20

    result = {
        "benchmark": "ann-large-scope",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "arch": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "memories": args.memories,
        "queries": args.queries,
        "ann_threshold": m.settings.ann_threshold,
        "vectors": f"model embeds {args.base} facts; each memory mixes two (a + 0.5 b + 0.05 noise)",
        "load_seconds": round(load_s, 1),
        "cold_start_to_first_answer_s": round(cold_s, 2),
        "cold_start_to_graph_in_use_s": round(graph_ready_s, 2),
        "restart_to_sealed_graph_in_use_s": round(sealed_ready_s, 2),
        "sealed_graph_file_mb": round(graph_file_mb, 1),
        "search_ms_graph": {mode: stats(v) for mode, v in graph_ms.items()},
        "search_ms_exact": {mode: stats(v) for mode, v in exact_ms.items()},
        "recall_at_10": {
            "limit_10": round(statistics.mean(recall[10]), 4),
            "limit_100_as_search_asks": round(statistics.mean(recall[100]), 4),
        },
        "graph_mb": round(graph_mb, 1),
        "float_matrix_mb": round(matrix_mb, 1),
        "rss_mb": round(rss_mb(), 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result, indent=2))
    out = args.out / f"{datetime.now(UTC):%Y-%m-%d}-ann"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"ann-{args.memories}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
