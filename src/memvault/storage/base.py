"""The storage seam: what the core asks of a store, as small typed protocols.

A backend (``storage/sqlite``, ``storage/postgres``) implements them with its own SQL; nothing
outside a backend's folder holds SQL or a driver object. Rows cross the seam as the types of
``storage.rows``, sealed: a store never sees plaintext, and never needs to.

- ``MemoryStore``: memories, history, scope versions, namespace settings; reads, plus
  ``transaction()``, which hands out a ``WriteTx`` owned by the store. Every change of one unit of
  work (an add batch, an update, an erase, a rotation batch) goes through one ``WriteTx`` and
  commits or rolls back as a whole.
- ``KeyStore``: wrapped data keys, their generations and the master key checks, kept apart from the
  data (``keys.db``; a Postgres schema or database of its own) so a data backup never holds keys.
- ``ApiKeyRecords`` and ``AuditRecords``: the API key table and the audit chain.
- ``WebhookStore``: each namespace's webhook and the outbox of its events (``core/webhooks.py``),
  claimed with a lease like jobs; ``WriteTx.insert_deliveries`` writes events in the transaction
  of the change they report.
- ``JobStore``: the durable job queue (``core/jobs.py``): claims with a lease, so several workers
  and nodes share one queue and a job whose worker died is taken again once its lease expires.

Concurrency contract. ``WriteTx.lock`` takes a lock on a name until the transaction ends: writers
lock their namespace (shared) and each key owner they write (exclusive), in sorted order, before
they read the owner's key generation; erase and rotation lock the owner, reset the namespace
(exclusive). SQLite's ``BEGIN IMMEDIATE`` already serialises every writer, so there it costs
nothing; Postgres uses transaction-scoped advisory locks. So a writer always seals with the
generation that holds when it commits, on one node or many.

Filters: ``parse_filter`` and the Python evaluator (``filters.compile_matcher``) are shared; each
backend decides how much of a filter runs inside its engine (SQLite: all of it, the metadata part
through a registered function; Postgres: the scope and expiry in SQL, the rest in Python). Both
honour ``max_filter_seconds`` with ``FilterTooExpensive``.

Errors: each backend turns its driver's errors into ``StorageError`` / ``StorageBusy`` with a
message of its own; driver text (which can carry row values) never reaches a caller or a log.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from memvault.errors import InvalidInput
from memvault.filters import FilterNode
from memvault.storage.rows import (
    ApiKeyRow,
    AuditRow,
    DeliveryRow,
    ExportRow,
    HistoryRow,
    Imported,
    IndexTerms,
    JobRow,
    KeyStoreStatus,
    LinkedRow,
    MemoryRow,
    OwnerCount,
    Snapshot,
    StoreStatus,
    VectorRow,
    WebhookRow,
    WrappedKey,
)
from memvault.validation import Scope

__all__ = [
    "DATA_TABLES",
    "KEY_TABLES",
    "ApiKeyRecords",
    "AuditRecords",
    "Cursor",
    "DataStore",
    "DedupKey",
    "Exportable",
    "JobStore",
    "KeyStore",
    "MemoryStore",
    "MetaDecryptor",
    "Owners",
    "Snapshotting",
    "WebhookStore",
    "WriteTx",
]

Owners = tuple[str | None, str | None, str | None]
# (user_id, agent_id, run_id, text hash): what makes two memories of one namespace duplicates.
DedupKey = tuple[str | None, str | None, str | None, str]
# scope_id, memory id, box, namespace, (user_id, agent_id, run_id), seal_version -> metadata JSON
MetaDecryptor = Callable[[str, str, bytes, str, Owners, int], str]


class WriteTx(Protocol):
    """One unit of work; the store commits it when the ``with`` block ends without error."""

    def lock(self, name: str, *, exclusive: bool = True) -> None:
        """Hold a lock on ``name`` (a namespace or a key owner) until the transaction ends."""
        ...

    def lock_all(self, names: Sequence[str]) -> None:
        """``lock`` (exclusive) on each of ``names`` in their order (Postgres: one round trip)."""
        ...

    # reads inside the transaction (see its own writes; on Postgres the rows read are locked)
    def get(self, namespace: str, memory_id: str) -> MemoryRow | None: ...

    def scope_rows(self, namespace: str, scope: Scope, *, limit: int) -> list[MemoryRow]:
        """Rows of ``scope`` (a query scope: unnamed owner columns unconstrained), newest first."""
        ...

    def recent_rows(self, namespace: str, scope: Scope, limit: int) -> list[MemoryRow]:
        """The last rows added to exactly ``scope`` (unnamed owner columns absent), newest first."""
        ...

    def recent_rows_many(
        self, namespace: str, scopes: Sequence[Scope], limit: int
    ) -> dict[Scope, list[MemoryRow]]:
        """``recent_rows`` of each of ``scopes`` (Postgres: a round trip per scope shape), for
        their texts: a backend may leave the metadata, vector and context boxes empty."""
        ...

    def find_duplicate(self, row: MemoryRow) -> str | None:
        """The id of a row of the same exact scope with the same text hash, if any."""
        ...

    def find_duplicates(self, namespace: str, keys: Sequence[DedupKey]) -> dict[DedupKey, str]:
        """``find_duplicate`` for many (user_id, agent_id, run_id, hash) at once: the id stored
        under each key that has one (Postgres: one query for an add batch)."""
        ...

    def rows_under_key(
        self, namespace: str, user_id: str, scope_id: str, limit: int
    ) -> list[MemoryRow]: ...

    def events_under_key(
        self, namespace: str, user_id: str, scope_id: str, limit: int
    ) -> list[HistoryRow]: ...

    def legacy_rows(self, after: int, limit: int) -> list[MemoryRow]:
        """Rows still in seal format 1, by ``rowid`` after ``after``."""
        ...

    def rows_without_entities(self, namespace: str, after: int, limit: int) -> list[MemoryRow]:
        """Rows of the namespace whose entities were never extracted (``entities_box`` NULL),
        by ``rowid`` after ``after`` (``memvault entities rebuild``)."""
        ...

    def set_entities(self, row: MemoryRow, hashes: str) -> None:
        """Store ``row.entities_box`` and its entity hashes (space-separated); the entity
        index follows in the same statement."""
        ...

    def legacy_events(self, after: str, limit: int) -> list[HistoryRow]:
        """History events still in seal format 1, by id after ``after``."""
        ...

    def legacy_key_names(self, namespace: str, kind: str, owner: str) -> set[str]: ...

    def legacy_name_shared(self, name: str, namespace: str, kind: str, owner: str) -> bool: ...

    # writes
    def insert(self, row: MemoryRow, terms: IndexTerms) -> None:
        """Store a new row (sets ``row.rowid``) and its keyword index entry."""
        ...

    def insert_many(self, rows: Sequence[tuple[MemoryRow, IndexTerms]]) -> None:
        """``insert`` for several rows at once (Postgres: one pipelined round trip)."""
        ...

    def add_history_many(self, events: Sequence[HistoryRow]) -> None: ...

    def rewrite(self, row: MemoryRow, terms: IndexTerms | None) -> None:
        """Store a changed row: its key scope, seal version, hash, sealed fields and
        ``updated_at``; and, when given, its new keyword index entry."""
        ...

    def delete(self, row: MemoryRow) -> None: ...

    def add_history(self, event: HistoryRow) -> None: ...

    def rewrite_event(self, event: HistoryRow) -> None:
        """Store a history event's new key scope, seal version and sealed texts."""
        ...

    def bump_version(self, scope_id: str) -> tuple[int, int]:
        """Raise a key scope's version by one (versions only ever grow); (before, after)."""
        ...

    def bump_versions(self, scope_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """``bump_version`` of each of ``scope_ids`` (distinct, in the order given; Postgres:
        one round trip); (before, after) by scope id."""
        ...

    def delete_user(self, namespace: str, user_id: str) -> tuple[int, int]:
        """Delete a user's memories, index entries and history: (memories, events)."""
        ...

    def delete_namespace(self, namespace: str) -> None: ...

    def delete_scope_rows(self, scope_id: str) -> tuple[int, int, int]:
        """Delete every memory, history event and job sealed under one data key (a restored
        backup's rows whose key the live key store no longer holds): (memories, events, jobs)."""
        ...

    def insert_job(self, job: JobRow) -> None:
        """Queue a job in this transaction (enqueue under the owner's lock: an erase that
        commits first leaves the enqueuer sealing with the new key generation)."""
        ...

    def delete_jobs(self, namespace: str, user_id: str | None = None) -> int:
        """Delete the jobs of a user (erase) or, without one, of the namespace (reset)."""
        ...

    def jobs_under_key(
        self, namespace: str, user_id: str, scope_id: str, limit: int
    ) -> list[JobRow]:
        """A user's jobs, in any state, still sealed under ``scope_id`` (a key rotation). On
        Postgres they are locked: a worker's ``complete`` of one waits for this transaction,
        then finds the job under its new key scope and seals its result again."""
        ...

    def rewrite_job(self, job: JobRow) -> None:
        """Store a job's new key scope and its re-sealed request and result; nothing else of
        the job (its state belongs to the workers)."""
        ...

    # the webhook outbox (written with the change it reports)
    def webhook(self, namespace: str) -> WebhookRow | None:
        """The namespace's webhook, read inside the transaction."""
        ...

    def insert_deliveries(self, rows: Sequence[DeliveryRow]) -> None: ...

    def shred_delivery_texts(self, namespace: str, user_id: str) -> int:
        """Remove the sealed text of a user's events (an erase); how many had one."""
        ...

    def delete_deliveries(self, namespace: str) -> int:
        """Drop every event of the namespace, whatever its state (a reset); how many."""
        ...


class MemoryStore(Protocol):
    """Memories, history and scope versions; every read bounded to one namespace."""

    backend: str

    def transaction(self) -> AbstractContextManager[WriteTx]: ...

    def close(self) -> None: ...

    def status(self) -> StoreStatus: ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta_once(self, key: str, value: str) -> str:
        """Set ``key`` unless set; return the value that holds now."""
        ...

    def check_writes(self) -> None:
        """For ``/readyz``: raise ``StorageBusy`` while writes fail though reads work (a lock
        held elsewhere, a full disk, a read-only file); cheap when the last write succeeded."""
        ...

    def get(self, namespace: str, memory_id: str, now: str | None = None) -> MemoryRow | None: ...

    def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, MemoryRow]: ...

    def list_rows(
        self,
        namespace: str,
        scope: Scope,
        node: FilterNode | None,
        *,
        now: str | None,
        limit: int,
        newest_first: bool = True,
        offset: int = 0,
    ) -> list[MemoryRow]: ...

    def page_rows(
        self,
        namespace: str,
        scope: Scope,
        node: FilterNode | None,
        *,
        now: str,
        limit: int,
        offset: int = 0,
    ) -> tuple[list[MemoryRow], int]: ...

    def ids_matching(
        self,
        namespace: str,
        scope: Scope,
        node: FilterNode | None,
        now: str | None,
        *,
        among: Collection[str] | None = None,
    ) -> set[str]: ...

    def entity_terms(self, namespace: str, ids: Sequence[str]) -> dict[str, tuple[int, str, str]]:
        """Memory id -> (rowid, scope id, its entity hashes space-separated) of each of ``ids``
        the namespace holds."""
        ...

    def entity_frequencies(
        self, scope_ids: Sequence[str], hashes: Sequence[str], now: str | None = None
    ) -> dict[tuple[str, str], int]:
        """(scope id, hash) -> how many memories of those key scopes name it: with ``now``,
        the memories live at ``now`` (an expired one weighs nothing before purge takes it
        away); without, every entry of the entity index (expired memories too)."""
        ...

    def entity_postings(
        self, scope_ids: Sequence[str], hashes: Sequence[str]
    ) -> list[tuple[str, str, int]]:
        """(scope id, hash, memory rowid) of every memory of those key scopes indexed under one
        of ``hashes``: the entity index alone is read."""
        ...

    def link_rows(self, namespace: str, rowids: Sequence[int], now: str) -> list[LinkedRow]:
        """The live memories of the namespace among ``rowids``."""
        ...

    def count_without_entities(self, namespace: str) -> int:
        """How many memories of the namespace have no entities recorded (``entities_box``
        NULL: written before entities existed)."""
        ...

    def entity_counts(
        self, namespace: str, scope: Scope, now: str, limit: int
    ) -> list[tuple[str, str, int, str]]:
        """(scope id, hash, live memories of ``scope`` naming it, one of their ids), the most
        named first, at most ``limit``."""
        ...

    def scope_ids(self, namespace: str, scope: Scope) -> list[str]:
        """The key scopes that hold rows of a query scope."""
        ...

    def scope_version(self, scope_id: str) -> int: ...

    def scope_vectors(self, scope_id: str, consume: Callable[[list[VectorRow]], None]) -> int:
        """Hand every vector and index entry of one key scope to ``consume`` in chunks, from one
        snapshot; return the scope version of that snapshot."""
        ...

    def vectors_of(self, scope_id: str, ids: Sequence[str]) -> list[VectorRow]:
        """The sealed vectors of the rows of one key scope among ``ids`` (one read; ``body``
        and ``context`` left empty): a large scope's exact re-scoring reads only its candidates."""
        ...

    def user_rows(self, namespace: str, user_id: str) -> tuple[int, int]:
        """How many memories and history events a user has in a namespace."""
        ...

    def owner_counts(self, namespace: str, user_id: str | None, now: str) -> list[OwnerCount]:
        """Live memories per (user_id, agent_id, run_id) of a namespace (of one user if named):
        the count, the first ``created_at`` and the last ``updated_at``."""
        ...

    def history(self, namespace: str, memory_id: str) -> list[HistoryRow]: ...

    def history_of_user(self, namespace: str, user_id: str) -> list[HistoryRow]: ...

    def expired(self, now: str, limit: int) -> list[MemoryRow]: ...

    def legacy_key_names(self, namespace: str, kind: str, owner: str) -> set[str]: ...

    def touch(self, namespace: str, ids: Sequence[str], when: str) -> None: ...

    def namespace_settings(self, namespace: str) -> dict[str, Any]: ...

    def set_namespace_settings(self, namespace: str, rules: Mapping[str, Any]) -> None:
        """Store every rule of ``rows.RULE_DEFAULTS`` for ``namespace`` (all of them, at once)."""
        ...

    def namespace_stats(self) -> list[dict[str, Any]]: ...

    def scope_stats(
        self, namespace: str, now: str
    ) -> list[tuple[str | None, str | None, str, int]]:
        """``(user_id, agent_id, memory_type, count)`` of the namespace's unexpired memories."""
        ...

    def after_erase(self) -> None:
        """Leave no freed page of erased rows behind where the backend can (SQLite: truncate
        the WAL)."""
        ...

    def forget_decrypted(self) -> None:
        """Drop every cache of decrypted data (after an erase, nothing of it stays in memory)."""
        ...


