"""LoCoMo conversations as memories: shared by bench/locomo.py and the mem0 worker (no memvault)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "locomo"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (1, 5, 10, 20)  # recall@k is reported at these k
MODES = ("vector", "bm25", "hybrid")


def turns(conversation: dict) -> list[tuple[str, str]]:
    """(dia_id, text) for every turn, in session order: ``"{speaker}: {text}"`` plus the caption."""
    sessions = sorted(
        (
            k
            for k in conversation
            if k.startswith("session_")
            and k.split("_")[1].isdigit()
            and isinstance(conversation[k], list)
        ),
        key=lambda k: int(k.split("_")[1]),
    )
    out = []
    for key in sessions:
        for turn in conversation[key]:
            text = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [image: {turn['blip_caption']}]"
            out.append((turn["dia_id"].strip(), text))
    return out
