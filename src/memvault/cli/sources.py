"""What ``memvault import`` reads besides JSON: mem0 OSS local storage and OpenMemory's SQLite
file, as ``Record`` s (an ``add()`` item, its history and whether it is still live).

Every source file is opened read-only (``mode=ro``), and nothing in it is run: Qdrant's local
storage keeps its points pickled, and they are unpickled with every class refused but Qdrant's
own data models, which are rebuilt as plain field holders (``_Fields``), never imported.

mem0 OSS (``Memory.from_config``, mem0ai 2.x; read from mem0/memory/main.py and storage.py):
the live memories are the points of the Qdrant collection (``vector_store.config.path``,
``/tmp/qdrant`` by default, collection ``mem0``), a point's payload holding the text (``data``),
its owners, ``actor_id``, ``role``, times and the caller's metadata; their history is the
``history`` table of ``history_db_path`` (``~/.mem0/history.db``): ADD/UPDATE/DELETE with the
old and new text, the event's time in ``updated_at``. A memory mem0 deleted has left its point,
and with it its owners: its history names no user, so it cannot be placed in a scope and is
counted (``orphans``), not imported. Vectors are not read: memvault embeds with its own model.

OpenMemory (mem0ai/mem0, openmemory/api/app/models.py): ``memories`` joined to ``users``
(``user_id`` -> user_id) and ``apps`` (``name`` -> agent_id), ``categories`` through
``memory_categories`` (-> metadata ``categories``), ``memory_status_history`` (-> history).
States: ``active`` is a live memory; ``paused`` and ``archived`` are live memories whose
metadata says so (``state``, and ``archived_at``): memvault has no hidden state, filter them
out with ``filters={"state": {"ne": ...}}``; ``deleted`` is a deleted memory, its history kept
(ADD, the state changes, DELETE) as memvault keeps a deleted memory's.
"""

from __future__ import annotations

import io
import json
import pickle
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memvault.clock import iso
from memvault.core.changes import PastEvent
from memvault.errors import InvalidInput
from memvault.validation import MEMORY_TYPES, parse_datetime

__all__ = [
    "Record",
    "is_sqlite",
    "read_mem0_local",
    "read_openmemory",
    "source_time",
    "sqlite_kind",
]


@dataclass(slots=True)
class Record:
    """One memory of a source: ``where`` names it in errors (never its text)."""

    where: str
    item: dict[str, Any]
    source_id: str | None = None
    past: tuple[PastEvent, ...] | None = None
    live: bool = True


def is_sqlite(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(16) == b"SQLite format 3\x00"


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    try:
        connection = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        raise InvalidInput(f"{path} cannot be opened as SQLite") from None
    with closing(connection):
        try:
            yield connection
        except sqlite3.DatabaseError as exc:
            raise InvalidInput(f"{path} is not a readable SQLite database ({exc})") from None


def _tables(connection: sqlite3.Connection) -> set[str]:
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(row[0]) for row in rows}


def sqlite_kind(path: Path) -> str:
    """``mem0-local`` (a mem0 history database) or ``openmemory`` (OpenMemory's file)."""
    with _read_only(path) as connection:
        tables = _tables(connection)
    if {"memories", "users", "apps"} <= tables:
        return "openmemory"
    if "history" in tables:
        return "mem0-local"
    raise InvalidInput(
        f"{path} is SQLite but neither a mem0 history database (table history) nor an"
        " OpenMemory database (tables memories, users, apps)"
    )


def source_time(value: object, where: str, field: str) -> str | None:
    """A time of the source in stored form (naive means UTC); an error names the record."""
    if value is None or value == "":
        return None
    try:
        moment = parse_datetime(field, value)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}") from None
    return None if moment is None else iso(moment)


# --- mem0 OSS local storage --------------------------------------------------------------------

# Payload keys that are a memory's fields, not its metadata (mem0/memory/main.py,
# ``core_and_promoted_keys``); the rest of a payload is the caller's metadata.
_MEM0_FIELDS = frozenset(
    {
        "data",
        "hash",
        "created_at",
        "updated_at",
        "id",
        "text_lemmatized",
        "user_id",
        "agent_id",
        "run_id",
        "actor_id",
        "role",
        "expiration_date",
    }
)
_MEM0_EVENTS = ("ADD", "UPDATE", "DELETE")


class _Fields:
    """A Qdrant model from the pickle, as its fields alone."""

    fields: dict[str, Any]

    def __setstate__(self, state: object) -> None:
        fields = state.get("__dict__") if isinstance(state, dict) else None
        self.fields = fields if isinstance(fields, dict) else {}


