"""One large scope searched through the HNSW path (issue 16), in process, phase by phase.

    .venv/bin/python bench/ann.py --memories 1000000 --home /tmp/ann-1m [--queries 200]

Phases, each but ``load`` in a new process (so that its RSS and cold start are its own):

1. ``load``: N memories in one user's scope through ``Memory.add_many`` (the library's bulk path:
   one transaction per batch), skipped when ``--home`` already holds them. Vectors are not
   computed by the model (N model calls would take hours): the model embeds ``--base`` real
   facts once, and each memory's vector is a normalised mix of two of them plus a little noise
   (``normalise(a + 0.5 b + 0.05 g)``, seeded), so the scope lies where sentence embeddings do;
   the texts are real sentences (``corpus.facts``), found by keyword search too. The memory ids
   are saved beside the home so that the exact top 10 can be computed from the same vectors.
2. ``build``: a new process opens the home, answers a first search (the exact scan of the
   decrypted scope) and waits until the graph, built in the background, is in use and saved
   sealed.
3. ``serve``: a new process opens the home, times the cold start to the first answer (model load
   excluded and reported apart), waits until the sealed graph is in use, then times searches
   end to end in ``Memory.search`` (vector and hybrid, every query distinct, the query embedding
   included), recall@10 of the graph path against the exact top 10 of the same query vectors
   (computed here from the generated vectors), the index's bytes and the process RSS.
   (The exact scan's own latency is not timed: a scope on the graph path keeps no float matrix;
   ``bench/results/2026-12-04-ann`` has it at 100,000.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from corpus import facts, pct, questions
from memvault import Memory
from memvault.config import Settings
from memvault.embedding import create_embedder
from memvault.retrieval.vector_index import Rescore, ScopeIndex

HERE = Path(__file__).resolve().parent
USER = "bench-user"
CHUNK = 50_000


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
    out = np.empty((count, base.shape[1]), dtype=np.float32)
    for start in range(0, count, CHUNK):  # in chunks: the float64 temporaries stay small
        part = slice(start, start + CHUNK)
        noise = rng.standard_normal((len(a[part]), base.shape[1]))
        mixed = base[a[part]] + 0.5 * base[b[part]] + 0.05 * noise
        out[part] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    return out


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def stats(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 2), "p95": round(pct(values, 0.95), 2)}


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def base_vectors(model: Any, args: argparse.Namespace) -> npt.NDArray[np.float32]:
    return np.asarray(model.embed_batch(facts(args.base, seed=3)), dtype=np.float32)


def load(args: argparse.Namespace) -> dict[str, Any]:
    home = args.home
    model = create_embedder("local", Settings.load(None, home=home))
    vectors = synthetic(base_vectors(model, args), args.memories)
    texts = facts(args.memories)
    ids: list[str] = []
    begin = time.perf_counter()
    # ann_threshold 0 while loading: no graph is built for a scope that is still growing.
    with Memory(home, embedder=Preloaded(model, {}), ann_threshold=0) as m:  # type: ignore[arg-type]
        embedder: Preloaded = m._embedder  # type: ignore[assignment]
        for start in range(0, args.memories, CHUNK):
            part = texts[start : start + CHUNK]
            embedder.vectors = dict(zip(part, vectors[start : start + CHUNK], strict=True))
            found = m.add_many([{"messages": t, "user_id": USER} for t in part])
            ids.extend(r["id"] for r in found["results"])
            log(f"loaded {len(ids)} in {time.perf_counter() - begin:.0f} s")
    load_s = time.perf_counter() - begin
    (home / "bench-ids.json").write_text(json.dumps(ids))
    return {"load_seconds": round(load_s, 1), "load_average_after_load": os.getloadavg()}


def build(args: argparse.Namespace) -> dict[str, Any]:
    begin = time.perf_counter()
    with Memory(args.home, ann_threshold=args.threshold) as m:
        opened_s = time.perf_counter() - begin
        m.search("first question", user_id=USER, mode="vector")
        first_s = time.perf_counter() - begin
        (index,) = m._cache._entries.values()
        while index.graph is None or m.engine.cache.stats()["saved"] == 0:
            time.sleep(0.2)  # a benchmark's wait, not a test's synchronisation
        return {
            "build_open_s": round(opened_s, 2),
            "build_first_answer_s": round(first_s, 2),
            "build_graph_saved_s": round(time.perf_counter() - begin, 1),
            "build_counts": m.engine.cache.stats(),
            "build_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


def timed_searches(m: Memory, asked: list[str], mode: str, tag: str) -> list[float]:
    spent = []
    for q in asked:
        begin = time.perf_counter()
        m.search(f"{q} ({tag})", user_id=USER, mode=mode)  # type: ignore[arg-type]
        spent.append((time.perf_counter() - begin) * 1000)
    return spent


def serve(args: argparse.Namespace) -> dict[str, Any]:
    begin = time.perf_counter()
    model = create_embedder("local", Settings.load(None, home=args.home))
    model.embed_batch(["warm the model up"])
    model_s = time.perf_counter() - begin
    begin = time.perf_counter()
    m = Memory(args.home, embedder=model, ann_threshold=args.threshold)
    m.search("first question after a restart", user_id=USER, mode="hybrid")
    cold_s = time.perf_counter() - begin
    rss_cold = rss_mb()
    (index,) = m._cache._entries.values()
    while index.graph is None:
        time.sleep(0.05)  # a benchmark's wait, not a test's synchronisation
    graph_s = time.perf_counter() - begin
    counts = m.engine.cache.stats()

    asked = questions(args.queries)
    timed_searches(m, asked[:20], "hybrid", "warm up")
    # A tag per mode: the same text twice would hit the query embedding cache the second time.
    graph_ms = {
        mode: timed_searches(m, asked, mode, f"{mode} run") for mode in ("vector", "hybrid")
    }
    # The same hybrid texts again: the query embedding comes from the cache, so this is the
    # search without the model (how the 2026-12-04 run timed its hybrid mode, unknowingly).
    graph_ms["hybrid_embedding_cached"] = timed_searches(m, asked, "hybrid", "hybrid run")

    rss_searching = rss_mb()  # before the recall check below holds every generated vector
    max_rss_searching = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The exact top 10 from the vectors that were stored (regenerated: same seed), by id.
    stored = synthetic(base_vectors(model, args), args.memories)
    ids = np.array(json.loads((args.home / "bench-ids.json").read_text()))
    recall: dict[int, list[float]] = {10: [], 100: []}
    scope_id = next(iter(m._cache._entries))
    searcher = m._get_searcher()
    for q in asked:
        vector = np.asarray(model.embed_batch([q])[0], dtype=np.float32)
        exact = set(ids[np.argsort(-(stored @ vector))[:10]])
        for limit in recall:
            found = m._cache.read(
                scope_id,
                index.version,
                lambda: index,
                partial(graph_search, vector, limit),
            )
            if isinstance(found, Rescore):  # the float matrix dropped: vectors from the store
                found = found.finish(partial(searcher._vectors_of, scope_id))
            recall[limit].append(len({i for i, _ in found[:10]} & exact) / 10)
    del stored
    result = {
        "model_load_s": round(model_s, 2),
        "cold_start_to_first_answer_s": round(cold_s, 2),
        "cold_start_to_graph_in_use_s": round(graph_s, 2),
        "serve_counts": counts,
        "search_ms_graph": {mode: stats(v) for mode, v in graph_ms.items()},
        "recall_at_10": {
            "limit_10": round(statistics.mean(recall[10]), 4),
            "limit_100_as_search_asks": round(statistics.mean(recall[100]), 4),
        },
        "index_mb": {k: round(v / 2**20, 1) for k, v in index.memory().items()},
        "rss_mb_after_first_answer": round(rss_cold, 1),
        "rss_mb_after_searches": round(rss_searching, 1),
        "max_rss_mb_before_recall_check": round(max_rss_searching, 1),
        "sealed_graph_file_mb": round(
            sum(f.stat().st_size for f in (args.home / "ann").iterdir()) / 2**20, 1
        ),
    }
    m.close()
    return result


def graph_search(
    vector: npt.NDArray[np.float32], limit: int, index: ScopeIndex
) -> list[tuple[str, float]] | Rescore:
    return index.search(vector, limit, now=time.time(), owners=(None,) * 3, allowed=None)


PHASES = {"load": load, "build": build, "serve": serve}


def run_phase(args: argparse.Namespace, phase: str) -> dict[str, Any]:
    """``phase`` in a new process; its result."""
    out = args.home / f"bench-{phase}.json"
    command = [sys.executable, __file__, "--phase", phase, "--home", str(args.home)]
    command += ["--memories", str(args.memories), "--queries", str(args.queries)]
    command += ["--base", str(args.base), "--threshold", str(args.threshold)]
    subprocess.run(command, check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--base", type=int, default=2_000)
    parser.add_argument("--threshold", type=int, default=20_000, help="ann_threshold")
    parser.add_argument("--home", type=Path, help="kept between runs (default: a temporary one)")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.phase is not None:
        result = PHASES[args.phase](args)
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]
        (args.home / f"bench-{args.phase}.json").write_text(json.dumps(result, indent=2))
        return

    with tempfile.TemporaryDirectory() as scratch:
        args.home = args.home or Path(scratch)
        args.home.mkdir(parents=True, exist_ok=True)
        load_before = os.getloadavg()
        result: dict[str, Any] = {
            "benchmark": "ann-large-scope",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "memories": args.memories,
            "queries": args.queries,
            "ann_threshold": args.threshold,
            "vectors": f"model embeds {args.base} facts; each memory mixes two"
            " (a + 0.5 b + 0.05 noise)",
        }
        for phase in ("load", "build", "serve"):
            done = args.home / f"bench-{phase}.json"
            if phase == "load" and done.exists():
                log("already loaded")
            elif (
                phase == "build"
                and (args.home / "ann").is_dir()
                and any((args.home / "ann").iterdir())
            ):
                log("graph already saved")
            else:
                log(f"phase {phase}")
                run_phase(args, phase)
            if done.exists():
                result[phase] = json.loads(done.read_text())
        result["machine"] = {
            "arch": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
    print(json.dumps(result, indent=2))
    out = args.out / f"{datetime.now(UTC):%Y-%m-%d}-ann"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"ann-{args.memories}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