class ApiKeyRecords(Protocol):
    def insert_api_key(self, row: ApiKeyRow, *, max_live: int | None, now: str) -> bool:
        """Insert unless ``max_live`` live keys of the namespace exist (then False), atomically."""
        ...

    def api_key(self, key_id: str) -> ApiKeyRow | None: ...

    def api_keys(self, namespace: str | None) -> list[ApiKeyRow]: ...

    def revoke_api_key(self, key_id: str, namespace: str | None, now: str) -> bool: ...

    def touch_api_key(self, key_id: str, now: str) -> None: ...

    def count_api_keys(self) -> int: ...


class AuditRecords(Protocol):
    def append_audit(self, build: Callable[[int, str], list[AuditRow]]) -> list[AuditRow]:
        """Append the rows ``build(last_seq, last_hash)`` makes, atomically, with no other
        append between reading the head and writing (0 and '' for an empty log)."""
        ...

    def audit_rows(
        self, namespace: str | None, *, limit: int, before: int | None
    ) -> list[AuditRow]: ...

    def audit_chain(self) -> Iterator[AuditRow]:
        """Every entry in ``seq`` order."""
        ...


class JobStore(Protocol):
    """The durable queue. Every method is atomic on its own; ``now`` and deadlines are ISO-8601
    UTC strings (``clock.now_iso``), compared as text.

    A claim hands out the oldest claimable job (``queued`` and due, or ``running`` with an
    expired lease) to one worker only: SQLite claims under ``BEGIN IMMEDIATE`` with
    ``UPDATE ... RETURNING``; Postgres with ``SELECT ... FOR UPDATE SKIP LOCKED``, so concurrent
    claimers on many nodes never wait on each other nor take the same job. ``renew``,
    ``complete`` and ``fail`` change a job only while ``worker`` still holds its claim (False
    otherwise: the lease expired and another worker took it).
    """

    def enqueue(self, job: JobRow) -> None: ...

    def claim(self, worker: str, lease_until: str, now: str) -> JobRow | None: ...

    def renew(self, job_id: str, worker: str, lease_until: str) -> bool: ...

    def complete(
        self, job_id: str, worker: str, result_box: bytes, now: str, *, scope_id: str
    ) -> bool:
        """Done, with ``result_box`` sealed under ``scope_id``: only while ``worker`` holds the
        claim *and* the job is still under that key scope (False when a key rotation re-sealed
        the job meanwhile: the result must be sealed again under the new key)."""
        ...

    def fail(
        self, job_id: str, worker: str, error_code: str, retry_at: str | None, now: str
    ) -> bool:
        """Back to ``queued`` until ``retry_at``, or ``dead`` (``retry_at`` None, or no attempt
        left)."""
        ...

    def release(self, job_id: str, worker: str, now: str) -> bool:
        """Give a claim back unfinished (shutdown): queued again, the attempt not counted."""
        ...

    def get_job(self, namespace: str, job_id: str) -> JobRow | None: ...

    def list_jobs(
        self, namespace: str, *, status: str | None, user_id: str | None, limit: int
    ) -> list[JobRow]:
        """Newest first."""
        ...

    def retry_job(self, namespace: str, job_id: str, now: str) -> JobRow | None:
        """A ``dead`` or ``failed`` job queued again with its attempts reset; None when there is
        no such job in that state."""
        ...

    def delete_jobs(self, namespace: str, user_id: str | None = None) -> int: ...


