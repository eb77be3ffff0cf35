"""Entity links on LoCoMo: what extraction finds, what a link look-up costs, and how much of the
evidence a search misses the links would reach.

Two parts, with the hash embedder (the figures measured here do not depend on the model):

1. Cost, on one scope holding every dev conversation's turns (a LoCoMo-sized user: 2,760
   memories with the five conversations): extraction per memory, ``linked_by_entities`` with
   the first 10 BM25 hits of each question as seeds, ``related`` and ``entities``.
2. Reach, one scope per conversation (as bench/locomo.py stores them): per question category,
   recall@10 of BM25 alone, and of its top 10 plus the best ``--links`` linked memories. This
   says how much an expansion by entities *could* add before any fusion (the other side of
   issue #18 fuses it); it is not a ranking.

    PYTHONPATH=src python bench/entities.py --out bench/results/<date>-entities/entities.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from locomo_data import CATEGORIES, DATA, turns
from memvault import HashEmbedder, Memory
from memvault.core.entities import linked_by_entities
from memvault.retrieval.entities import extract
from memvault.validation import Scope


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def timed_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values), 3),
        "p95_ms": round(percentile(values, 0.95), 3),
        "mean_ms": round(statistics.fmean(values), 3),
        "calls": len(values),
    }


def load() -> list[dict[str, Any]]:
    files = sorted(DATA.glob("conv-*.json"))
    if not files:
        sys.exit(f"no LoCoMo conversations in {DATA}")
    out = []
    for path in files:
        data = json.loads(path.read_text())
        out.append({"name": path.stem, "conversation": data.get("conversation", data), **data})
    return out


def cost(conversations: list[dict[str, Any]], links: int) -> dict[str, Any]:
    items = [(c["name"], d, t) for c in conversations for d, t in turns(c["conversation"])]
    texts = [t for _, _, t in items]
    begin = time.perf_counter()
    found = [extract(text) for text in texts]
    extract_s = time.perf_counter() - begin
    counts = [len(f) for f in found]
    distinct = {e.key for f in found for e in f}
    with tempfile.TemporaryDirectory() as home, Memory(home, embedder=HashEmbedder()) as memory:
        begin = time.perf_counter()
        memory.add_many(
            [{"messages": t, "user_id": "all", "metadata": {"dia_id": d}} for _, d, t in items]
        )
        add_s = time.perf_counter() - begin
        engine, scope = memory.engine, Scope(user_id="all")
        link_ms, related_ms, seeds_sizes, reached = [], [], [], []
        questions = [qa["question"] for c in conversations for qa in c["qa"]][:400]
        for question in questions:
            hits = memory.search(question, user_id="all", top_k=10, mode="bm25")["results"]
            seeds = [h["id"] for h in hits]
            seeds_sizes.append(len(seeds))
            begin = time.perf_counter()
            found_links = linked_by_entities(engine, scope, seeds, links)
            link_ms.append((time.perf_counter() - begin) * 1000)
            reached.append(len(found_links))
        ids = [m["id"] for m in memory.get_all(user_id="all", top_k=3000)["results"]]
        for memory_id in ids[:: max(1, len(ids) // 200)]:
            begin = time.perf_counter()
            memory.related(memory_id)
            related_ms.append((time.perf_counter() - begin) * 1000)
        entity_ms = []
        for _ in range(5):
            begin = time.perf_counter()
            listed = memory.entities(user_id="all", limit=100)["results"]
            entity_ms.append((time.perf_counter() - begin) * 1000)
        return {
            "memories": len(items),
            "extraction": {
                "ms_per_memory": round(extract_s * 1000 / len(texts), 4),
                "entities_per_memory": round(statistics.fmean(counts), 2),
                "memories_with_entities": round(sum(1 for c in counts if c) / len(counts), 3),
                "distinct_entities": len(distinct),
            },
            "add_many_seconds": round(add_s, 2),
            "linked_by_entities": {
                **timed_ms(link_ms),
                "seeds": 10,
                "limit": links,
                "mean_links": round(statistics.fmean(reached), 2),
            },
            "related": timed_ms(related_ms),
            "entities_list": timed_ms(entity_ms),
            "top_entities": listed[:15],
        }


def reach(conversations: list[dict[str, Any]], links: int) -> dict[str, Any]:
    base: dict[str, list[float]] = defaultdict(list)
    expanded: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as home, Memory(home, embedder=HashEmbedder()) as memory:
        engine = memory.engine
        for conv in conversations:
            scope = conv["name"]
            items = turns(conv["conversation"])
            memory.add_many(
                [{"messages": t, "user_id": scope, "metadata": {"dia_id": d}} for d, t in items]
            )
            dia = {
                m["id"]: m["metadata"]["dia_id"]
                for m in memory.get_all(user_id=scope, top_k=3000)["results"]
            }
            for qa in conv["qa"]:
                category = CATEGORIES.get(qa.get("category"))
                if category is None or not qa.get("evidence"):
                    continue
                evidence = {e.strip() for e in qa["evidence"]}
                hits = memory.search(qa["question"], user_id=scope, top_k=10, mode="bm25")
                top = [h["id"] for h in hits["results"]]
                linked = [
                    link.memory_id
                    for link in linked_by_entities(engine, Scope(user_id=scope), top, links)
                ]
                for name, ids in ((category, top), ("all", top)):
                    base[name].append(len(evidence & {dia[i] for i in ids}) / len(evidence))
                for name in (category, "all"):
                    got = {dia[i] for i in top + linked}
                    expanded[name].append(len(evidence & got) / len(evidence))
    return {
        name: {
            "questions": len(base[name]),
            "bm25_recall@10": round(statistics.fmean(base[name]), 3),
            f"bm25_top10_plus_{links}_links": round(statistics.fmean(expanded[name]), 3),
        }
        for name in sorted(base)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    conversations = load()
    result = {
        "benchmark": "entities",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": os.getloadavg(),
        "conversations": [c["name"] for c in conversations],
        "cost_one_scope": cost(conversations, args.links),
        "reach_per_conversation": reach(conversations, args.links),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
