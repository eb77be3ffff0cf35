"""``MemvaultStore``: LangGraph's long-term memory (a ``BaseStore``) kept in memvault.

    >>> store = MemvaultStore(memory, scope=lambda ns: {"user_id": ns[1]})
    >>> store.put(("memories", "alice"), "drink", {"text": "Alice prefers green tea"})
    >>> store.search(("memories", "alice"), query="what does alice drink?")[0].value
    {'text': 'Alice prefers green tea'}

How LangGraph's notions map to memvault's (docs/integrations.md has the same, for users):

- A namespace maps to a memvault scope by the caller's rule: the ids the store is bound to
  (``user_id=``, ``agent_id=``, ``run_id=``) and/or ``scope``, a function of the namespace
  returning some of ``user_id``/``agent_id``/``run_id``. The bound ids always apply; a namespace
  the rule maps to another value of a bound id is refused (``Forbidden``), one it cannot map
  (the rule raises ``IndexError``/``KeyError`` or nothing is bound) is refused
  (``MissingScope``). A namespace therefore never reaches beyond the scope it maps to.
- The namespace itself and the key are kept in the memory's (encrypted) metadata, so two
  namespaces of one scope never see each other's items: ``langgraph_depth`` (its length),
  ``langgraph_ns.<i>`` (its items), ``langgraph_key``.
- The value's fields are metadata keys ``value.<field>`` (LangGraph's ``filter`` reads them);
  the memory's text, what search matches, is ``value["text"]``, else ``value["content"]``, else
  the value as JSON.
- ``put`` updates the memory of that namespace and key, or adds one; ``put(value=None)`` and
  ``delete`` delete it. memvault keeps one memory per text and scope: a put whose text another
  memory of the scope already holds is refused (``InvalidInput``), never merged.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from memvault.async_memory import AsyncMemory
from memvault.errors import InvalidFilter, InvalidInput, MissingScope
from memvault.integrations.scoping import ScopeBinding, equals
from memvault.memory import Memory
from memvault.validation import Scope

try:
    from langgraph.store.base import (
        BaseStore,
        GetOp,
        Item,
        ListNamespacesOp,
        MatchCondition,
        Op,
        PutOp,
        Result,
        SearchItem,
        SearchOp,
        validate_op_namespace,
    )
except ImportError as missing:  # pragma: no cover - the extra is installed wherever tests run
    raise ImportError(
        "memvault.integrations.langgraph needs LangGraph: pip install 'memvault[langchain]'"
    ) from missing

__all__ = ["MemvaultStore", "ScopeRule"]

ScopeRule = Callable[[tuple[str, ...]], Mapping[str, str]]
"""A namespace -> some of ``user_id``, ``agent_id``, ``run_id`` (raise IndexError/KeyError for
a namespace that names no scope)."""

KEY_FIELD = "langgraph_key"
DEPTH_FIELD = "langgraph_depth"
ITEM_FIELD = "langgraph_ns.{}"
VALUE_PREFIX = "value."
# LangGraph's filter operators and memvault's names for them.
OPERATORS = {"$eq": "eq", "$ne": "ne", "$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
# Memories list_namespaces reads at most (it has no index of namespaces to ask).
MAX_NAMESPACE_SCAN = 10_000
PAGE = 1000


class MemvaultStore(BaseStore):
    """A LangGraph ``BaseStore`` whose items are memvault memories (encrypted, searchable)."""

    def __init__(
        self,
        memory: Memory | AsyncMemory,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        scope: ScopeRule | None = None,
        max_namespace_scan: int = MAX_NAMESPACE_SCAN,
    ) -> None:
        self.memory = memory.sync if isinstance(memory, AsyncMemory) else memory
        self._binding: ScopeBinding[tuple[str, ...]] = ScopeBinding(
            user_id=user_id, agent_id=agent_id, run_id=run_id, rule=scope, owner="MemvaultStore"
        )
        self.bound = self._binding.bound
        self.rule = scope
        self.max_namespace_scan = max_namespace_scan
        # put is read-then-write (upsert): one at a time per store, so two puts of a new key
        # from threads of this process never add two memories.
        self._writes = threading.Lock()

    # --- BaseStore ----------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return [self._run(op) for op in ops]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        # memvault's calls block (SQLite, the model): they run in a worker thread.
        return await asyncio.to_thread(self.batch, list(ops))

    def _run(self, op: Op) -> Result:
        validate_op_namespace(op)
        if isinstance(op, GetOp):
            return self._get(op)
        if isinstance(op, PutOp):
            self._put(op)
            return None
        if isinstance(op, SearchOp):
            return self._search(op)
        if isinstance(op, ListNamespacesOp):
            return self._list_namespaces(op)
        raise InvalidInput(f"unknown LangGraph store operation {type(op).__name__}")

    # --- scopes -------------------------------------------------------------------------------

    def scope_of(self, namespace: tuple[str, ...]) -> Scope:
        """The memvault scope of ``namespace``: the bound ids plus what the rule maps it to."""
        return self._binding.scope_of(tuple(namespace))

    # --- operations ---------------------------------------------------------------------------

    def _find(self, namespace: tuple[str, ...], key: str, top_k: int) -> list[dict[str, Any]]:
        conditions = [*_namespace_conditions(namespace, exact=True), equals(KEY_FIELD, key)]
        scope = self.scope_of(namespace)
        found = self.memory.get_all(
            user_id=scope.user_id,
            agent_id=scope.agent_id,
            run_id=scope.run_id,
            filters={"AND": conditions},
            top_k=top_k,
        )
        return found["results"]

    def _get(self, op: GetOp) -> Item | None:
        found = self._find(op.namespace, op.key, 1)
        return _item(found[0]) if found else None

    def _put(self, op: PutOp) -> None:
        namespace = tuple(op.namespace)
        with self._writes:
            # More than one only after writers of other processes raced: the put fixes it.
            existing = self._find(namespace, op.key, 100)
            if op.value is None:
                for memory in existing:
                    self.memory.delete(memory["id"])
                return
            value = dict(op.value)
            text = _text_of(value)
            metadata = _metadata(namespace, op.key, value)
            if not existing:
                scope = self.scope_of(namespace)
                added = self.memory.add(
                    text,
                    user_id=scope.user_id,
                    agent_id=scope.agent_id,
                    run_id=scope.run_id,
                    metadata=metadata,
                    infer=False,
                )
                if added["results"] and added["results"][0]["event"] == "NONE":
                    raise InvalidInput(
                        "another memory of this scope already holds this text (memvault keeps"
                        " one memory per text and scope)"
                    )
                return
            first, *extra = existing
            # An unchanged text is not embedded again.
            new_text = None if first["memory"] == text else text
            self.memory.update(first["id"], new_text, metadata)
            for memory in extra:
                self.memory.delete(memory["id"])

    def _search(self, op: SearchOp) -> list[SearchItem]:
        prefix = tuple(op.namespace_prefix)
        conditions = [*_namespace_conditions(prefix, exact=False), *_value_filter(op.filter)]
        filters = {"AND": conditions}
        scope = self.scope_of(prefix)
        if op.query:
            hits = self.memory.search(
                op.query,
                user_id=scope.user_id,
                agent_id=scope.agent_id,
                run_id=scope.run_id,
                filters=filters,
                top_k=op.offset + op.limit,
            )["results"][op.offset :]
        else:
            hits = self.memory.get_all(
                user_id=scope.user_id,
                agent_id=scope.agent_id,
                run_id=scope.run_id,
                filters=filters,
                top_k=op.limit,
                offset=op.offset,
            )["results"]
        return [_search_item(hit) for hit in hits]

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        scope = self._listing_scope(op.match_conditions or ())
        found: set[tuple[str, ...]] = set()
        offset = 0
        while offset < self.max_namespace_scan:
            page = self.memory.get_all(
                user_id=scope.user_id,
                agent_id=scope.agent_id,
                run_id=scope.run_id,
                filters={DEPTH_FIELD: "*"},
                top_k=min(PAGE, self.max_namespace_scan - offset),
                offset=offset,
            )["results"]
            for memory in page:
                namespace = _namespace_of(memory["metadata"])
                if all(_matches(namespace, cond) for cond in op.match_conditions or ()):
                    depth = op.max_depth
                    found.add(namespace[:depth] if depth is not None else namespace)
            if len(page) < PAGE:
                break
            offset += len(page)
        return sorted(found)[op.offset : op.offset + op.limit]

    def _listing_scope(self, conditions: Iterable[MatchCondition]) -> Scope:
        """Bound ids, else the scope of a prefix condition without wildcards."""
        for condition in conditions:
            if condition.match_type == "prefix" and "*" not in condition.path:
                return self.scope_of(tuple(condition.path))
        if not self.bound:
            raise MissingScope(
                "list_namespaces needs a bound scope or a prefix (without '*') that maps to one"
            )
        return Scope.of(
            self.bound.get("user_id"), self.bound.get("agent_id"), self.bound.get("run_id")
        )


def _namespace_conditions(namespace: tuple[str, ...], *, exact: bool) -> list[dict[str, Any]]:
    """Metadata conditions for the items of ``namespace`` (``exact``) or under it."""
    conditions: list[dict[str, Any]] = [
        equals(ITEM_FIELD.format(index), label) for index, label in enumerate(namespace)
    ]
    conditions.append({DEPTH_FIELD: len(namespace) if exact else {"gte": len(namespace)}})
    return conditions


def _value_filter(filter_: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """LangGraph's ``filter`` on value fields as memvault conditions (values stay values)."""
    conditions: list[dict[str, Any]] = []
    for field, wanted in (filter_ or {}).items():
        name = VALUE_PREFIX + field
        if isinstance(wanted, Mapping):
            for operator, operand in wanted.items():
                if operator not in OPERATORS:
                    raise InvalidFilter(f"LangGraph filter operators are {sorted(OPERATORS)}")
                if OPERATORS[operator] == "eq":
                    conditions.append(equals(name, operand))
                else:
                    conditions.append({name: {OPERATORS[operator]: operand}})
        else:
            conditions.append(equals(name, wanted))
    return conditions