class WebhookStore(Protocol):
    """Webhooks and their outbox; each method atomic on its own, times as in ``JobStore``.

    A claim hands the oldest due delivery (``pending`` and due, or ``sending`` with an expired
    lease) to one worker only, as ``JobStore.claim`` does; ``delivered`` and
    ``delivery_failed`` change a row only while ``worker`` holds its claim."""

    def get_webhook(self, namespace: str) -> WebhookRow | None: ...

    def create_webhook(self, row: WebhookRow) -> bool:
        """Insert the namespace's webhook unless it has one (then False, nothing changed)."""
        ...

    def update_webhook(
        self,
        namespace: str,
        now: str,
        *,
        url: str | None = None,
        include_text: bool | None = None,
        secret_box: bytes | None = None,
        replacing: bytes | None = None,
    ) -> bool:
        """Change the given fields (None: kept) of the namespace's webhook; False when none, or
        when ``replacing`` is given and the stored ``secret_box`` is no longer it (another
        rotation came first)."""
        ...

    def get_delivery(self, namespace: str, delivery_id: str) -> DeliveryRow | None: ...

    def delete_webhook(self, namespace: str) -> tuple[bool, int]:
        """Remove the webhook and every delivery of the namespace: (was there, deliveries)."""
        ...

    def claim_delivery(self, worker: str, lease_until: str, now: str) -> DeliveryRow | None: ...

    def delivered(self, delivery_id: str, worker: str, status: int, now: str) -> bool: ...

    def delivery_failed(
        self,
        delivery_id: str,
        worker: str,
        error_code: str,
        status: int | None,
        retry_at: str | None,
        now: str,
    ) -> bool:
        """Back to ``pending`` until ``retry_at``, or ``dead`` (``retry_at`` None, or no
        attempt left)."""
        ...

    def list_deliveries(
        self, namespace: str, *, status: str | None, limit: int
    ) -> list[DeliveryRow]:
        """Newest first."""
        ...

    def retry_delivery(self, namespace: str, delivery_id: str, now: str) -> DeliveryRow | None:
        """A ``dead`` delivery pending again with its attempts reset; None otherwise."""
        ...

    def prune_deliveries(self, before: str) -> int:
        """Delete delivered rows last changed before ``before``."""
        ...


