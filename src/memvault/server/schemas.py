"""Request and response bodies of the REST API (mem0's shapes), with unknown fields refused."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from memvault.core.rules import MAX_INSTRUCTIONS_CHARS, MAX_TTL_SECONDS

__all__ = [
    "AddRequest",
    "AddResult",
    "BatchAddRequest",
    "ErrorBody",
    "HistoryEvent",
    "JobAccepted",
    "JobItem",
    "JobList",
    "KeyCreate",
    "KeyCreated",
    "KeyInfo",
    "ListRequest",
    "MemoryItem",
    "MemoryPage",
    "Message",
    "NamedEntities",
    "NamedEntity",
    "NamespaceCreate",
    "NamespaceInfo",
    "RelatedMemory",
    "RelatedResults",
    "SearchRequest",
    "SearchResults",
    "UpdateRequest",
    "WebhookConfig",
    "WebhookDelivery",
    "WebhookDeliveryList",
    "WebhookInfo",
]

Id = StrictStr
Number = StrictInt | StrictFloat


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(Strict):
    role: Literal["user", "assistant", "system", "tool"] = "user"
    content: StrictStr
    name: StrictStr | None = None


class ScopeFields(Strict):
    user_id: Id | None = None
    agent_id: Id | None = None
    run_id: Id | None = None


class AddRequest(ScopeFields):
    messages: StrictStr | list[Message] = Field(description="A text, or mem0's list of messages.")
    metadata: dict[str, Any] | None = None
    memory_type: Literal["semantic", "episodic", "procedural"] | None = None
    expiration_date: StrictStr | None = Field(None, description="ISO 8601 date or datetime.")
    infer: StrictBool = False
    actor_id: Id | None = None
    importance: Number | None = None

    def as_item(self) -> dict[str, Any]:
        item = self.model_dump(exclude_none=True)
        if isinstance(self.messages, list):
            item["messages"] = [m.model_dump(exclude_none=True) for m in self.messages]
        return item


class BatchAddRequest(Strict):
    items: list[AddRequest] = Field(min_length=1, max_length=1000)


class SearchRequest(ScopeFields):
    query: StrictStr
    filters: dict[str, Any] | None = None
    top_k: StrictInt = Field(10, ge=1, le=1000)
    threshold: Number | None = None
    explain: StrictBool = False
    mode: Literal["hybrid", "vector", "bm25"] = "hybrid"


class ListRequest(ScopeFields):
    filters: dict[str, Any] | None = None
    page: StrictInt = Field(1, ge=1, le=100_000)
    page_size: StrictInt = Field(100, ge=1, le=1000)


class UpdateRequest(Strict):
    text: StrictStr | None = None
    metadata: dict[str, Any] | None = None
    # mem0's client may send it; refused by name (``unsupported_option``), never ignored.
    timestamp: StrictInt | StrictFloat | StrictStr | None = None


class MemoryItem(BaseModel):
    id: str
    memory: str
    metadata: dict[str, Any]
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    actor_id: str | None
    role: str | None
    memory_type: str
    created_at: str
    updated_at: str
    expires_at: str | None
    importance: float | None
    access_count: int
    last_accessed_at: str | None
    score: float | None = None
    explain: dict[str, float | int | str | None] | None = None


class InferenceError(BaseModel):
    code: str
    message: str


class AddResult(BaseModel):
    id: str
    memory: str
    event: Literal["ADD", "NONE"]
    redactions: list[str] | None = Field(
        None, description="Kinds of secrets replaced by [REDACTED:kind] before storing."
    )
    inferred: bool | None = Field(
        None,
        description="infer=True run inline: whether the LLM extracted this memory (false: the"
        " LLM failed and the messages were stored as they are; see error).",
    )
    error: InferenceError | None = Field(
        None, description="Why inference failed (llm_unavailable, llm_bad_output)."
    )


class AddResults(BaseModel):
    results: list[AddResult]


class JobAccepted(BaseModel):
    """The answer (202) to an ``infer=True`` add when the queue is on: poll GET /v1/jobs/{id}."""

    job_id: str
    status: Literal["queued"]


class JobItem(BaseModel):
    id: str
    kind: str
    status: Literal["queued", "running", "done", "failed", "dead"]
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    attempts: int
    max_attempts: int
    error_code: str | None = Field(None, description="Why the last attempt failed (a code).")
    result: dict[str, Any] | None = Field(None, description="What the job did, once done.")
    created_at: str
    updated_at: str


class JobList(BaseModel):
    results: list[JobItem]


class SearchResults(BaseModel):
    results: list[MemoryItem]


class RelatedMemory(MemoryItem):
    """A memory sharing entities with another: ``score`` is the share of that memory's entity
    weight it shares (rare entities weigh more), ``entities`` the shared names."""

    score: float = Field(ge=0, le=1)
    entities: list[str]


class RelatedResults(BaseModel):
    results: list[RelatedMemory]


class NamedEntity(BaseModel):
    """An entity (a person, place, thing, date, title or amount) and how many live memories of
    the scope name it."""

    name: str
    memories: int = Field(ge=1)


class NamedEntities(BaseModel):
    results: list[NamedEntity]


class MemoryPage(BaseModel):
    count: int
    next: str | None
    previous: str | None
    results: list[MemoryItem]


class HistoryEvent(BaseModel):
    id: str
    memory_id: str
    event: Literal["ADD", "UPDATE", "DELETE", "NONE"]
    old_memory: str | None
    new_memory: str | None
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    actor_id: str | None
    role: str | None
    created_at: str
    is_deleted: bool


class Message_(BaseModel):
    message: str


class UpdateResult(BaseModel):
    message: str
    result: MemoryItem


class DeleteResult(BaseModel):
    message: str
    id: str


class DeleteAllResult(BaseModel):
    message: str
    deleted: int


class EraseResult(BaseModel):
    user_id: str
    namespace: str
    memories_deleted: int
    history_deleted: int
    jobs_deleted: int = 0
    data_key_destroyed: bool


class AuditRecord(BaseModel):
    seq: int
    at: str
    namespace: str | None
    key_id: str | None
    action: str
    user_id: str | None
    memory_ids: list[str]
    source: str | None
    outcome: str
    hash: str


class NamespaceRules(BaseModel):
    secret_policy: Literal["redact", "reject", "allow"]
    default_ttl_seconds: float | None
    extraction_instructions: str | None = None
    reconciliation_instructions: str | None = None


class NamespaceRulesUpdate(Strict):
    secret_policy: Literal["redact", "reject", "allow"] | None = None
    default_ttl_seconds: Number | None = Field(None, gt=0, le=MAX_TTL_SECONDS)
    clear_default_ttl: StrictBool = False
    extraction_instructions: StrictStr | None = Field(
        None,
        max_length=MAX_INSTRUCTIONS_CHARS,
        description='Added to the fact-extraction prompt of this namespace; "" removes them.',
    )
    reconciliation_instructions: StrictStr | None = Field(
        None,
        max_length=MAX_INSTRUCTIONS_CHARS,
        description='Added to the reconciliation prompt of this namespace; "" removes them.',
    )


class RotateResult(BaseModel):
    user_id: str
    namespace: str
    memories_rekeyed: int
    history_rekeyed: int
    jobs_rekeyed: int
    key_scope: str


class KeyCreate(Strict):
    role: Literal["admin", "write", "read"]
    user_id: Id | None = None
    name: StrictStr | None = Field(None, max_length=200)
    expires_in_days: Number | None = Field(None, gt=0, le=3650)


class KeyInfo(BaseModel):
    id: str
    namespace: str
    role: str
    name: str | None
    user_id: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None


class KeyCreated(BaseModel):
    key: str = Field(description="Shown once: only its keyed hash is stored.")
    info: KeyInfo


class NamespaceCreate(Strict):
    name: StrictStr


class NamespaceInfo(BaseModel):
    name: str
    memories: int
    keys: int


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
    detail: str = Field(description="The message again, where mem0's client looks for it.")


class WebhookConfig(Strict):
    url: StrictStr = Field(
        max_length=2048,
        description="Where events are POSTed: https (http only if the operator allows it), a"
        " destination the operator's allow-list permits.",
    )
    include_text: StrictBool = Field(
        False, description="Add the memory's text to memory.added and memory.updated events."
    )


class WebhookRotation(Strict):
    overlap_seconds: StrictInt = Field(
        0,
        ge=0,
        le=604800,
        description="How long the old secret goes on signing beside the new one (a second"
        " v1= in X-Memvault-Signature), up to 7 days; 0: it signs nothing from now on.",
    )


class WebhookInfo(BaseModel):
    url: str
    include_text: bool
    created_at: str
    updated_at: str
    previous_secret_expires_at: str | None = Field(
        None,
        description="While a rotated secret still signs beside the new one: when it stops.",
    )
    secret: str | None = Field(
        None,
        description="The signing secret: only in the answer that made it (a new webhook, a"
        " rotation), never again.",
    )


class WebhookDelivery(BaseModel):
    id: str = Field(description="The event's id, also sent as X-Memvault-Delivery.")
    event: Literal["memory.added", "memory.updated", "memory.deleted", "user.erased"]
    memory_id: str | None
    user_id: str | None
    status: Literal["pending", "sending", "delivered", "dead"]
    attempts: int
    max_attempts: int
    next_attempt_at: str | None
    last_error: str | None = Field(None, description="Why the last attempt failed (a code).")
    last_status: int | None = Field(None, description="The receiver's last HTTP status.")
    created_at: str
    updated_at: str


class WebhookDeliveryList(BaseModel):
    results: list[WebhookDelivery]
