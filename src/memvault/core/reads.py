"""Reads: one memory, a scope's memories (filtered, paged, counted), history, and turning search
hits into answers. Every read is bounded to the engine's namespace by the store, in its query."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from memvault.clock import now_iso
from memvault.codec import KeyMissing
from memvault.core.engine import Engine
from memvault.core.rights import finish_cut_erasures
from memvault.errors import InvalidFilter, InvalidInput
from memvault.filters import FilterNode, parse_filter, scope_ids
from memvault.retrieval.hybrid import SearchHit
from memvault.validation import Scope, check_id, check_json_value, check_offset, check_top_k

__all__ = [
    "count",
    "entities",
    "get",
    "history",
    "page",
    "query_scope",
    "rows",
    "search_results",
    "settled",
]

MAX_PAGE = 100_000
_T = TypeVar("_T")
# A read that meets a row whose data key is gone is tried again this many times, this long
# apart (seconds, doubling): ~0.6 s in all. See ``settled``.
SETTLE_TRIES = 8
SETTLE_FIRST_WAIT = 0.005


def settled(engine: Engine, read: Callable[[], _T]) -> _T:
    """Run a read (rows, then their keys), again when a row's key is missing.

    Rows and keys are read in separate transactions (the key store may even be another
    database), and erase destroys the key first, then deletes the rows; the end of a rotation
    destroys the old key once the rows have moved. A read that took rows before such a change
    committed (here or on another node) and their key after finds no key: a moment later the
    rows are gone or moved, and the read answers as if it had started after the change. A key
    still missing after the last try is a real integrity failure (a tampered ``scope_id``).

    An erase cut off by a crash between its two steps left rows under a destroyed key for good:
    the first miss finishes such erasures (``rights.finish_cut_erasures``) before trying again."""
    wait = SETTLE_FIRST_WAIT
    for attempt in range(SETTLE_TRIES - 1):
        try:
            return read()
        except KeyMissing:
            if attempt == 0 and finish_cut_erasures(engine):
                continue
            time.sleep(wait)
            wait *= 2
    return read()


def query_scope(
    user_id: str | None,
    agent_id: str | None,
    run_id: str | None,
    filters: Mapping[str, Any] | None,
) -> tuple[Scope, FilterNode | None]:
    """The scope a read names (as arguments, or pinned by the filter as mem0 2.x does) and the
    parsed filter."""
    # Strings and size first (a lone surrogate failed deep in the query as a 500).
    node = parse_filter(check_json_value(filters, "filters", InvalidFilter, max_depth=64))
    pinned = scope_ids(node)
    for name, value in (("user_id", user_id), ("agent_id", agent_id), ("run_id", run_id)):
        if value is not None and name in pinned and pinned[name] != value:
            raise InvalidInput(f"{name} is given twice with different values")
    scope = Scope.of(
        user_id or pinned.get("user_id"),
        agent_id or pinned.get("agent_id"),
        run_id or pinned.get("run_id"),
    )
    return scope, node


def get(engine: Engine, memory_id: str) -> dict[str, Any] | None:
    memory_id = check_id("memory_id", memory_id)

    def run() -> dict[str, Any] | None:
        row = engine.store.get(engine.namespace, memory_id, now_iso())
        return None if row is None else engine.codec.public(row)

    return settled(engine, run)


def rows(
    engine: Engine, scope: Scope, node: FilterNode | None, *, top_k: int, offset: int
) -> list[dict[str, Any]]:
    check_offset(offset)
    limit = check_top_k(top_k, MAX_PAGE)

    def run() -> list[dict[str, Any]]:
        found = engine.store.list_rows(
            engine.namespace, scope, node, now=now_iso(), limit=limit, offset=offset
        )
        return [engine.codec.public(row) for row in found]

    return settled(engine, run)


def page(
    engine: Engine, scope: Scope, node: FilterNode | None, *, top_k: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    check_offset(offset)
    limit = check_top_k(top_k, MAX_PAGE)

    def run() -> tuple[list[dict[str, Any]], int]:
        found, total = engine.store.page_rows(
            engine.namespace, scope, node, now=now_iso(), limit=limit, offset=offset
        )
        return [engine.codec.public(row) for row in found], total

    return settled(engine, run)


def count(engine: Engine, scope: Scope, node: FilterNode | None) -> int:
    return len(engine.store.ids_matching(engine.namespace, scope, node, now_iso()))


def history(engine: Engine, memory_id: str) -> list[dict[str, Any]]:
    memory_id = check_id("memory_id", memory_id)

    def run() -> list[dict[str, Any]]:
        events = engine.store.history(engine.namespace, memory_id)
        return [engine.codec.public_history(event) for event in events]

    return settled(engine, run)


def search_results(
    engine: Engine, hits: Sequence[SearchHit], *, explain: bool
) -> list[dict[str, Any]]:
    """Hits as the API returns them: the memory, its score, and (``explain``) the score's parts."""
    results = []
    for hit in hits:
        item = engine.codec.public(hit.row)
        item["score"] = hit.score
        if explain:
            item["explain"] = hit.explain
        results.append(item)
    return results


# The owner columns, in the order mem0's entity list names them (``app`` has no column here).
ENTITY_TYPES = (("user", "user_id"), ("agent", "agent_id"), ("run", "run_id"))


def entities(engine: Engine, user_id: str | None = None) -> list[dict[str, Any]]:
    """Every user, agent and run id that owns a live memory of the namespace (only those of one
    user's memories if ``user_id``): ``{"id", "name", "type", "total_memories", "created_at",
    "updated_at"}`` in mem0's shape, users first, then agents, then runs, each by name."""
    found: dict[tuple[int, str], dict[str, Any]] = {}
    for owners in engine.store.owner_counts(engine.namespace, user_id, now_iso()):
        for order, (kind, column) in enumerate(ENTITY_TYPES):
            name = getattr(owners, column)
            if name is None:
                continue
            entry = found.setdefault(
                (order, name),
                {
                    "id": name,
                    "name": name,
                    "type": kind,
                    "total_memories": 0,
                    "created_at": owners.first_created_at,
                    "updated_at": owners.last_updated_at,
                },
            )
            entry["total_memories"] += owners.memories
            entry["created_at"] = min(entry["created_at"], owners.first_created_at)
            entry["updated_at"] = max(entry["updated_at"], owners.last_updated_at)
    return [found[key] for key in sorted(found)]
