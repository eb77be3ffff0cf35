"""Bodies of the mem0-compatible routes: mem0's options on top of memvault's request shapes.

Options memvault cannot honour are declared (so the answer names them, see ``mem0_options``)
instead of falling to pydantic's generic "extra inputs are not permitted".
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from memvault.server.schemas import AddRequest, Id, ListRequest, SearchRequest, Strict

__all__ = [
    "BatchDelete",
    "BatchDeleteItem",
    "BatchResult",
    "BatchUpdate",
    "BatchUpdateItem",
    "EntityItem",
    "EntityPage",
    "Mem0AddRequest",
    "Mem0Fields",
    "Mem0ListBody",
    "Mem0SearchRequest",
    "PartialMemory",
]

Timestamp = StrictInt | StrictFloat | StrictStr
# Field names of mem0's ``fields`` option: at most every field once, each a short name.
Fields = list[StrictStr] | None
MAX_BATCH = 1000


class Mem0Fields(Strict):
    fields: Fields = Field(None, max_length=32, description="Return only these fields (and id).")


class Mem0AddRequest(AddRequest):
    filters: dict[str, Any] | None = Field(
        None, description="mem0 2.x's place for the scope: user_id, agent_id, run_id."
    )
    timestamp: Timestamp | None = Field(
        None, description="When the messages were sent: Unix seconds or ISO 8601."
    )
    async_mode: StrictBool | None = None
    version: StrictStr | None = None
    output_format: StrictStr | None = None
    # Refused by name (see docs/rest.md): memvault's extraction takes no per-call prompt parts.
    custom_instructions: Any = None
    agent_custom_instructions: Any = None
    custom_categories: Any = None
    structured_data_schema: Any = None


class Mem0SearchRequest(SearchRequest):
    fields: Fields = Field(None, max_length=32)
    rerank: StrictBool | None = None


class Mem0ListBody(Strict):
    filters: dict[str, Any] | None = None
    page: StrictInt | None = Field(None, ge=1, le=100_000)
    page_size: StrictInt | None = Field(None, ge=1, le=1000)
    fields: Fields = Field(None, max_length=32)

    def as_list_request(self, page: int | None, page_size: int | None) -> ListRequest:
        return ListRequest(
            filters=self.filters,
            page=page or self.page or 1,
            page_size=page_size or self.page_size or 100,
        )


class PartialMemory(BaseModel):
    """A memory as ``MemoryItem``, cut down to the fields asked for (``id`` always)."""

    id: str
    memory: str | None = None
    metadata: dict[str, Any] | None = None
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    actor_id: str | None = None
    role: str | None = None
    memory_type: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    expires_at: str | None = None
    importance: float | None = None
    access_count: int | None = None
    last_accessed_at: str | None = None
    score: float | None = None
    explain: dict[str, float | int | str | None] | None = None


class PartialResults(BaseModel):
    results: list[PartialMemory]


class PartialPage(BaseModel):
    count: int
    next: str | None
    previous: str | None
    results: list[PartialMemory]


class EntityItem(BaseModel):
    id: str
    name: str
    type: str = Field(description="user, agent or run")
    total_memories: int
    created_at: str
    updated_at: str


class EntityPage(BaseModel):
    count: int
    next: str | None = None
    previous: str | None = None
    results: list[EntityItem]


class BatchUpdateItem(Strict):
    memory_id: Id
    text: StrictStr | None = None
    metadata: dict[str, Any] | None = None


class BatchUpdate(Strict):
    memories: list[BatchUpdateItem] = Field(min_length=1, max_length=MAX_BATCH)


class BatchDeleteItem(Strict):
    memory_id: Id


class BatchDelete(Strict):
    memories: list[BatchDeleteItem] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResult(BaseModel):
    message: str
    ids: list[str]
