"""LoCoMo conversations as memories: shared by bench/locomo.py and the mem0 worker (no memvault)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "locomo"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (1, 5, 10, 20)  # recall@k is reported at these k
MODES = ("vector", "bm25", "hybrid")


def _sessions(conversation: dict) -> list[str]:
    """The conversation's session keys (``session_N``), in order."""
    return sorted(
        (
            k
            for k in conversation
            if k.startswith("session_")
            and k.split("_")[1].isdigit()
            and isinstance(conversation[k], list)
        ),
        key=lambda k: int(k.split("_")[1]),
    )


def session_date(conversation: dict, session: str) -> datetime:
    """When a session took place: its ``session_N_date_time`` ("1:56 pm on 8 May, 2023"), as
    UTC (the dataset gives no time zone)."""
    text = conversation[f"{session}_date_time"]
    return datetime.strptime(text, "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def turn_dates(conversation: dict) -> dict[str, datetime]:
    """Each turn's dia_id -> the date of its session."""
    return {
        turn["dia_id"].strip(): session_date(conversation, key)
        for key in _sessions(conversation)
        for turn in conversation[key]
    }


def turns(conversation: dict) -> list[tuple[str, str]]:
    """(dia_id, text) for every turn, in session order: ``"{speaker}: {text}"`` plus the caption."""
    out = []
    for key in _sessions(conversation):
        for turn in conversation[key]:
            text = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [image: {turn['blip_caption']}]"
            out.append((turn["dia_id"].strip(), text))
    return out