# The tables ``memvault migrate`` copies, in copy order; a backend knows no other table names, so
# a name never comes from a user. Keys first: data without its keys could not be read.
DATA_TABLES = (
    "store_meta",
    "namespace_settings",
    "scope_versions",
    "api_keys",
    "memories",
    "history",
    "jobs",
    "webhooks",
    "webhook_outbox",
    "audit_log",
)
KEY_TABLES = ("master_checks", "data_keys", "key_generations", "scope_generations")
# Row counts a backup manifest records, one constant statement per table of the two tuples above
# (every backend names its tables alike).
COUNT_ROWS: dict[str, str] = {
    "store_meta": "SELECT count(*) FROM store_meta",
    "namespace_settings": "SELECT count(*) FROM namespace_settings",
    "scope_versions": "SELECT count(*) FROM scope_versions",
    "api_keys": "SELECT count(*) FROM api_keys",
    "memories": "SELECT count(*) FROM memories",
    "history": "SELECT count(*) FROM history",
    "jobs": "SELECT count(*) FROM jobs",
    "webhooks": "SELECT count(*) FROM webhooks",
    "webhook_outbox": "SELECT count(*) FROM webhook_outbox",
    "audit_log": "SELECT count(*) FROM audit_log",
    "master_checks": "SELECT count(*) FROM master_checks",
    "data_keys": "SELECT count(*) FROM data_keys",
    "key_generations": "SELECT count(*) FROM key_generations",
    "scope_generations": "SELECT count(*) FROM scope_generations",
}
# Where an export stopped: the ordering key of the last row handed out (None: the beginning).
# Opaque to callers; only the backend that made it reads it.
Cursor = tuple[Any, ...] | None


