"""CrewAI adapter: a storage backend for CrewAI's unified ``Memory``, kept in memvault.

    >>> storage = MemvaultStorage(memory, user_id="alice")
    >>> crew_memory = CrewMemory(storage=storage, embedder=storage.embedder)
    >>> crew_memory.remember("Alice drinks green tea", scope="/crew/helper",
    ...                      categories=["taste"], importance=0.6)
    >>> crew_memory.recall("what does alice drink?", depth="shallow")[0].record.content
    'Alice drinks green tea'

``MemvaultStorage`` implements CrewAI's ``StorageBackend`` protocol (``save``, ``search``,
``delete``, ``update``, ``get_record``, ``list_records``, ``get_scope_info``, ``list_scopes``,
``list_categories``, ``count``, ``reset`` and ``asave``/``asearch``/``adelete``). CrewAI is not a
dependency of memvault: its releases pin ``mcp<2``, memvault's MCP server needs ``mcp>=2.3``, so
it is installed in an environment of its own (``pip install 'memvault[local]' crewai``).

How CrewAI's notions map to memvault's (docs/integrations.md has the same, for users):

- The storage is bound to a memvault scope (``user_id=``, ``agent_id=``, ``run_id=``, at least
  one): every record CrewAI saves lands in it and every read, delete or reset stays inside it.
  ``scope=``, a function of CrewAI's scope path (``"/crew/research/agent/writer"``) returning
  some of ``user_id``/``agent_id``/``run_id``, may put a record in a narrower scope, never in
  another (``Forbidden``); see ``memvault.integrations.scoping``.
- CrewAI's scope path, categories, importance, source, privacy flag and record id are kept in the
  memory's (encrypted) metadata (``crewai_*`` keys; CrewAI's own metadata under ``meta.<key>``).
  A scope prefix matches whole path segments (``/crew`` covers ``/crew/a``, not ``/crewx``).
  Memories of the scope that CrewAI did not write are never read, changed or deleted.
- CrewAI's ``search`` receives a query *vector*, not text. memvault's search is hybrid (words and
  meaning), so the storage brings its own embedder, ``storage.embedder`` (memvault's model),
  which CrewAI's ``Memory`` must use: it remembers the text of each vector it made (a bounded
  cache, ``cache_entries``), and ``search`` runs memvault's hybrid search on that text. A vector
  it did not make (another embedder, or one evicted from the cache) is refused with
  ``InvalidInput`` instead of being answered by vector alone.
- memvault keeps one memory per text and scope: saving a text the scope already holds is refused
  (``InvalidInput``) and nothing of that ``save`` call is kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from memvault.async_memory import AsyncMemory
from memvault.errors import InvalidConfig, InvalidInput, MissingScope
from memvault.integrations.scoping import ScopeBinding, equals
from memvault.lru import ByteLRU, text_size
from memvault.memory import Memory
from memvault.validation import Scope

try:
    from crewai.memory.types import MemoryRecord, ScopeInfo
except ImportError as missing:  # pragma: no cover - tested in its own environment
    raise ImportError(
        "memvault.integrations.crewai needs CrewAI, which installs in an environment of its"
        " own (it pins mcp<2): pip install 'memvault[local]' crewai"
    ) from missing

__all__ = ["MemvaultEmbedder", "MemvaultStorage", "PathRule"]

PathRule = Callable[[str], Mapping[str, str]]
"""A CrewAI scope path -> some of ``user_id``, ``agent_id``, ``run_id`` (never wider)."""

ID_FIELD = "crewai_id"
SCOPE_FIELD = "crewai_scope"
DEPTH_FIELD = "crewai_depth"
SEGMENT_FIELD = "crewai_path.{}"
CATEGORIES_FIELD = "crewai_categories"
IMPORTANCE_FIELD = "crewai_importance"
SOURCE_FIELD = "crewai_source"
PRIVATE_FIELD = "crewai_private"
META_PREFIX = "meta."
MAX_DEPTH = 64  # segments of a scope path
MAX_CACHE_BYTES = 64 * 1024 * 1024
PAGE = 1000
MAX_SCAN = 10_000
MAX_SEARCH = 1000  # memvault's largest top_k
IN_CHUNK = 500  # ids per ``in`` condition (memvault allows 1,000 conditions)


def _sync(memory: Memory | AsyncMemory) -> Memory:
    return memory.sync if isinstance(memory, AsyncMemory) else memory


def _vector_key(vector: Sequence[float] | np.ndarray[Any, Any]) -> bytes:
    """The identity of a vector as float32 (CrewAI hands back what ``tolist`` gave it)."""
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1 or array.size == 0:
        raise InvalidInput("a query embedding must be a non-empty list of numbers")
    return hashlib.blake2b(array.tobytes(), digest_size=32).digest()


class MemvaultEmbedder:
    """memvault's embedding model as CrewAI's embedder; remembers the text of what it embeds.

    CrewAI calls it with a list of texts and gets a list of vectors; ``text_of`` answers the text
    a vector was made from (the latest ``max_entries``), which ``MemvaultStorage.search`` needs
    for memvault's hybrid search.
    """

    def __init__(self, memory: Memory | AsyncMemory, *, max_entries: int = 4096) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise InvalidConfig("cache_entries must be a positive integer")
        self.memory = _sync(memory)
        self._texts: ByteLRU[bytes, str] = ByteLRU(
            max_bytes=MAX_CACHE_BYTES, max_entries=max_entries, size=text_size
        )

    def __call__(
        self, input: list[str]
    ) -> list[list[float]]:  # CrewAI's (and Chroma's) parameter name
        texts = [str(text) for text in input]
        if not texts:
            return []
        vectors = self.memory.embedder.embed_batch(texts)
        out: list[list[float]] = []
        for text, vector in zip(texts, vectors, strict=True):
            values = np.asarray(vector, dtype=np.float32).tolist()
            self._texts.put(_vector_key(values), text)
            out.append(values)
        return out

    def text_of(self, vector: Sequence[float]) -> str:
        """The text ``vector`` was made from; ``InvalidInput`` for a vector not made here."""
        text = self._texts.get(_vector_key(vector))
        if text is None:
            raise InvalidInput(
                "this query embedding was not made by the storage's embedder (or has left its"
                " cache): give CrewAI's Memory embedder=storage.embedder, so memvault can search"
                " by the query's words and meaning"
            )
        return text


class MemvaultStorage:
    """CrewAI's ``StorageBackend`` over memvault: records are memories of one bound scope."""

    def __init__(
        self,
        memory: Memory | AsyncMemory,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        scope: PathRule | None = None,
        cache_entries: int = 4096,
        max_scan: int = MAX_SCAN,
    ) -> None:
        if user_id is None and agent_id is None and run_id is None:
            raise InvalidConfig(
                "MemvaultStorage needs a scope: bind it (user_id=, agent_id=, run_id=);"
                " scope= may only narrow it"
            )
        self.memory = _sync(memory)
        self._binding: ScopeBinding[str] = ScopeBinding(
            user_id=user_id, agent_id=agent_id, run_id=run_id, rule=scope, owner="MemvaultStorage"
        )
        bound = self._binding.bound_scope
        assert bound is not None  # at least one id is bound (checked above)
        self.bound_scope: Scope = bound
        self.embedder = MemvaultEmbedder(self.memory, max_entries=cache_entries)
        self.max_scan = max_scan
        # save's duplicate check and rollback, update's read-then-write: one at a time.
        self._writes = threading.RLock()

    # --- scopes -------------------------------------------------------------------------------

    def scope_of(self, path: str | None) -> Scope:
        """The memvault scope of a record at CrewAI's ``path`` (bound ids plus the rule's)."""
        return self._binding.scope_of(_normalize(path))

    def _read_scope(self, prefix: str | None) -> Scope:
        """Where records under ``prefix`` live: the rule's scope of it, else the bound scope."""
        segments = _segments(prefix)
        if not segments or self._binding.rule is None:
            return self.bound_scope
        try:
            return self.scope_of(prefix)
        except MissingScope:
            return self.bound_scope  # a prefix the rule cannot map: the whole bound scope

    def _ids(self, scope: Scope) -> dict[str, str | None]:
        return {"user_id": scope.user_id, "agent_id": scope.agent_id, "run_id": scope.run_id}

    # --- writes -------------------------------------------------------------------------------

    def save(self, records: list[MemoryRecord]) -> None:
        """Store each record as a memory of its scope; all or nothing."""
        items = []
        for record in records:
            ids = self._ids(self.scope_of(record.scope))
            items.append(
                {
                    **ids,
                    "messages": record.content,
                    "metadata": _metadata(record),
                    "importance": record.importance,
                    # CrewAI's own time (naive UTC), so the record it holds is the one kept.
                    "created_at": _aware(record.created_at).isoformat(),
                    "infer": False,
                }
            )
        if not items:
            return
        with self._writes:
            results = self.memory.add_many(items)["results"]
            refused = [r for r in results if r["event"] != "ADD"]
            if refused:
                for result in results:
                    if result["event"] == "ADD":
                        self.memory.delete(result["id"])
                raise InvalidInput(
                    "another memory of this scope already holds this text (memvault keeps one"
                    " memory per text and scope); nothing of this save was kept"
                )

    def update(self, record: MemoryRecord) -> None:
        """Replace the record with the same id (text, scope path, categories, metadata)."""
        with self._writes:
            found = self._find(record.id)
            if found is None:
                raise InvalidInput("no CrewAI record with this id in the storage's scope")
            target = self.scope_of(record.scope)
            if self._ids(target) != {f: found[f] for f in ("user_id", "agent_id", "run_id")}:
                raise InvalidInput(
                    "the record's new scope path maps to another memvault scope: delete it and"
                    " save it again instead"
                )
            text = None if found["memory"] == record.content else record.content
            self.memory.update(found["id"], text, _metadata(record))

    def delete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: datetime | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        """Delete the records that match every given criterion; how many were deleted."""
        if record_ids is not None and not record_ids:
            return 0
        conditions = _conditions(scope_prefix, categories, metadata_filter)
        if older_than is not None:
            conditions.append({"created_at": {"lt": _aware(older_than).isoformat()}})
        deleted = 0
        with self._writes:
            chunks: list[list[str] | None] = (
                [record_ids[i : i + IN_CHUNK] for i in range(0, len(record_ids), IN_CHUNK)]
                if record_ids
                else [None]
            )
            for chunk in chunks:
                wanted = conditions + ([{ID_FIELD: {"in": list(chunk)}}] if chunk else [])
                deleted += self._delete_matching(self._read_scope(scope_prefix), wanted)
        return deleted

    def reset(self, scope_prefix: str | None = None) -> None:
        """Delete every CrewAI record under ``scope_prefix`` (None: all of the bound scope)."""
        with self._writes:
            self._delete_matching(self._read_scope(scope_prefix), _conditions(scope_prefix))

    def _delete_matching(self, scope: Scope, conditions: list[dict[str, Any]]) -> int:
        deleted = 0
        while True:
            page = self.memory.get_all(
                user_id=scope.user_id,
                agent_id=scope.agent_id,
                run_id=scope.run_id,
                filters={"AND": conditions},
                top_k=PAGE,
            )["results"]
            for memory in page:
                self.memory.delete(memory["id"])
            deleted += len(page)
            if len(page) < PAGE:
                return deleted

    async def asave(self, records: list[MemoryRecord]) -> None:
        await asyncio.to_thread(self.save, records)

    async def adelete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: datetime | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        return await asyncio.to_thread(
            self.delete, scope_prefix, categories, record_ids, older_than, metadata_filter
        )

    # --- reads --------------------------------------------------------------------------------

    def search(
        self,
        query_embedding: list[float],
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        metadata_filter: dict[str, Any] | None = None,
        limit: int = 10,
        min_score: float = 0.0,
    ) -> list[tuple[MemoryRecord, float]]:
        """memvault's hybrid search with the text ``query_embedding`` was made from (the best
        ``limit`` hits, at most 1,000: CrewAI asks for a multiple of its own limit)."""
        query = self.embedder.text_of(query_embedding)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise InvalidInput("limit must be an integer")
        if limit < 1:
            return []
        scope = self._read_scope(scope_prefix)
        hits = self.memory.search(
            query,
            user_id=scope.user_id,
            agent_id=scope.agent_id,
            run_id=scope.run_id,
            filters={"AND": _conditions(scope_prefix, categories, metadata_filter)},
            top_k=min(limit, MAX_SEARCH),
            threshold=min_score if min_score > 0 else None,
        )["results"]
        return [(_record(hit), float(hit["score"])) for hit in hits]

    async def asearch(
        self,
        query_embedding: list[float],
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        metadata_filter: dict[str, Any] | None = None,
        limit: int = 10,
        min_score: float = 0.0,
    ) -> list[tuple[MemoryRecord, float]]:
        return await asyncio.to_thread(
            self.search,
            query_embedding,
            scope_prefix,
            categories,
            metadata_filter,
            limit,
            min_score,
        )

    def _find(self, record_id: str) -> dict[str, Any] | None:
        if not isinstance(record_id, str):
            raise InvalidInput("a record id is a string")
        scope = self.bound_scope
        found = self.memory.get_all(
            user_id=scope.user_id,
            agent_id=scope.agent_id,
            run_id=scope.run_id,
            filters={"AND": [*_conditions(None), equals(ID_FIELD, record_id)]},
            top_k=1,
        )["results"]
        return found[0] if found else None

    def get_record(self, record_id: str) -> MemoryRecord | None:
        found = self._find(record_id)
        return _record(found) if found is not None else None

    def list_records(
        self, scope_prefix: str | None = None, limit: int = 200, offset: int = 0
    ) -> list[MemoryRecord]:
        """Records under ``scope_prefix``, newest first."""
        scope = self._read_scope(scope_prefix)
        page = self.memory.get_all(
            user_id=scope.user_id,
            agent_id=scope.agent_id,
            run_id=scope.run_id,
            filters={"AND": _conditions(scope_prefix)},
            top_k=limit,
            offset=offset,
        )["results"]
        return [_record(memory) for memory in page]

    def count(self, scope_prefix: str | None = None) -> int:
        scope = self._read_scope(scope_prefix)
        return self.memory.count(
            user_id=scope.user_id,
            agent_id=scope.agent_id,
            run_id=scope.run_id,
            filters={"AND": _conditions(scope_prefix)},
        )

    def _scan(self, scope_prefix: str | None) -> Iterator[dict[str, Any]]:
        """Up to ``max_scan`` records under ``scope_prefix`` (listing has no index to ask)."""
        scope = self._read_scope(scope_prefix)
        offset = 0
        while offset < self.max_scan:
            page = self.memory.get_all(
                user_id=scope.user_id,
                agent_id=scope.agent_id,
                run_id=scope.run_id,
                filters={"AND": _conditions(scope_prefix)},
                top_k=min(PAGE, self.max_scan - offset),
                offset=offset,
            )["results"]
            yield from page
            if len(page) < PAGE:
                return
            offset += len(page)

    def list_scopes(self, parent: str = "/") -> list[str]:
        """The immediate child scope paths under ``parent``."""
        base = _segments(parent)
        children = set()
        for memory in self._scan(parent):
            segments = _segments(memory["metadata"][SCOPE_FIELD])
            if len(segments) > len(base):
                children.add("/" + "/".join(segments[: len(base) + 1]))
        return sorted(children)

    def list_categories(self, scope_prefix: str | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for memory in self._scan(scope_prefix):
            for category in memory["metadata"].get(CATEGORIES_FIELD) or []:
                counts[category] = counts.get(category, 0) + 1
        return counts

    def get_scope_info(self, scope: str) -> ScopeInfo:
        path = _normalize(scope)
        base = _segments(path)
        count = 0
        categories: set[str] = set()
        children: set[str] = set()
        oldest: datetime | None = None
        newest: datetime | None = None
        for memory in self._scan(path):
            count += 1
            categories.update(memory["metadata"].get(CATEGORIES_FIELD) or [])
            segments = _segments(memory["metadata"][SCOPE_FIELD])
            if len(segments) > len(base):
                children.add("/" + "/".join(segments[: len(base) + 1]))
            created = _naive(memory["created_at"])
            oldest = created if oldest is None else min(oldest, created)
            newest = created if newest is None else max(newest, created)
        return ScopeInfo(
            path=path,
            record_count=count,
            categories=sorted(categories),
            oldest_record=oldest,
            newest_record=newest,
            child_scopes=sorted(children),
        )


# --- mapping --------------------------------------------------------------------------------


def _segments(path: str | None) -> list[str]:
    if path is not None and not isinstance(path, str):
        raise InvalidInput("a CrewAI scope path is a string")
    segments = [part for part in (path or "").split("/") if part]
    if len(segments) > MAX_DEPTH:
        raise InvalidInput(f"a CrewAI scope path has at most {MAX_DEPTH} segments")
    return segments


def _normalize(path: str | None) -> str:
    """CrewAI's form of a path: a leading slash, no empty segments, no trailing slash."""
    return "/" + "/".join(_segments(path))


def _conditions(
    scope_prefix: str | None,
    categories: Sequence[str] | None = None,
    metadata_filter: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Filters for CrewAI records under ``scope_prefix`` (whole segments), in any of
    ``categories``, whose metadata equals ``metadata_filter``. Values stay values."""
    segments = _segments(scope_prefix)
    # A record of the adapter's has its id, path and depth (a memory added through memvault's
    # API with one of those keys is not one).
    conditions: list[dict[str, Any]] = [
        {ID_FIELD: "*"},
        {SCOPE_FIELD: "*"},
        {DEPTH_FIELD: {"gte": len(segments)}},
    ]
    conditions += [equals(SEGMENT_FIELD.format(i), part) for i, part in enumerate(segments)]
    if categories:
        if isinstance(categories, str):
            raise InvalidInput("categories is a list of strings")
        conditions.append({"OR": [{CATEGORIES_FIELD: {"contains": c}} for c in categories]})
    for key, value in (metadata_filter or {}).items():
        conditions.append(equals(META_PREFIX + str(key), value))
    return conditions


def _metadata(record: MemoryRecord) -> dict[str, Any]:
    segments = _segments(record.scope)
    metadata: dict[str, Any] = {META_PREFIX + str(k): v for k, v in record.metadata.items()}
    metadata.update({SEGMENT_FIELD.format(i): part for i, part in enumerate(segments)})
    metadata[DEPTH_FIELD] = len(segments)
    metadata[SCOPE_FIELD] = "/" + "/".join(segments)
    metadata[ID_FIELD] = str(record.id)
    metadata[CATEGORIES_FIELD] = [str(c) for c in record.categories]
    metadata[IMPORTANCE_FIELD] = float(record.importance)
    metadata[PRIVATE_FIELD] = bool(record.private)
    if record.source is not None:
        metadata[SOURCE_FIELD] = str(record.source)
    return metadata


def _aware(moment: datetime) -> datetime:
    """CrewAI's times are naive UTC (``datetime.utcnow``)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _naive(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(UTC).replace(tzinfo=None)


def _record(memory: Mapping[str, Any]) -> MemoryRecord:
    metadata = memory["metadata"]
    start = len(META_PREFIX)
    created = _naive(memory["created_at"])
    updated = memory.get("updated_at")
    return MemoryRecord(
        id=str(metadata[ID_FIELD]),
        content=memory["memory"],
        scope=str(metadata[SCOPE_FIELD]),
        categories=list(metadata.get(CATEGORIES_FIELD) or []),
        metadata={k[start:]: v for k, v in metadata.items() if k.startswith(META_PREFIX)},
        importance=float(metadata.get(IMPORTANCE_FIELD, 0.5)),
        created_at=created,
        last_accessed=_naive(updated) if updated else created,
        source=metadata.get(SOURCE_FIELD),
        private=bool(metadata.get(PRIVATE_FIELD, False)),
    )
