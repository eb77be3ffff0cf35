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

import hashlib
import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from memvault.cli.sources import Record, source_time
from memvault.clock import now_iso
from memvault.core.changes import Add, PastEvent
from memvault.errors import InvalidInput, MemvaultError, StorageError
from memvault.memory import Memory
from memvault.security.poisoning import flag_metadata
from memvault.security.redact import apply_policy
from memvault.validation import check_text

__all__ = [
    "derived_id",
    "import_jsonl",
    "import_records",
    "json_records",
    "read_items",
    "read_records",
]

# Imported memories re-read through ``Memory`` and compared with their source at the end.
SAMPLE_SIZE = 20

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
        return None  # the export's header; deleted memories' history (``json_records``)
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


def json_records(path: Path) -> list[Record]:
    """The records of a JSON/JSONL file. A record with an ``id`` (a memvault export's memory, a
    mem0 record) gets a memvault id derived from it, so a second run skips what the first
    stored; a memvault export's history comes along, deleted memories' too."""
    records = []
    for where, record in read_records(path):
        if not isinstance(record, dict):
            raise InvalidInput(f"{where} is not a JSON object")
        if record.get("type") == "history":
            records.append(_deleted_from_export(record, where))
            continue
        item = to_item(record, where)
        if item is None:
            continue
        source_id = record.get("id")
        source_id = str(source_id) if isinstance(source_id, str | int) and source_id != "" else None
        past = _past(record.get("history"), where) if record.get("type") == "memory" else None
        records.append(Record(where, item, source_id, past))
    return records


_EVENTS = ("ADD", "UPDATE", "DELETE", "NONE")


def _past(events: object, where: str) -> tuple[PastEvent, ...] | None:
    """A memvault export's history of one memory, as it was (times, texts, provenance)."""
    if events is None:
        return None
    if not isinstance(events, list):
        raise InvalidInput(f"{where}: history must be a list")
    past = []
    for number, event in enumerate(events, start=1):
        at = f"{where}: history event {number}"
        if not isinstance(event, dict) or event.get("event") not in _EVENTS:
            raise InvalidInput(f"{at} is not an ADD, UPDATE, DELETE or NONE event")
        old, new = event.get("old_memory"), event.get("new_memory")
        if not all(text is None or isinstance(text, str) for text in (old, new)):
            raise InvalidInput(f"{at}: old_memory and new_memory must be texts")
        moment = source_time(event.get("created_at"), at, "created_at")
        if moment is None:
            raise InvalidInput(f"{at} has no created_at")
        meta = event.get("provenance")
        past.append(
            PastEvent(event["event"], old, new, moment, meta if isinstance(meta, dict) else None)
        )
    return tuple(past) or None


def _deleted_from_export(record: dict[str, Any], where: str) -> Record:
    """A memvault export's ``history`` line: a deleted memory, its history alone (its owners
    and text are in its events)."""
    past = _past(record.get("events"), where)
    memory_id = record.get("memory_id")
    if not past or not isinstance(memory_id, str) or not memory_id:
        raise InvalidInput(f"{where}: a history line needs memory_id and events")
    events = record["events"]
    text = next((e.new for e in past if e.new is not None), None)
    text = text if text is not None else next((e.old for e in past if e.old is not None), None)
    if text is None:
        raise InvalidInput(f"{where}: its events hold no text")
    first = events[0]
    item: dict[str, Any] = {
        "messages": [{"role": first.get("role") or "user", "content": text}],
        "created_at": past[0].created_at,
    }
    for key in ("user_id", "agent_id", "run_id", "actor_id"):
        if first.get(key) is not None:
            item[key] = first[key]
    return Record(where, item, memory_id, past, live=False)