class _PointsOnly(pickle.Unpickler):
    """Rebuilds Qdrant's data models as ``_Fields`` and refuses every other class, so a
    doctored storage file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "qdrant_client.http.models.models" and name.isidentifier():
            return _Fields
        raise InvalidInput("the Qdrant storage holds something other than points: not read")


def _points(storage: Path) -> Iterator[dict[str, Any]]:
    """The points of a local Qdrant collection (qdrant_client/local/persistence.py: table
    ``points``, each a pickled ``PointStruct``), as ``{"id", "payload"}``."""
    with _read_only(storage) as connection:
        if "points" not in _tables(connection):
            raise InvalidInput(f"{storage} holds no Qdrant points table")
        for number, (blob,) in enumerate(
            connection.execute("SELECT point FROM points ORDER BY rowid"), start=1
        ):
            try:
                point = _PointsOnly(io.BytesIO(bytes(blob))).load()
            except InvalidInput:
                raise
            except Exception:  # noqa: BLE001  (any damage: one message naming the row)
                raise InvalidInput(f"point {number} of {storage} cannot be read") from None
            fields = point.fields if isinstance(point, _Fields) else {}
            payload = fields.get("payload")
            if fields.get("id") is None or not isinstance(payload, dict):
                raise InvalidInput(f"point {number} of {storage} has no id or payload")
            yield {"id": str(fields["id"]), "payload": payload}


def qdrant_storage(qdrant: Path, collection: str) -> Path:
    """Where qdrant_client's local mode keeps a collection's points."""
    if not collection or "/" in collection or "\\" in collection or collection in (".", ".."):
        raise InvalidInput("--collection must be a collection name")
    storage = qdrant / "collection" / collection / "storage.sqlite"
    if not storage.is_file():
        raise InvalidInput(
            f"no Qdrant collection {collection!r} under {qdrant}: pass --qdrant (mem0's"
            " vector_store path, /tmp/qdrant by default) and --collection (mem0 by default)"
        )
    return storage


def read_mem0_local(history_db: Path, qdrant: Path, collection: str) -> tuple[list[Record], int]:
    """The live memories of mem0's local storage with their history, and how many deleted
    memories' histories could not be placed (no owner left)."""
    storage = qdrant_storage(qdrant, collection)
    history = _mem0_history(history_db)
    records = []
    for point in _points(storage):
        where = f"memory {point['id']}"
        records.append(
            _mem0_record(point["id"], point["payload"], history.pop(point["id"], []), where)
        )
    orphans = len(history)
    return records, orphans


