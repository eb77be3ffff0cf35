"""The row types every store reads and writes: sealed fields stay sealed, ids stay ids.

They belong to the storage seam, not to a backend: the core builds them, a backend maps them to its
tables. ``rowid`` is a store's own insertion order (an SQLite rowid, a Postgres identity): it orders
lists newest first and is never shown to callers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, field
from typing import Any

from memvault.security.crypto import SEAL_VERSION

__all__ = [
    "RULE_DEFAULTS",
    "ApiKeyRow",
    "AuditRow",
    "DeliveryRow",
    "ExportRow",
    "HistoryRow",
    "Imported",
    "IndexTerms",
    "JobRow",
    "KeyStoreStatus",
    "LinkedRow",
    "MemoryRow",
    "OwnerCount",
    "ScopeCount",
    "Snapshot",
    "StoreStatus",
    "VectorRow",
    "WebhookRow",
    "WrappedKey",
    "namespace_rules",
    "rules_values",
    "values",
]

# A namespace's rules, in the order of the namespace_settings columns, with their defaults.
RULE_DEFAULTS: dict[str, Any] = {
    "secret_policy": "redact",
    "default_ttl_seconds": None,
    "extraction_instructions": None,
    "reconciliation_instructions": None,
}


def namespace_rules(row: Sequence[Any] | None) -> dict[str, Any]:
    """The rules of a namespace_settings row (its columns after ``namespace``); none: defaults."""
    if row is None:
        return dict(RULE_DEFAULTS)
    return dict(zip(RULE_DEFAULTS, row, strict=True))


def rules_values(rules: Mapping[str, Any]) -> tuple[Any, ...]:
    """The column values of ``rules`` (every rule of ``RULE_DEFAULTS``), in column order."""
    return tuple(rules[name] for name in RULE_DEFAULTS)


@dataclass(slots=True)
class MemoryRow:
    """One stored memory, its secret fields still sealed."""

    rowid: int | None
    id: str
    namespace: str
    scope_id: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    actor_id: str | None
    role: str | None
    memory_type: str
    hash: str
    text_box: bytes
    metadata_box: bytes
    vector_box: bytes
    context_box: bytes
    created_at: str
    updated_at: str
    expires_at: str | None
    importance: float | None
    access_count: int = 0
    last_accessed_at: str | None = None
    seal_version: int = SEAL_VERSION  # the associated-data format of the sealed fields
    # The memory's entities (``core/entities.py``): a sealed JSON list of [key, name] pairs;
    # None until they were extracted (a memory written before entities existed).
    entities_box: bytes | None = None


@dataclass(slots=True)
class HistoryRow:
    """One change to a memory; the old and new texts sealed with the memory's key."""

    id: str
    memory_id: str
    namespace: str
    scope_id: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    event: str
    old_box: bytes | None
    new_box: bytes | None
    actor_id: str | None
    role: str | None
    created_at: str
    seal_version: int = SEAL_VERSION
    meta_box: bytes | None = None  # sealed JSON about the event: an inferred change's provenance


@dataclass(frozen=True, slots=True)
class IndexTerms:
    """What the keyword index holds of a memory: keyed token hashes, space-separated.

    ``entities``: the keyed hashes of its entities (``core/entities.py``), space-separated; the
    store keeps its entity index (``memory_entities``) equal to them."""

    body: str
    context: str
    entities: str = ""


@dataclass(frozen=True, slots=True)
class LinkedRow:
    """A live memory an entity link reaches (``MemoryStore.link_rows``): who owns it."""

    rowid: int
    memory_id: str
    scope_id: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None


@dataclass(frozen=True, slots=True)
class OwnerCount:
    """Live memories of one owner combination (``MemoryStore.owner_counts``): owner columns are
    stored in the clear, so this needs no key."""

    user_id: str | None
    agent_id: str | None
    run_id: str | None
    memories: int
    first_created_at: str
    last_updated_at: str


@dataclass(frozen=True, slots=True)
class VectorRow:
    """What a key scope's in-process index is built from (``MemoryStore.scope_vectors``)."""

    id: str
    namespace: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    seal_version: int
    expires_at: str | None
    vector_box: bytes
    body: str
    context: str


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    """An API key as stored: the secret only as its keyed hash."""

    id: str
    namespace: str
    role: str
    name: str | None
    user_id: str | None
    secret_hash: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One entry of the audit chain; ``memory_ids`` is a JSON array."""

    seq: int
    at: str
    namespace: str | None
    key_id: str | None
    action: str
    user_id: str | None
    memory_ids: str
    source: str | None
    outcome: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key as the key store holds it: wrapped by master key version ``kek_version``."""

    kek_version: int
    wrapped: bytes


