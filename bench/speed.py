"""In-process speed, as ratios to the embedder's own cost measured in the same run.

- bulk load: ``add_many`` rate against the embedder's raw batch rate on the same texts;
- search: p50/p95 of ``search`` (hybrid, encryption on) with N memories in one scope, against the
  p50 of one raw query embedding. Every query is distinct, so the query cache never helps.

    .venv/bin/python bench/speed.py [--memories 10000] [--queries 300] [--embedder local]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from corpus import facts, pct, questions
from memvault import Memory

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--embedder", default="local")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    texts = facts(args.memories)
    asked = questions(args.queries)
    with tempfile.TemporaryDirectory() as home, Memory(home, embedder=args.embedder) as m:
        embedder = m.embedder
        embedder.embed_batch(texts[:64])  # warm up
        begin = time.perf_counter()
        for start in range(0, len(texts), 256):
            embedder.embed_batch(texts[start : start + 256])
        raw_rate = len(texts) / (time.perf_counter() - begin)

        begin = time.perf_counter()
        m.add_many([{"messages": t, "user_id": "bench-user"} for t in texts])
        load_rate = len(texts) / (time.perf_counter() - begin)

        embed_ms = []
        for q in asked:
            begin = time.perf_counter()
            embedder.embed_batch([q + " (raw)"])
            embed_ms.append((time.perf_counter() - begin) * 1000)

        m.search("warm up the index", user_id="bench-user")
        search_ms: dict[str, list[float]] = {"hybrid": [], "vector": [], "bm25": []}
        for mode in search_ms:
            for q in asked:
                begin = time.perf_counter()
                m.search(f"{q} ({mode})", user_id="bench-user", mode=mode)  # type: ignore[arg-type]
                search_ms[mode].append((time.perf_counter() - begin) * 1000)
        filtered_ms = []
        for q in asked[:100]:
            begin = time.perf_counter()
            m.search(q + " (filtered)", user_id="bench-user", filters={"memory_type": "semantic"})
            filtered_ms.append((time.perf_counter() - begin) * 1000)
        db_bytes = sum(p.stat().st_size for p in Path(home).iterdir())

    embed_p50 = statistics.median(embed_ms)
    hybrid = search_ms["hybrid"]
    result = {
        "benchmark": "in-process-speed",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"arch": platform.machine(), "python": platform.python_version()},
        "embedder": args.embedder,
        "memories": args.memories,
        "queries": args.queries,
        "bulk_load": {
            "memories_per_second": round(load_rate, 1),
            "raw_embed_per_second": round(raw_rate, 1),
            "ratio": round(load_rate / raw_rate, 3),
            "target_ratio": 0.75,
        },
        "raw_query_embedding_ms": {
            "p50": round(embed_p50, 2),
            "p95": round(pct(embed_ms, 0.95), 2),
        },
        "search_ms": {
            mode: {"p50": round(statistics.median(v), 2), "p95": round(pct(v, 0.95), 2)}
            for mode, v in search_ms.items()
        }
        | {
            "hybrid+filter": {
                "p50": round(statistics.median(filtered_ms), 2),
                "p95": round(pct(filtered_ms, 0.95), 2),
            }
        },
        "search_to_embedding": {
            "p50_ratio": round(statistics.median(hybrid) / embed_p50, 2),
            "p95_ratio": round(pct(hybrid, 0.95) / embed_p50, 2),
            "targets": {"p50": 2.0, "p95": 4.0},
        },
        "disk_bytes": db_bytes,
    }
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"speed-{args.embedder}-{args.memories}.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