class Exportable(Protocol):
    """Raw, still sealed rows in and out, for ``memvault migrate`` (``core/transfer.py``).

    Rows are dicts of the same column names in every backend (a memory carries its keyword index
    entry as ``terms_body`` and ``terms_context``; a backend's own ordering columns, rowid and
    seq, are not part of them). A table is one of ``DATA_TABLES`` (a data store) or
    ``KEY_TABLES`` (a key store); another name raises ``InvalidInput``.
    """

    def export_batch(self, table: str, after: Cursor, limit: int) -> tuple[list[ExportRow], Cursor]:
        """Up to ``limit`` rows after ``after`` in the table's insertion (or key) order, and the
        cursor to pass next; an empty list at the end."""
        ...

    def import_batch(self, table: str, rows: Sequence[ExportRow]) -> Imported:
        """Insert each row unless its primary key is there already, in one transaction, in the
        order given (a memory or an event gets the next insertion number; ``audit_log`` keeps its
        ``seq``; ``scope_versions`` keeps the larger version). Rows not inserted come back with
        the row the store holds under their key (None: another unique key refused the row)."""
        ...

    def count_rows(self, table: str) -> int: ...


class Snapshotting(Protocol):
    """A consistent copy of the whole store for ``memvault backup`` (``core/backup.py``)."""

    def snapshot(self, directory: Path) -> Snapshot:
        """Write the store as of one moment into new files (0600) in ``directory`` while writers
        go on (SQLite: the backup API; Postgres: ``pg_dump`` in one exported snapshot)."""
        ...