# (user_id, agent_id, memory_type, live memories): one group of ``DataStore.scope_stats``.
ScopeCount = tuple[str | None, str | None, str, int]


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """What ``memvault db status`` shows of a store."""

    backend: str
    location: str
    schema_version: str
    migrations: tuple[str, ...]
    memories: int
    history_events: int
    bytes_used: int | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a store wrote for a backup (``memvault backup``): the files (names in the backup
    directory) and, as of the snapshot itself, the row count of each table and the migrations
    applied (empty for a key store, which has none)."""

    files: tuple[str, ...]
    tables: dict[str, int]
    migrations: tuple[str, ...]


def values(row: ApiKeyRow | AuditRow) -> tuple[Any, ...]:
    """A row's fields in declaration order: the column order of its table in every backend."""
    return astuple(row)


@dataclass(frozen=True, slots=True)
class KeyStoreStatus:
    """What ``memvault db status`` shows of a key store."""

    location: str
    data_keys: int
    master_key_versions: int


# One raw row of a table as ``Exportable`` moves it: column name -> value (bytes stay sealed).
ExportRow = dict[str, Any]


@dataclass(slots=True)
class Imported:
    """What ``Exportable.import_batch`` did: rows written, and each row it did not write with the
    row already held under its key (None: another unique constraint refused it)."""

    inserted: int = 0
    present: list[tuple[ExportRow, ExportRow | None]] = field(default_factory=list)


# The states of a queued job: ``queued`` (waiting, maybe until ``run_after``), ``running`` (claimed
# by ``lease_owner`` until ``lease_until``), ``done``, ``failed`` (kept by a retry that is due
# later: not used as a resting state by the worker) and ``dead`` (out of attempts).
JOB_STATUSES = ("queued", "running", "done", "failed", "dead")


@dataclass(slots=True)
class JobRow:
    """One job of the durable queue; its request and result sealed with the owner's data key
    (bound to the job id and namespace), so an erase crypto-shreds what still waits."""

    id: str
    namespace: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    scope_id: str
    kind: str
    status: str
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_until: str | None
    run_after: str
    payload_box: bytes
    result_box: bytes | None
    error_code: str | None
    created_at: str
    updated_at: str


# The states of a webhook delivery of the outbox: ``pending`` (waiting, maybe until
# ``run_after``), ``sending`` (claimed by ``lease_owner`` until ``lease_until``), ``delivered``
# and ``dead`` (out of attempts, or its webhook removed).
DELIVERY_STATUSES = ("pending", "sending", "delivered", "dead")


@dataclass(slots=True)
class WebhookRow:
    """A namespace's webhook: where events go, whether they carry memory text, and the signing
    secret sealed with the system's webhook key (never stored in the clear)."""

    namespace: str
    url: str
    include_text: bool
    secret_box: bytes
    created_at: str
    updated_at: str


@dataclass(slots=True)
class DeliveryRow:
    """One event of the webhook outbox, written in the transaction of the change it reports.

    ``text_box``: the memory's text, only when the namespace's webhook includes text, sealed with
    the owner's data key under ``scope_id`` (an erase or a key rotation shreds it)."""

    id: str
    namespace: str
    event: str
    memory_id: str | None
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    scope_id: str | None
    text_box: bytes | None
    status: str
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_until: str | None
    run_after: str
    last_error: str | None
    last_status: int | None
    created_at: str
    updated_at: str

    def columns(self) -> tuple[Any, ...]:
        """The fields in the column order of ``webhook_outbox`` (``astuple`` copies deeply:
        slower on the write path, for nothing)."""
        return (
            self.id,
            self.namespace,
            self.event,
            self.memory_id,
            self.user_id,
            self.agent_id,
            self.run_id,
            self.scope_id,
            self.text_box,
            self.status,
            self.attempts,
            self.max_attempts,
            self.lease_owner,
            self.lease_until,
            self.run_after,
            self.last_error,
            self.last_status,
            self.created_at,
            self.updated_at,
        )
