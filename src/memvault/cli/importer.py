"""``memvault import``: bulk load from JSONL or a mem0 dump, every record checked before any is
stored; an error names the line (JSONL) or the record (a JSON document), never its content.

Understood, besides plain ``add()`` items (one JSON object per line):

- ``memvault user export`` lines: each memory comes back with its text, scope, role, metadata,
  type, importance, expiry and its original ``created_at``/``updated_at``; the header and the
  history of deleted memories are skipped. Ids are new and history is not replayed.
- mem0's records, from ``Memory.get_all`` (OSS) or ``MemoryClient.get_all`` / the platform's
  export: ``{"results": [...]}``, ``{"memories": [...]}``, a JSON list, or one record per line.
  ``id``, ``hash`` and ``score`` are mem0's own and are dropped (memvault makes its own);
  ``created_at``/``updated_at`` are kept; the mem0 fields memvault has no column for
  (``categories``, ``app_id``, ...) are kept in the memory's metadata under the same name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from memvault.errors import InvalidInput, MemvaultError, item_prefix
from memvault.memory import Memory

__all__ = ["import_jsonl", "read_items", "read_records"]

_TEXT_ALIASES = ("memory", "text", "data")
# Fields of `memvault user export` lines that add() takes (under another name for expires_at).
_EXPORT_FIELDS = {
    "user_id": "user_id",
    "agent_id": "agent_id",
    "run_id": "run_id",
    "metadata": "metadata",
    "memory_type": "memory_type",
    "expires_at": "expiration_date",
    "actor_id": "actor_id",
    "importance": "importance",
    "created_at": "created_at",
    "updated_at": "updated_at",
}
# Read statistics of an export, and mem0's own ids and hashes: memvault makes its own.
_DROPPED = frozenset({"id", "hash", "score", "access_count", "last_accessed_at", "owner"})
_DROPPED_MEM0 = _DROPPED | {"organization"}
# mem0 fields without a memvault column: kept in the memory's metadata under their name.
_INTO_METADATA = ("categories", "app_id", "immutable", "structured_attributes", "attributed_to")
# Where a mem0 dump keeps its records.
_CONTAINERS = ("results", "memories")


def read_records(path: Path) -> Iterator[tuple[str, Any]]:
    """Each record with where it is (``line 7`` or ``record 7``), from JSONL or a JSON
    document (a list, or an object holding ``results`` or ``memories``)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
        raise InvalidInput(f"line {bad_line} is not UTF-8 text") from None
    document = _whole_document(text)
    if document is None:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield f"line {number}", _parse(line, f"line {number}")
        return
    for number, record in enumerate(document, start=1):
        yield f"record {number}", record


def _whole_document(text: str) -> list[Any] | None:
    """The records of a JSON document, or None for JSONL (one value per line)."""
    stripped = text.lstrip()
    if not stripped.startswith(("[", "{")):
        return None
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidInput("the file nests too deeply") from None
    except ValueError:
        if stripped.startswith("["):
            raise InvalidInput("the file is not a JSON list") from None
        return None  # several lines, each a value: JSONL
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in _CONTAINERS:
            if isinstance(value.get(key), list) and not _looks_like_item(value):
                return list(value[key])
    return None  # a file of one line: one JSONL record


def _looks_like_item(value: dict[str, Any]) -> bool:
    return any(key in value for key in ("messages", *_TEXT_ALIASES))


def _parse(line: str, where: str) -> Any:
    """One JSON value; a line too deep for the parser is refused like any other bad line (the
    library would refuse its metadata anyway: ``validation.MAX_METADATA_DEPTH``)."""
    try:
        return json.loads(line)
    except RecursionError:
        raise InvalidInput(f"{where} nests too deeply") from None
    except ValueError:
        raise InvalidInput(f"{where} is not JSON") from None


def read_items(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``add_many`` items of the file and, for each, where it came from."""
    items: list[dict[str, Any]] = []
    places: list[str] = []
    for where, record in read_records(path):
        if not isinstance(record, dict):
            raise InvalidInput(f"{where} is not a JSON object")
        item = to_item(record, where)
        if item is not None:
            items.append(item)
            places.append(where)
    return items, places


def to_item(record: dict[str, Any], where: str) -> dict[str, Any] | None:
    """One record as ``add_many``'s item; None for lines that hold no memory."""
    kind = record.get("type")
    if kind in ("export", "history"):
        return None  # the export's header and the history of deleted memories
    if kind == "memory":
        return _from_export(record, where)
    if kind is not None:
        raise InvalidInput(f"{where} has an unknown type (memory, export or history)")
    return _from_mem0_or_item(record, where)


def _from_export(record: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(record.get("memory"), str):
        raise InvalidInput(f"{where} has no memory text")
    message = {"role": record.get("role") or "user", "content": record["memory"]}
    item: dict[str, Any] = {"messages": [message]}
    item.update(
        {new: record[old] for old, new in _EXPORT_FIELDS.items() if record.get(old) is not None}
    )
    return item


def _from_mem0_or_item(record: dict[str, Any], where: str) -> dict[str, Any]:
    """A plain add() item, or a mem0 record (its text in ``memory``, its ids and hash dropped,
    its timestamps kept, its other fields carried in metadata)."""
    item = {k: v for k, v in record.items() if k not in _DROPPED_MEM0}
    texts = [alias for alias in ("messages", *_TEXT_ALIASES) if alias in item]
    if len(texts) > 1:
        raise InvalidInput(f"{where} has both {texts[0]} and {texts[1]}")
    if texts and texts[0] != "messages":
        item["messages"] = item.pop(texts[0])
    role = item.pop("role", None)
    if role is not None:
        if not isinstance(item.get("messages"), str):
            raise InvalidInput(f"{where}: role goes with a memory text, not a messages list")
        item["messages"] = [{"role": role, "content": item["messages"]}]
    if "expires_at" in item:
        if "expiration_date" in item:
            raise InvalidInput(f"{where} has both expires_at and expiration_date")
        item["expiration_date"] = item.pop("expires_at")
    if item.get("created_at") is None:
        item.pop("created_at", None)
        item.pop("updated_at", None)  # mem0 never updates what it did not create
    elif item.get("updated_at") is None:
        item.pop("updated_at", None)
    carried = {key: item.pop(key) for key in _INTO_METADATA if key in item}
    carried = {key: value for key, value in carried.items() if value is not None}
    if carried:
        metadata = item.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise InvalidInput(f"{where}: metadata must be an object")
        for key, value in carried.items():
            if key in metadata and metadata[key] != value:
                raise InvalidInput(f"{where}: {key} is also a metadata key, with another value")
        item["metadata"] = {**metadata, **carried}
    return item


def import_jsonl(
    memory: Memory, path: Path, *, batch_size: int = 256, console: Console | None = None
) -> dict[str, int]:
    items, places = read_items(path)
    try:
        result = _load(memory, items, batch_size, console)
    except MemvaultError as exc:
        if exc.item is None or not 0 <= exc.item < len(places):
            raise
        reason = exc.message.removeprefix(item_prefix(exc.item))
        raise type(exc)(f"{places[exc.item]}: {reason}") from None
    events = [r["event"] for r in result["results"]]
    return {"lines": len(items), "added": events.count("ADD"), "duplicates": events.count("NONE")}


def _load(
    memory: Memory, items: list[dict[str, Any]], batch_size: int, console: Console | None
) -> dict[str, Any]:
    if console is None:
        return memory.add_many(items, batch_size=batch_size)
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("importing", total=len(items))
        return memory.add_many(
            items,
            batch_size=batch_size,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