class DataStore(
    MemoryStore,
    ApiKeyRecords,
    AuditRecords,
    JobStore,
    WebhookStore,
    Exportable,
    Snapshotting,
    Protocol,
):
    """What one backend's data database offers."""

    def scope_ids_in_use(self) -> set[str]:
        """Every key id that seals a memory, a history event or a job."""
        ...


class KeyStore(Exportable, Snapshotting, Protocol):
    """Wrapped data keys and their generations. Each method is atomic on its own."""

    def close(self) -> None: ...

    def status(self) -> KeyStoreStatus:
        """Where the keys live and how many there are (``memvault db status``)."""
        ...

    def changes(self) -> int:
        """A number that changes when another process (or node) changed the key store; cheap
        enough to read on every use of a cached key."""
        ...

    def master_checks(self) -> dict[int, bytes]: ...

    def add_master_checks(self, checks: dict[int, bytes]) -> None:
        """Record check values of master key versions the store does not know yet."""
        ...

    def drop_master_check(self, version: int) -> None: ...

    def wrapped(self, scope_id: str, *, legacy_only: bool = False) -> WrappedKey | None: ...

    def present(self, scope_ids: Sequence[str]) -> set[str]: ...

    def create(
        self,
        scope_id: str,
        key: WrappedKey,
        generation: tuple[str, str, str, int, int | None],
    ) -> WrappedKey:
        """Store a key unless one exists under ``scope_id`` (another process may have made it a
        moment ago: theirs is kept and returned), and record the (namespace, kind, owner,
        current, previous) generation unless one is recorded."""
        ...

    def generations(
        self, namespace: str, kind: str, owner: str, legacy_base: str
    ) -> tuple[int, int | None] | None:
        """(current, previous) of a key owner, or of its pre-v2 record, or None."""
        ...

    def generations_many(
        self, owners: Sequence[tuple[str, str, str, str]]
    ) -> list[tuple[int, int | None] | None]:
        """``generations`` of each (namespace, kind, owner, legacy_base), in order (Postgres:
        one round trip, two when some owner has no record of this version)."""
        ...

    def namespace_generations(self, namespace: str) -> list[tuple[str, str, int]]:
        """(kind, owner, current) of every key owner of a namespace."""
        ...

    def set_generations(
        self, namespace: str, kind: str, owner: str, current: int, previous: int | None
    ) -> None: ...

    def delete(
        self,
        scope_ids: Sequence[str],
        *,
        legacy_only: bool = False,
        advance: tuple[str, str, str, int] | None = None,
    ) -> list[str]:
        """Crypto-shred keys (the freed pages overwritten where the backend can); the ids that
        were there. ``advance`` (namespace, kind, owner, generation): in the same transaction,
        move that key owner to the generation (no previous one), as ``set_generations``."""
        ...

    def delete_namespace(self, namespace: str, scope_ids: Sequence[str]) -> list[str]:
        """Delete the given keys and every pre-v2 key of the namespace, and move every key owner
        of the namespace to a new generation, in one transaction; the ids deleted."""
        ...

    def drop_legacy(self) -> list[str]:
        """Delete every key still under a pre-v2 name; the names deleted."""
        ...

    def versions_in_use(self) -> dict[int, int]: ...

    def not_wrapped_by(self, version: int, limit: int) -> list[tuple[str, WrappedKey]]: ...

    def rewrap(self, changes: Sequence[tuple[str, WrappedKey, WrappedKey]]) -> int:
        """Compare-and-set each (scope id, old, new): replace ``old`` by ``new`` unless the key
        changed meanwhile; in one transaction; how many were replaced."""
        ...

    def flush(self) -> None:
        """Leave no older copy of rewrapped or deleted keys where the backend can (SQLite:
        truncate the WAL)."""
        ...


def check_table(table: str, keys: bool) -> None:
    """Refuse a table name that is not one of the fixed tuples (they are never a caller's)."""
    if table not in (KEY_TABLES if keys else DATA_TABLES):
        raise InvalidInput(f"not a table this store exports: {table!r}")