def _mem0_history(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with _read_only(path) as connection:
        columns = {str(row[1]) for row in connection.execute("PRAGMA table_info(history)")}
        wanted = {"memory_id", "old_memory", "new_memory", "event", "created_at", "updated_at"}
        if not wanted <= columns:
            raise InvalidInput(f"{path} has no mem0 history table (columns {sorted(wanted)})")
        rows = connection.execute(
            "SELECT memory_id, event, old_memory, new_memory, created_at, updated_at"
            " FROM history ORDER BY coalesce(updated_at, created_at), rowid"
        ).fetchall()
    found: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        found.setdefault(str(row[0]), []).append(row[1:])
    return found


def _mem0_record(
    point_id: str, payload: dict[str, Any], events: list[tuple[Any, ...]], where: str
) -> Record:
    text = payload.get("data")
    if not isinstance(text, str):
        raise InvalidInput(f"{where} has no text (payload data)")
    item: dict[str, Any] = {
        "messages": [{"role": payload.get("role") or "user", "content": text}],
        "created_at": payload.get("created_at"),
        "updated_at": payload.get("updated_at") if payload.get("created_at") else None,
    }
    for key in ("user_id", "agent_id", "run_id", "actor_id"):
        if payload.get(key) is not None:
            item[key] = payload[key]
    if payload.get("expiration_date") is not None:
        item["expiration_date"] = payload["expiration_date"]
    metadata = {k: v for k, v in payload.items() if k not in _MEM0_FIELDS}
    if metadata:
        item["metadata"] = metadata
    kind = payload.get("memory_type")
    if isinstance(kind, str):
        kind = kind.removesuffix("_memory")  # mem0's procedural_memory
        if kind in MEMORY_TYPES:
            item["memory_type"] = kind
    created = source_time(payload.get("created_at"), where, "created_at")
    past = []
    for event, old, new, made, changed in events:
        if event not in _MEM0_EVENTS:
            continue
        at = source_time(changed, where, "history updated_at") or source_time(
            made, where, "created_at"
        )
        past.append(PastEvent(str(event), _text(old), _text(new), at or created or ""))
    if not past or past[0].event != "ADD":
        first = past[0].old if past and past[0].old is not None else text
        past.insert(
            0, PastEvent("ADD", None, first, created or (past[0].created_at if past else ""))
        )
    if any(not event.created_at for event in past):
        raise InvalidInput(f"{where} has history without times and no created_at")
    return Record(where, item, point_id, tuple(past))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


# --- OpenMemory -------------------------------------------------------------------------------

_STATES = ("active", "paused", "archived", "deleted")


def read_openmemory(path: Path) -> list[Record]:
    """Every memory of an OpenMemory database, deleted ones as history only."""
    with _read_only(path) as connection:
        rows = connection.execute(
            "SELECT m.id, m.content, m.metadata, m.state, m.created_at, m.updated_at,"
            " m.archived_at, m.deleted_at, u.user_id, a.name"
            " FROM memories m JOIN users u ON u.id = m.user_id JOIN apps a ON a.id = m.app_id"
            " ORDER BY m.created_at, m.id"
        ).fetchall()
        categories: dict[str, list[str]] = {}
        if {"categories", "memory_categories"} <= _tables(connection):
            for memory_id, name in connection.execute(
                "SELECT mc.memory_id, c.name FROM memory_categories mc"
                " JOIN categories c ON c.id = mc.category_id ORDER BY c.name"
            ):
                categories.setdefault(str(memory_id), []).append(str(name))
        changes: dict[str, list[tuple[Any, ...]]] = {}
        if "memory_status_history" in _tables(connection):
            for memory_id, *change in connection.execute(
                "SELECT h.memory_id, h.old_state, h.new_state, h.changed_at, u.user_id"
                " FROM memory_status_history h LEFT JOIN users u ON u.id = h.changed_by"
                " ORDER BY h.changed_at, h.rowid"
            ):
                changes.setdefault(str(memory_id), []).append(tuple(change))
    return [
        _openmemory_record(row, categories.get(str(row[0]), []), changes.get(str(row[0]), []))
        for row in rows
    ]


def _openmemory_record(
    row: tuple[Any, ...], categories: list[str], changes: list[tuple[Any, ...]]
) -> Record:
    memory_id, content, raw_metadata, state, created, updated, archived, deleted, user, app = row
    memory_id = str(memory_id)
    where = f"memory {memory_id}"
    if not isinstance(content, str):
        raise InvalidInput(f"{where} has no content")
    state = str(state or "active").lower()
    if state not in _STATES:
        raise InvalidInput(f"{where} has an unknown state (one of {', '.join(_STATES)})")
    try:
        metadata = json.loads(raw_metadata) if raw_metadata else {}
    except (ValueError, RecursionError):
        raise InvalidInput(f"{where}: metadata is not JSON") from None
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InvalidInput(f"{where}: metadata must be an object")
    ours: dict[str, Any] = {}
    if categories:
        ours["categories"] = categories
    if state in ("paused", "archived"):
        ours["state"] = state
    archived_at = source_time(archived, where, "archived_at")
    if archived_at is not None and state != "deleted":
        ours["archived_at"] = archived_at
    for key, value in ours.items():
        if key in metadata and metadata[key] != value:
            raise InvalidInput(f"{where}: {key} is also a metadata key, with another value")
    metadata = {**metadata, **ours}
    created_at = source_time(created, where, "created_at")
    updated_at = source_time(updated, where, "updated_at") if created_at else None
    if created_at is None:
        raise InvalidInput(f"{where} has no created_at")
    item: dict[str, Any] = {
        "messages": content,
        "user_id": user,
        "agent_id": app,
        "created_at": created_at,
        "updated_at": max(updated_at, created_at) if updated_at else None,
    }
    if metadata:
        item["metadata"] = metadata
    past = [PastEvent("ADD", None, content, created_at)]
    for old, new, changed_at, changed_by in changes:
        at = source_time(changed_at, where, "changed_at") or created_at
        if str(new).lower() == "deleted":
            past.append(PastEvent("DELETE", content, None, at))
            continue
        meta: dict[str, Any] = {"state": [str(old).lower(), str(new).lower()]}
        if changed_by is not None:
            meta["changed_by"] = str(changed_by)
        past.append(PastEvent("UPDATE", content, content, at, meta))
    live = state != "deleted"
    if not live and past[-1].event != "DELETE":
        at = source_time(deleted, where, "deleted_at") or updated_at or created_at
        past.append(PastEvent("DELETE", content, None, at))
    return Record(where, item, memory_id, tuple(past), live)