def derived_id(namespace: str, kind: str, source_id: str, created_at: str | None) -> str:
    """A memory's id from its source's: the same on every run (so a re-run finds what an
    earlier one stored), time-ordered like memvault's own (UUID version 8: 48 bits of the
    creation time in milliseconds, then 74 bits of SHA-256 of the namespace, source and id)."""
    digest = hashlib.sha256("\0".join((kind, namespace, source_id)).encode()).digest()
    millis = 0
    if created_at is not None:
        millis = min(max(int(datetime.fromisoformat(created_at).timestamp() * 1000), 0), 2**48 - 1)
    raw = bytearray(millis.to_bytes(6, "big") + digest[:10])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


@dataclass(slots=True)
class _Plan:
    record: Record
    adds: list[Add]
    there: bool = False  # an earlier run stored it


def import_records(
    memory: Memory,
    records: list[Record],
    *,
    kind: str,
    dry_run: bool = False,
    batch_size: int = 256,
    advance: Callable[[int], None] | None = None,
    orphans: int = 0,
    sample_size: int = SAMPLE_SIZE,
) -> dict[str, Any]:
    """Check every record, skip those an earlier run stored, write the rest in batches (one
    embedding call and one transaction each, ``advance(records)`` after each), then verify.

    ``dry_run``: check and count, write nothing. An error names the record (``where``)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput("batch_size must be a positive integer")
    advance = advance or (lambda _done: None)
    plans = _plan(memory, records, kind)
    _mark_stored(memory, plans)
    todo = [plan for plan in plans if not plan.there]
    summary: dict[str, Any] = {
        "format": kind,
        "dry_run": dry_run,
        "records": len(records),
        "memories": sum(add.live for plan in todo for add in plan.adds),
        "deleted": sum(not add.live for plan in todo for add in plan.adds),
        "history_events": sum(len(add.past or ()) for plan in todo for add in plan.adds),
        "already_there": len(plans) - len(todo),
        "orphans": orphans,
    }
    if dry_run:
        return summary
    advance(summary["already_there"])
    written: list[tuple[Add, dict[str, Any]]] = []
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        adds = [add for plan in chunk for add in plan.adds]
        if adds:
            written.extend(zip(adds, memory._write_batch(list(adds)), strict=True))
        advance(len(chunk))
    events = [result["event"] for _, result in written]
    summary["added"] = events.count("ADD")
    summary["duplicates"] = events.count("NONE")
    summary["verified"] = _verify(memory, plans, written, sample_size)
    return summary


def _plan(memory: Memory, records: list[Record], kind: str) -> list[_Plan]:
    rules = memory.namespace_settings()
    policy = rules["secret_policy"]
    plans = []
    for record in records:
        try:
            adds = memory._validate(record.item, rules)
            if record.source_id is not None:
                if len(adds) != 1:
                    raise InvalidInput("a memory of this source holds one text")
                add = adds[0]
                add.memory_id = derived_id(memory.namespace, kind, record.source_id, add.created_at)
                add.live = record.live
                if record.past is not None:  # history is held to what a memory's text is
                    add.past = tuple(_checked(past, memory, policy) for past in record.past)
        except MemvaultError as exc:
            raise type(exc)(f"{record.where}: {exc.message}") from None
        plans.append(_Plan(record, adds))
    return plans


def _checked(past: PastEvent, memory: Memory, policy: Any) -> PastEvent:
    """A history event within the limits of a memory's text and metadata, its texts under the
    namespace's secret policy (redacted, or refused)."""
    limits = memory.settings

    def text(value: str | None) -> str | None:
        if value is None:
            return None
        check_text(value, limits.max_text_bytes, "a history text")
        return str(apply_policy(value, policy, "the history")[0])

    if past.meta is not None:
        size = len(json.dumps(past.meta, ensure_ascii=False).encode())
        if size > limits.max_metadata_bytes:
            raise InvalidInput("a history event's provenance is too large")
    return replace(past, old=text(past.old), new=text(past.new))


