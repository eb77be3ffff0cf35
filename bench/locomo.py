"""Retrieval quality on LoCoMo: recall@k of the evidence turns, per mode and per category.

Each turn of each conversation is stored as one memory ("{speaker}: {text}", plus the image
caption when there is one), scoped to its conversation; each question of categories 1-4 is searched
with top_k=20 and recall@k is the share of its evidence turns among the first k hits, averaged over
questions. Encryption is on, as in production.

    .venv/bin/python bench/locomo.py [--embedder local|hash] [--context-window 2] [--fusion zscore]

Recency decay and reinforcement (off by default in memvault): ``--session-dates`` stores each
turn with its session's date as ``created_at``, ``--memory-type episodic`` types the turns, and
``--half-life episodic=30`` (repeatable), ``--recency-weight``, ``--reinforcement-weight`` set
the ranking adjustments; a conversation's questions are searched "now" = its last session's
date (the ranking clock), so ages are the conversation's own.

The data (CC BY-NC) is read from ../shared/datasets/locomo and never copied into the repo.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from corpus import pct, table_head
from locomo_data import CATEGORIES, DATA, KS, MODES, turn_dates, turns
from memvault import Memory
from memvault.retrieval import fusion
from memvault.validation import MEMORY_TYPES
from techniques import describe, parse

HERE = Path(__file__).resolve().parent


class PlainCipher:
    """What storing in the clear costs: ScopeCipher's interface with no cryptography (fields
    kept as they are, words as themselves in the full-text index). memvault has no setting that
    turns encryption off; this class exists only so the benchmark can measure what it costs."""

    def __init__(self, scope_id: str, data_key: bytes) -> None:
        self.scope_id = scope_id
        self.data_key = data_key  # the audit log derives its chain key from a system scope's

    def seal(self, row_id: str, field_name: str, plaintext: bytes) -> bytes:
        return plaintext

    def open(self, row_id: str, field_name: str, box: bytes) -> bytes:
        return bytes(box)

    def token(self, word: str) -> str:
        return word

    def text_hash(self, normalized_text: str) -> str:
        return hashlib.sha256(normalized_text.encode()).hexdigest()


@contextmanager
def encryption(enabled: bool) -> Iterator[None]:
    if enabled:
        yield
        return
    import memvault.security.keyring as keyring

    original = keyring.ScopeCipher
    keyring.ScopeCipher = PlainCipher  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        keyring.ScopeCipher = original  # type: ignore[misc]


def half_lives(pairs: list[str]) -> dict[str, float]:
    """``["episodic=30", ...]`` -> ``{"episodic": 30.0}``."""
    found = {}
    for pair in pairs:
        memory_type, _, days = pair.partition("=")
        found[memory_type] = float(days)
    return found


def item(dia_id: str, text: str, scope: str, date: datetime, args: argparse.Namespace) -> dict:
    """One turn as an add_many item: typed, and dated by its session when asked."""
    add = {"messages": text, "user_id": scope, "metadata": {"dia_id": dia_id}}
    add["memory_type"] = args.memory_type
    if args.session_dates:
        add["created_at"] = date.isoformat()
    return add


def run(args: argparse.Namespace, *, encrypted: bool = True) -> dict:
    files = sorted(DATA.glob("conv-*.json"))
    if not files:
        sys.exit(f"no LoCoMo conversations in {DATA}")
    specs = [*filter(None, args.techniques.split(",")), *args.technique]
    variants = dict(parse(spec) for spec in specs)
    # With --technique, each variant is a hybrid search with those techniques (and the plain
    # modes are skipped unless --modes names them); its name is the row's name.
    plain = args.modes if args.modes is not None else ("" if specs else ",".join(MODES))
    modes = [m for m in MODES if m in plain.split(",")] + list(variants)
    recall: dict[str, dict[int, list[float]]] = {m: defaultdict(list) for m in modes}
    by_category: dict[str, dict[int, dict[int, list[float]]]] = {
        m: {k: defaultdict(list) for k in KS} for m in modes
    }
    ranked: dict[str, list[list[str]]] = {m: [] for m in modes}
    add_seconds = 0.0
    embed_seconds = 0.0
    stored = 0
    search_ms: dict[str, list[float]] = defaultdict(list)
    # The ranking clock: each conversation's questions are asked just after its last session.
    asked_at = [datetime.now(UTC)]
    with tempfile.TemporaryDirectory() as home, encryption(encrypted):
        memory = Memory(
            home,
            embedder=args.embedder,
            context_window=args.context_window,
            fusion=args.fusion,
            context_weight=args.context_weight,
            vector_weight=args.vector_weight,
            recency_half_life_days=half_lives(args.half_life),
            recency_weight=args.recency_weight,
            reinforcement_weight=args.reinforcement_weight,
            ranking_clock=lambda: asked_at[0],
        )
        with memory:
            searcher = memory._get_searcher()
            configured = searcher.techniques  # the plain modes search with the settings'
            for path in files:
                data = json.loads(path.read_text())
                conversation = data.get("conversation", data)
                scope = path.stem
                items = turns(conversation)
                texts = [text for _, text in items]
                begin = time.perf_counter()
                memory.embedder.embed_batch(texts)
                embed_seconds += time.perf_counter() - begin
                dates = turn_dates(conversation)
                asked_at[0] = max(dates.values())
                begin = time.perf_counter()
                memory.add_many([item(d, t, scope, dates[d], args) for d, t in items])
                add_seconds += time.perf_counter() - begin
                stored += len(items)
                for qa in data["qa"]:
                    category = qa.get("category")
                    if category not in CATEGORIES or not qa.get("evidence"):
                        continue
                    evidence = {e.strip() for e in qa["evidence"]}
                    for index, mode in enumerate(modes):
                        # A distinct query text per mode, so that no mode reuses another's
                        # cached query embedding and the timings compare.
                        query = qa["question"] + " " * index
                        searcher.techniques = variants.get(mode, configured)
                        begin = time.perf_counter()
                        hits = memory.search(
                            query,
                            user_id=scope,
                            top_k=max(KS),
                            mode=mode if mode in MODES else "hybrid",
                        )
                        search_ms[mode].append((time.perf_counter() - begin) * 1000)
                        found = [h["metadata"]["dia_id"] for h in hits["results"]]
                        ranked[mode].append(found)
                        for k in KS:
                            share = len(evidence.intersection(found[:k])) / len(evidence)
                            recall[mode][k].append(share)
                            by_category[mode][k][category].append(share)
        disk_bytes = sum(p.stat().st_size for p in Path(home).iterdir() if p.is_file())
    questions = len(recall[modes[0]][1])
    return {
        "benchmark": "locomo-retrieval",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": platform.machine(),
            "python": platform.python_version(),
            "node": platform.node(),
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "modes": modes,
        "techniques": {name: describe(t) for name, t in variants.items()},
        "encrypted": encrypted,
        "conversations": [p.stem for p in files],
        "memories": stored,
        "questions": questions,
        "recall": {
            m: {f"@{k}": round(statistics.mean(v), 4) for k, v in recall[m].items()} for m in modes
        },
        "recall_by_category": {
            m: {
                f"@{k}": {
                    CATEGORIES[c]: round(statistics.mean(v), 4)
                    for c, v in sorted(by_category[m][k].items())
                }
                for k in KS
            }
            for m in modes
        },
        "recall_at_10_by_category": {
            m: {
                CATEGORIES[c]: round(statistics.mean(v), 4)
                for c, v in sorted(by_category[m][10].items())
            }
            for m in modes
        },
        "add": {
            "seconds": round(add_seconds, 2),
            "memories_per_second": round(stored / add_seconds, 1),
            "raw_embed_per_second": round(stored / embed_seconds, 1),
            "ratio_to_raw_embedding": round(embed_seconds / add_seconds, 3),
        },
        "search_ms": {
            m: {"p50": round(statistics.median(v), 2), "p95": round(pct(v, 0.95), 2)}
            for m, v in search_ms.items()
        },
        "disk_bytes": disk_bytes,
        "ranked_dia_ids": ranked,
    }


def adjustments(settings: dict) -> str:
    """The ranking adjustments a run used, in words."""
    parts = []
    if settings.get("half_life"):
        parts.append(
            f"recency half-life {', '.join(settings['half_life'])} days"
            f" (weight {settings['recency_weight']})"
        )
    if settings.get("reinforcement_weight"):
        parts.append(f"reinforcement weight {settings['reinforcement_weight']}")
    dated = "turns dated by session" if settings.get("session_dates") else "turns dated at load"
    kind = settings.get("memory_type", "semantic")
    return f"{' and '.join(parts) or 'no decay, no reinforcement'}; {dated}, typed {kind}"


def markdown(result: dict) -> str:
    lines = [
        f"# LoCoMo retrieval, {result['date']}",
        "",
        f"{result['memories']} memories, {result['questions']} questions (categories 1-4), "
        f"embedder `{result['settings']['embedder']}`, encryption on.",
        "",
        f"ranking: {adjustments(result['settings'])}.",
        "",
        *(f"- `{name}`: hybrid, {text}" for name, text in result["techniques"].items()),
        "",
        *table_head("mode", *(f"recall@{k}" for k in KS), "search p50 ms", "p95 ms"),
    ]
    for mode in result["modes"]:
        speed = result["search_ms"][mode]
        lines.append(
            f"| {mode} | "
            + " | ".join(f"{result['recall'][mode][f'@{k}']:.3f}" for k in KS)
            + f" | {speed['p50']} | {speed['p95']} |"
        )
    lines += [
        "",
        "recall@10 by category:",
        "",
        *table_head("mode", *CATEGORIES.values()),
    ]
    for mode in result["modes"]:
        row = result["recall_at_10_by_category"][mode]
        lines.append(
            f"| {mode} | " + " | ".join(f"{row.get(c, 0):.3f}" for c in CATEGORIES.values()) + " |"
        )
    add = result["add"]
    lines += [
        "",
        f"bulk load: {add['memories_per_second']} memories/s; raw embedding "
        f"{add['raw_embed_per_second']}/s on the same texts (ratio {add['ratio_to_raw_embedding']})",
        "search p50/p95 ms: "
        + ", ".join(f"{m} {v['p50']}/{v['p95']}" for m, v in result["search_ms"].items()),
    ]
    return "\n".join(lines) + "\n"


def options(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options (bench/suite.py runs with the defaults)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--embedder", default="local")
    parser.add_argument("--context-window", type=int, default=2)
    parser.add_argument("--context-weight", type=float, default=0.5)
    parser.add_argument("--vector-weight", type=float, default=0.5)
    parser.add_argument("--fusion", default="zscore", choices=["zscore", "rrf", "adaptive"])
    parser.add_argument(
        "--session-dates", action="store_true", help="store each turn's session date as created_at"
    )
    parser.add_argument("--memory-type", default="semantic", choices=MEMORY_TYPES)
    parser.add_argument(
        "--half-life",
        action="append",
        default=[],
        metavar="TYPE=DAYS",
        help="recency half-life of a memory type (repeatable); none: no decay",
    )
    parser.add_argument("--recency-weight", type=float, default=1.0)
    # The constants of --fusion adaptive (memvault.retrieval.fusion), to measure other values.
    parser.add_argument("--keyword-half", type=float, default=fusion.KEYWORD_HALF)
    parser.add_argument("--spread-floor", type=float, default=fusion.SPREAD_FLOOR)
    parser.add_argument("--reinforcement-weight", type=float, default=0.0)
    parser.add_argument(
        "--technique",
        action="append",
        default=[],
        metavar="SPEC",
        help="a hybrid variant with search techniques (bench/techniques.py: a preset name or"
        " NAME:field=value,...); repeatable; each is one row of the tables",
    )
    parser.add_argument(
        "--techniques",
        default="",
        help="comma-separated presets, the same as one --technique each (e.g."
        " off,neighbours,feedback,diversity,default)",
    )
    parser.add_argument(
        "--modes",
        default=None,
        help="plain modes to run too (comma-separated; default: all three without --technique,"
        " none with it)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--tag", default="")
    return parser.parse_args(argv)


def main() -> None:
    args = options()

    fusion.KEYWORD_HALF, fusion.SPREAD_FLOOR = args.keyword_half, args.spread_floor
    result = run(args)
    text = markdown(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"locomo-{args.embedder}{'-' + args.tag if args.tag else ''}"
    result.pop("ranked_dia_ids")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(text)


if __name__ == "__main__":
    main()