def _text_of(value: Mapping[str, Any]) -> str:
    """What search matches: ``text``, else ``content``, else the whole value as JSON."""
    for field in ("text", "content"):
        candidate = value.get(field)
        if isinstance(candidate, str) and candidate.strip():
            return candidate
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _metadata(namespace: tuple[str, ...], key: str, value: Mapping[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {VALUE_PREFIX + field: item for field, item in value.items()}
    metadata.update({ITEM_FIELD.format(index): label for index, label in enumerate(namespace)})
    metadata[DEPTH_FIELD] = len(namespace)
    metadata[KEY_FIELD] = key
    return metadata


def _namespace_of(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    depth = int(metadata[DEPTH_FIELD])
    return tuple(str(metadata[ITEM_FIELD.format(index)]) for index in range(depth))


def _value_of(metadata: Mapping[str, Any]) -> dict[str, Any]:
    start = len(VALUE_PREFIX)
    return {name[start:]: item for name, item in metadata.items() if name.startswith(VALUE_PREFIX)}


def _times(memory: Mapping[str, Any]) -> tuple[datetime, datetime]:
    created = datetime.fromisoformat(memory["created_at"])
    updated = memory.get("updated_at")
    return created, datetime.fromisoformat(updated) if updated else created


def _item(memory: Mapping[str, Any]) -> Item:
    metadata = memory["metadata"]
    created, updated = _times(memory)
    return Item(
        value=_value_of(metadata),
        key=str(metadata[KEY_FIELD]),
        namespace=_namespace_of(metadata),
        created_at=created,
        updated_at=updated,
    )


def _search_item(memory: Mapping[str, Any]) -> SearchItem:
    metadata = memory["metadata"]
    created, updated = _times(memory)
    return SearchItem(
        namespace=_namespace_of(metadata),
        key=str(metadata[KEY_FIELD]),
        value=_value_of(metadata),
        created_at=created,
        updated_at=updated,
        score=memory.get("score"),
    )


def _matches(namespace: tuple[str, ...], condition: MatchCondition) -> bool:
    path = tuple(condition.path)
    if not path:
        return True
    if len(path) > len(namespace):
        return False
    part = namespace[: len(path)] if condition.match_type == "prefix" else namespace[-len(path) :]
    return all(want in ("*", have) for want, have in zip(path, part, strict=True))
