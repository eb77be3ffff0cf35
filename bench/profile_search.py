"""Where the time of a search goes, by pyinstrument: the profile the search path was tuned from.

Stores N synthetic memories in one user's scope (encryption on, local model), then profiles
distinct hybrid searches twice: once whole (the query embedding dominates) and once with the
query embeddings already cached (what retrieval costs on top of the model). Prints and saves
``bench/results/profile-search.txt``.

    .venv/bin/python bench/profile_search.py [--memories 10000] [--queries 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pyinstrument import Profiler

from corpus import facts, questions
from memvault import Memory

HERE = Path(__file__).resolve().parent


def profiled(memory: Memory, asked: list[str], title: str) -> str:
    profiler = Profiler(interval=0.0005)
    begin = time.perf_counter()
    cpu = time.process_time()
    profiler.start()
    for q in asked:
        memory.search(q, user_id="bench-user")
    profiler.stop()
    wall = (time.perf_counter() - begin) / len(asked) * 1000
    cpu_ms = (time.process_time() - cpu) / len(asked) * 1000
    header = f"## {title}: {wall:.2f} ms wall, {cpu_ms:.2f} ms CPU per search (profiler on)\n"
    return header + profiler.output_text(unicode=False, color=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    asked = questions(args.queries, seed=99)
    with tempfile.TemporaryDirectory() as home, Memory(home, embedder="local") as memory:
        memory.add_many([{"messages": t, "user_id": "bench-user"} for t in facts(args.memories)])
        memory.search("warm up", user_id="bench-user")
        whole = profiled(memory, asked, "distinct queries")
        cached = profiled(memory, asked, "the same queries again (embeddings cached)")
    text = f"# Search profile, {args.memories:,} memories in one scope\n\n{whole}\n{cached}"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile-search.txt").write_text(text)


if __name__ == "__main__":
    main()
