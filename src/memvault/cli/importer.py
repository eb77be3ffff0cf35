"""``memvault import``: JSONL bulk load, every line checked before anything is stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from memvault.errors import InvalidInput
from memvault.memory import Memory

__all__ = ["import_jsonl", "read_items"]

_TEXT_ALIASES = ("memory", "text")
# Fields of `memvault user export` lines that add() takes (under another name for expires_at).
_EXPORT_FIELDS = {
    "memory": "messages",
    "user_id": "user_id",
    "agent_id": "agent_id",
    "run_id": "run_id",
    "metadata": "metadata",
    "memory_type": "memory_type",
    "expires_at": "expiration_date",
    "actor_id": "actor_id",
    "importance": "importance",
}


def read_items(path: Path) -> list[dict[str, Any]]:
    """Parse the file; an error names the line, never its content.

    Lines of ``memvault user export`` are understood: memories are added again (with new ids and
    times; their history is not replayed), header and history lines are skipped.
    """
    items = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"line {number} is not UTF-8 text") from None
            if not line.strip():
                continue
            item = _parse_line(line, number)
            if not isinstance(item, dict):
                raise InvalidInput(f"line {number} is not a JSON object")
            kind = item.get("type")
            if kind in ("export", "history"):
                continue  # the export's header and the history of deleted memories
            if kind == "memory":
                items.append(
                    {
                        new: item[old]
                        for old, new in _EXPORT_FIELDS.items()
                        if item.get(old) is not None
                    }
                )
                continue
            for alias in _TEXT_ALIASES:
                if alias in item:
                    if "messages" in item:
                        raise InvalidInput(f"line {number} has both messages and {alias}")
                    item["messages"] = item.pop(alias)
            items.append(item)
    return items


def _parse_line(line: str, number: int) -> Any:
    """One JSON value; a line too deep for the parser is refused like any other bad line (the
    library would refuse its metadata anyway: ``validation.MAX_METADATA_DEPTH``)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        raise InvalidInput(f"line {number} is not JSON") from None
    except RecursionError:
        raise InvalidInput(f"line {number} nests too deeply") from None


def import_jsonl(
    memory: Memory, path: Path, *, batch_size: int = 256, console: Console | None = None
) -> dict[str, int]:
    items = read_items(path)
    if console is None:
        result = memory.add_many(items, batch_size=batch_size)
    else:
        columns = (
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("importing", total=len(items))
            result = memory.add_many(
                items,
                batch_size=batch_size,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    events = [r["event"] for r in result["results"]]
    return {"lines": len(items), "added": events.count("ADD"), "duplicates": events.count("NONE")}