def _mark_stored(memory: Memory, plans: list[_Plan]) -> None:
    """Which records an earlier run stored, by their derived ids: a memory row for a live one,
    history for a deleted one."""
    store, namespace = memory.engine.store, memory.namespace
    live = [p.adds[0].memory_id for p in plans if p.record.source_id and p.record.live]
    found = store.get_many(namespace, [i for i in live if i is not None]) if live else {}
    for plan in plans:
        if plan.record.source_id is None:
            continue
        memory_id = plan.adds[0].memory_id
        assert memory_id is not None
        if plan.record.live:
            plan.there = memory_id in found
        else:
            plan.there = bool(store.history(namespace, memory_id))


def _verify(
    memory: Memory,
    plans: list[_Plan],
    written: list[tuple[Add, dict[str, Any]]],
    sample_size: int,
) -> int:
    """Counts (every memory of the source is stored, or merged into an equal one), then a
    random sample (of this run's and earlier runs' imports) opened through ``Memory`` and
    compared with what the source said: text, scope, role, metadata, times and history. How
    many were compared."""
    store, namespace = memory.engine.store, memory.namespace
    expected = {
        add.memory_id
        for plan in plans
        if plan.there
        for add in plan.adds
        if add.live and add.memory_id is not None
    }
    expected |= {str(result["id"]) for add, result in written if result["event"] == "ADD"}
    found = store.get_many(namespace, sorted(expected))
    if len(found) != len(expected):
        raise StorageError(
            f"verification failed: {len(expected) - len(found)} imported memories are missing"
        )
    gone = [str(result["id"]) for _, result in written if result["event"] == "DELETE"]
    if any(not store.history(namespace, memory_id) for memory_id in gone):
        raise StorageError("verification failed: the history of a deleted memory is missing")
    candidates = [(add, result) for add, result in written if result["event"] != "NONE"]
    for plan in plans:  # what an earlier run stored is compared with the source as well
        if plan.there:
            for add in plan.adds:
                add.metadata = flag_metadata(add.metadata, add.message.content)  # as written
                event = "ADD" if add.live else "DELETE"
                candidates.append((add, {"id": add.memory_id, "event": event}))
    chooser = random.Random()  # noqa: S311  (which memories to re-read, not a secret)
    sample = chooser.sample(candidates, min(sample_size, len(candidates)))
    now = now_iso()
    checked = 0
    for add, result in sample:
        memory_id = str(result["id"])
        if add.live and not (add.expires_at is not None and add.expires_at <= now):
            _compare_memory(memory, memory_id, add)
        _compare_history(memory, memory_id, add)
        checked += 1
    return checked


def _compare_memory(memory: Memory, memory_id: str, add: Add) -> None:
    stored = memory.get(memory_id)
    created = add.created_at
    want = {
        "memory": add.message.content,
        "metadata": add.metadata,
        "user_id": add.scope.user_id,
        "agent_id": add.scope.agent_id,
        "run_id": add.scope.run_id,
        "role": add.message.role,
    }
    if created is not None:
        want["created_at"] = created
        want["updated_at"] = add.updated_at or created
    if stored is None or {key: stored.get(key) for key in want} != want:
        raise StorageError(f"verification failed: memory {memory_id} reads differently")


def _compare_history(memory: Memory, memory_id: str, add: Add) -> None:
    events = memory.history(memory_id)
    if add.past is None:
        if not events or events[0]["event"] != "ADD":
            raise StorageError(f"verification failed: memory {memory_id} has no ADD event")
        return
    got = [(e["event"], e["old_memory"], e["new_memory"], e["created_at"]) for e in events]
    want = [(p.event, p.old, p.new, p.created_at) for p in add.past]
    if got != want:
        raise StorageError(f"verification failed: the history of {memory_id} differs")


def import_jsonl(
    memory: Memory,
    path: Path,
    *,
    batch_size: int = 256,
    dry_run: bool = False,
    advance: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Import a JSON/JSONL file (``add()`` items, a memvault export, a mem0 dump)."""
    return import_records(
        memory,
        json_records(path),
        kind="json",
        dry_run=dry_run,
        batch_size=batch_size,
        advance=advance,
    )
