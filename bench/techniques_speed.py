"""Search latency of the optional search techniques at N memories in one scope (#18).

N synthetic facts (bench/corpus.py) are stored in one user's scope, in write order (so every
memory has conversation neighbours), encryption on; then each query is searched once per
variant, the variants interleaved query by query so that a noisy machine weighs on all of them
alike. Every search text is distinct (the query cache never helps). Prints and saves p50/p95
per variant and its ratio to ``off``.

    PYTHONPATH=src .venv/bin/python bench/techniques_speed.py [--memories 10000] [--queries 300]
        [--techniques off,default,neighbours,feedback,diversity,all] [--embedder local]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from corpus import facts, pct, questions
from memvault import Memory
from techniques import describe, parse

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--embedder", default="local")
    parser.add_argument(
        "--techniques", default="off,default,neighbours,neighbours-wide,feedback,diversity,all"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    variants = dict(parse(spec) for spec in args.techniques.split(",") if spec)
    texts = facts(args.memories)
    asked = questions(args.queries)
    load_before = os.getloadavg()
    latency: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as home, Memory(home, embedder=args.embedder) as m:
        m.add_many([{"messages": t, "user_id": "bench-user"} for t in texts])
        searcher = m._get_searcher()
        m.search("warm up the index", user_id="bench-user")
        for number, question in enumerate(asked):
            for index, (name, techniques) in enumerate(variants.items()):
                searcher.techniques = techniques
                text = f"{question} ({number}.{index})"
                begin = time.perf_counter()
                m.search(text, user_id="bench-user", top_k=10)
                latency[name].append((time.perf_counter() - begin) * 1000)
    load_after = os.getloadavg()
    base = statistics.median(latency[next(iter(variants))])
    result = {
        "benchmark": "techniques-speed",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "embedder": args.embedder,
        "memories": args.memories,
        "queries": args.queries,
        "load_average": {"before": load_before, "after": load_after},
        "search_ms": {
            name: {
                "techniques": describe(variants[name]),
                "p50": round(statistics.median(values), 2),
                "p95": round(pct(values, 0.95), 2),
                "p50_ratio": round(statistics.median(values) / base, 3),
            }
            for name, values in latency.items()
        },
    }
    lines = [
        f"# Search latency with techniques, {args.memories} memories in one scope",
        "",
        f"{result['date']}, embedder `{args.embedder}`, {args.queries} queries per variant,"
        f" load average {load_before[0]:.1f} before, {load_after[0]:.1f} after.",
        "",
        "| variant | techniques | p50 ms | p95 ms | p50 / off |",
        "|---|---|---|---|---|",
    ]
    for name, row in result["search_ms"].items():
        lines.append(
            f"| {name} | {row['techniques']} | {row['p50']} | {row['p95']} | {row['p50_ratio']} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"techniques-speed-{args.embedder}{'-' + args.tag if args.tag else ''}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(text)


if __name__ == "__main__":
    main()
