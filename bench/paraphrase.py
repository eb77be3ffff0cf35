"""Retrieval of paraphrased questions: recall@1 and recall@5 per search mode, and the scores shown.

LoCoMo rewards word overlap; real questions are often paraphrases ("where does alice live?" for
"I moved to Lisbon"). ``bench/data/paraphrase.json`` (written for memvault, #18) holds 50 memories
about four people, whose names appear in many facts, plus a few conversational replies ("Nice!"),
and 47 questions, each paraphrasing one memory with few shared words and naming it as its answer.
Every memory is stored in one user's scope, in the file's order, with encryption on and the
settings a new user gets (``--embedder``, ``--fusion``, ``--vector-weight``, ``--context-window``
change them);
each question is searched in each mode with top_k=5.

    PYTHONPATH=src .venv/bin/python bench/paraphrase.py [--embedder local] [--out DIR]

Besides recall it reports the shown ``score`` (the calibrated relevance, #18) of the right answer
and of the best wrong one, and the two examples of the issue with their first three hits and the
rank of their answer (among the first 50). Keyword mode ties many memories (equal BM25 scores are
ordered by memory id, which is random), so its figures move by a few hundredths between runs. The
results go to bench/results/<date>-paraphrase/ (``paraphrase-<embedder>[-tag].{json,md}``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memvault import Memory
from memvault.retrieval import fusion
from techniques import describe, parse

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "paraphrase.json"
MODES = ("vector", "bm25", "hybrid")
KS = (1, 5)
EXAMPLES = ("where does alice live?", "what should I avoid cooking for her?")


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = json.loads(DATA.read_text())
    specs = [*filter(None, args.techniques.split(",")), *args.technique]
    variants = dict(parse(spec) for spec in specs)
    modes = [*MODES, *variants]  # a variant: a hybrid search with those techniques
    settings: dict[str, Any] = {"embedder": args.embedder}
    if args.vector_weight is not None:
        settings["vector_weight"] = args.vector_weight
    if args.fusion is not None:
        settings["fusion"] = args.fusion

    if args.context_window is not None:
        settings["context_window"] = args.context_window
    hits_at: dict[str, dict[int, list[float]]] = {m: {k: [] for k in KS} for m in modes}
    right_scores: dict[str, list[float]] = {m: [] for m in modes}
    wrong_scores: dict[str, list[float]] = {m: [] for m in modes}
    examples: dict[str, dict[str, dict[str, Any]]] = {}
    misses: dict[str, list[dict[str, str]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as home, Memory(home, **settings) as memory:
        added = memory.add_many(
            [
                {"messages": m["text"], "user_id": "me", "metadata": {"fact": m["id"]}}
                for m in data["memories"]
            ]
        )
        assert len(added["results"]) == len(data["memories"]), added
        searcher = memory._get_searcher()
        configured = searcher.techniques
        for qa in data["questions"]:
            for mode in modes:
                searcher.techniques = variants.get(mode, configured)
                kind = mode if mode in MODES else "hybrid"
                found = memory.search(qa["question"], user_id="me", top_k=max(KS), mode=kind)
                results = found["results"]
                ids = [hit["metadata"]["fact"] for hit in results]
                for k in KS:
                    hits_at[mode][k].append(1.0 if qa["answer"] in ids[:k] else 0.0)
                for hit in results:
                    if hit["metadata"]["fact"] == qa["answer"]:
                        right_scores[mode].append(hit["score"])
                        break
                wrong = [h["score"] for h in results if h["metadata"]["fact"] != qa["answer"]]
                if wrong:
                    wrong_scores[mode].append(wrong[0])
                if ids[:1] != [qa["answer"]]:
                    misses[mode].append(
                        {"question": qa["question"], "answer": qa["answer"], "first": ids[0]}
                    )
                if qa["question"] in EXAMPLES:
                    wide = memory.search(qa["question"], user_id="me", top_k=50, mode=kind)
                    order = [hit["metadata"]["fact"] for hit in wide["results"]]
                    rank = order.index(qa["answer"]) + 1 if qa["answer"] in order else None
                    examples.setdefault(qa["question"], {})[mode] = {
                        "answer_rank": rank,
                        "first": [(hit["memory"], round(hit["score"], 3)) for hit in results[:3]],
                    }
    return {
        "benchmark": "paraphrase-retrieval",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": settings
        | (
            {"keyword_half": fusion.KEYWORD_HALF, "spread_floor": fusion.SPREAD_FLOOR}
            if args.fusion == "adaptive"
            else {}
        ),
        "modes": modes,
        "techniques": {name: describe(t) for name, t in variants.items()},
        "memories": len(data["memories"]),
        "questions": len(data["questions"]),
        "recall": {
            m: {f"@{k}": round(statistics.mean(v), 4) for k, v in hits_at[m].items()} for m in modes
        },
        "score_of_right_answer_median": {
            m: round(statistics.median(v), 3) if v else None for m, v in right_scores.items()
        },
        "score_of_best_wrong_median": {
            m: round(statistics.median(v), 3) if v else None for m, v in wrong_scores.items()
        },
        "examples": examples,
        "misses_at_1": misses,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"# Paraphrase retrieval ({result['date']})",
        "",
        f"{result['memories']} memories in one scope, {result['questions']} questions, "
        f"settings {json.dumps(result['settings'])}.",
        "",
        *(f"- `{name}`: hybrid, {text}" for name, text in result.get("techniques", {}).items()),
        "",
        "| mode | recall@1 | recall@5 | median score, right answer | median score, best wrong |",
        "|---|---|---|---|---|",
    ]
    for mode in result.get("modes", MODES):
        recall = result["recall"][mode]
        lines.append(
            f"| {mode} | {recall['@1']:.3f} | {recall['@5']:.3f} | "
            f"{result['score_of_right_answer_median'][mode]} | "
            f"{result['score_of_best_wrong_median'][mode]} |"
        )
    lines += ["", "## The issue's examples (first three hits, shown score)", ""]
    for question, by_mode in result["examples"].items():
        lines.append(f"- **{question}**")
        for mode, found in by_mode.items():
            shown = "; ".join(f"{text!r} {score}" for text, score in found["first"])
            lines.append(f"  - {mode} (answer at rank {found['answer_rank']}): {shown}")
    return "\n".join(lines) + "\n"


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--embedder", default="local")
    parser.add_argument("--vector-weight", type=float, default=None)
    parser.add_argument("--context-window", type=int, default=None)
    # The constants of --fusion adaptive (memvault.retrieval.fusion), to measure other values.
    parser.add_argument("--keyword-half", type=float, default=fusion.KEYWORD_HALF)
    parser.add_argument("--spread-floor", type=float, default=fusion.SPREAD_FLOOR)
    parser.add_argument("--fusion", default=None, choices=["zscore", "rrf", "adaptive"])
    day = datetime.now(UTC).date().isoformat()
    parser.add_argument("--out", type=Path, default=HERE / "results" / f"{day}-paraphrase")
    parser.add_argument("--tag", default="")
    parser.add_argument(
        "--technique",
        action="append",
        default=[],
        metavar="SPEC",
        help="a hybrid variant with search techniques (bench/techniques.py); repeatable",
    )
    parser.add_argument("--techniques", default="", help="comma-separated technique presets")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = options(argv)
    fusion.KEYWORD_HALF, fusion.SPREAD_FLOOR = args.keyword_half, args.spread_floor
    if not DATA.exists():
        sys.exit(f"missing {DATA}")
    result = run(args)
    text = report(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"paraphrase-{args.embedder}{'-' + args.tag if args.tag else ''}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(text)


if __name__ == "__main__":
    main()
