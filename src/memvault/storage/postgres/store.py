"""The Postgres data store: memories, history, scope versions, API keys and the audit chain.

Like every store it sees ciphertext (``bytea``), ids, owner columns and ISO-8601 timestamps
(``text COLLATE "C"``, compared as text exactly as SQLite compares them). Nothing a caller sends
is ever part of the SQL text: values are ``%s`` parameters, and the schema name is an identifier
composed by ``psycopg.sql.Identifier`` (the pool's ``configure`` callback sets the search path).

Why the keyword index is two columns. A memory's index entry is keyed token hashes (never words),
and BM25 runs in process over one key scope's entries (``scope_vectors``); Postgres has nothing
to search, so ``terms_body`` and ``terms_context`` live on the memory row and go with it.

Why filters run in Python. Metadata is sealed with the row's key, so Postgres cannot read it.
SQL narrows to the namespace, the scope, the expiry (and ``among``); each remaining row is then
tested by ``filters.compile_matcher`` (the same evaluator SQLite's ``mv_match`` calls), its
metadata decrypted by the ``decrypt_metadata`` callback (memoized, bounded in bytes;
``forget_decrypted`` empties it) only when the filter reads metadata. Rows stream from a
server-side cursor, and the whole read has ``max_filter_seconds``: the SQL part under a
transaction-local ``statement_timeout``, the Python part checked between rows; over budget it
raises ``FilterTooExpensive``.

Locks. ``WriteTx.lock(name)`` takes a transaction-scoped advisory lock,
``pg_advisory_xact_lock`` (exclusive) or ``pg_advisory_xact_lock_shared`` (shared), on
``hashtextextended(name, 0)``; it is released when the transaction commits or rolls back, so
every node that shares the database serialises writers of one key owner, as ``BEGIN IMMEDIATE``
does for SQLite. ``WriteTx.get`` reads with ``FOR UPDATE``. ``append_audit`` and
``insert_api_key`` take advisory locks of their own (the audit head; the namespace's key count).

Errors: every driver call runs under ``errors.guard``: ``StorageBusy`` for what a retry may fix,
``StorageError`` otherwise, never with the driver's text.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Collection, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import astuple
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from memvault.errors import FilterTooExpensive
from memvault.filters import COLUMNS, FilterNode, compile_matcher, reads_metadata
from memvault.lru import memoize
from memvault.storage.base import (
    DATA_TABLES,
    Cursor,
    DedupKey,
    MetaDecryptor,
    WriteTx,
    check_table,
)
from memvault.storage.postgres import transfer
from memvault.storage.postgres.backup import DATA_DUMP, snapshot_schema
from memvault.storage.postgres.errors import guard
from memvault.storage.postgres.migrations import applied, migrate
from memvault.storage.rows import (
    ApiKeyRow,
    AuditRow,
    DeliveryRow,
    ExportRow,
    HistoryRow,
    Imported,
    IndexTerms,
    JobRow,
    LinkedRow,
    MemoryRow,
    OwnerCount,
    Snapshot,
    StoreStatus,
    VectorRow,
    WebhookRow,
    namespace_rules,
    rules_values,
    values,
)
from memvault.validation import Scope

__all__ = ["DATA_SCHEMA", "PostgresStore"]

Conn = psycopg.Connection[tuple[Any, ...]]

# The decrypted-metadata cache: the same budgets as SQLiteStore's.
METADATA_CACHE_BYTES = 32 * 1024 * 1024
METADATA_CACHE_ENTRIES = 8192
_FETCH = 512  # rows per round trip of a filtered read
_VECTOR_CHUNK = 8192
_AUDIT_LOCK = "memvault.audit_log"

_MEMORY_COLUMNS = (
    "m.rowid, m.id, m.namespace, m.scope_id, m.user_id, m.agent_id, m.run_id, m.actor_id,"
    " m.role, m.memory_type, m.hash, m.text_box, m.metadata_box, m.vector_box, m.context_box,"
    " m.created_at, m.updated_at, m.expires_at, m.importance, m.access_count,"
    " m.last_accessed_at, m.seal_version, m.entities_box"
)
# _MEMORY_COLUMNS with empty metadata, vector and context boxes (recent_rows_many).
_TEXT_ONLY_COLUMNS = (
    "m.rowid, m.id, m.namespace, m.scope_id, m.user_id, m.agent_id, m.run_id, m.actor_id,"
    " m.role, m.memory_type, m.hash, m.text_box, ''::bytea, ''::bytea, ''::bytea,"
    " m.created_at, m.updated_at, m.expires_at, m.importance, m.access_count,"
    " m.last_accessed_at, m.seal_version"
)
_HISTORY_COLUMNS = (
    "id, memory_id, namespace, scope_id, user_id, agent_id, run_id, event, old_box, new_box,"
    " actor_id, role, created_at, seal_version, meta_box"
)
_JOB_COLUMNS = (
    "id, namespace, user_id, agent_id, run_id, scope_id, kind, status, attempts, max_attempts,"
    " lease_owner, lease_until, run_after, payload_box, result_box, error_code, created_at,"
    " updated_at"
)
_JOB_VALUES = "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s"
_WEBHOOK_COLUMNS = "namespace, url, include_text, secret_box, created_at, updated_at"
_DELIVERY_COLUMNS = (
    "id, namespace, event, memory_id, user_id, agent_id, run_id, scope_id, text_box, status,"
    " attempts, max_attempts, lease_owner, lease_until, run_after, last_error, last_status,"
    " created_at, updated_at"
)
_DELIVERY_VALUES = "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s"
_API_KEY_COLUMNS = (
    "id, namespace, role, name, user_id, secret_hash, created_at, expires_at, revoked_at,"
    " last_used_at"
)
_AUDIT_COLUMNS = (
    "seq, at, namespace, key_id, action, user_id, memory_ids, source, outcome, prev_hash, hash"
)
# What a filtered read needs of a row: the filter grammar's built-in columns (``filters.COLUMNS``,
# in order), then what opening its metadata needs. Spelled out: SQL text is made of constants
# only (tests/security/test_sql_splicing.py).
_FILTER_COLUMNS = (
    "m.id, m.user_id, m.agent_id, m.run_id, m.actor_id, m.role, m.memory_type, m.created_at,"
    " m.updated_at, m.expires_at, m.importance,"
    " m.rowid, m.scope_id, m.namespace, m.metadata_box, m.seal_version"
)
if not _FILTER_COLUMNS.startswith(", ".join(f"m.{c}" for c in COLUMNS) + ","):
    raise ImportError("_FILTER_COLUMNS must start with filters.COLUMNS, in order")
_NOT_EXPIRED = " AND (m.expires_at IS NULL OR m.expires_at > %s)"

# Legacy (seal format 1) key names an owner's own rows name, by kind: the owner is the first id
# set, by the rule of ``Scope.key_owner``.
_OWNER_SQL = {
    "user": "user_id = %s",
    "agent": "user_id IS NULL AND agent_id = %s",
    "run": "user_id IS NULL AND agent_id IS NULL AND run_id = %s",
}
_OTHER_OWNER_SQL = {
    "user": "NOT (namespace = %s AND user_id IS NOT DISTINCT FROM %s)",
    "agent": "NOT (namespace = %s AND user_id IS NULL AND agent_id IS NOT DISTINCT FROM %s)",
    "run": "NOT (namespace = %s AND user_id IS NULL AND agent_id IS NULL"
    " AND run_id IS NOT DISTINCT FROM %s)",
}


def _scope_sql(namespace: str, scope: Scope, *, exact: bool = False) -> tuple[str, list[Any]]:
    """``exact``: the other owner columns must be absent too (``IS NULL``), not merely
    unconstrained. ``= %s`` / ``IS NULL`` (not ``IS NOT DISTINCT FROM``) so indexes apply."""
    clauses = ["m.namespace = %s"]
    params: list[Any] = [namespace]
    for name in ("user_id", "agent_id", "run_id"):
        value = getattr(scope, name)
        if value is not None:
            clauses.append(f"m.{name} = %s")
            params.append(value)
        elif exact:
            clauses.append(f"m.{name} IS NULL")
    return " AND ".join(clauses), params


def _limit(limit: int) -> int | None:
    """SQLite's ``LIMIT -1`` (no limit) is Postgres's ``LIMIT NULL``."""
    return None if limit < 0 else limit


def _memory(row: Sequence[Any]) -> MemoryRow:
    memory = MemoryRow(*row)
    if memory.entities_box is not None:
        memory.entities_box = bytes(memory.entities_box)
    return memory


def _webhook(row: Sequence[Any]) -> WebhookRow:
    hook = WebhookRow(*row)
    hook.secret_box = bytes(hook.secret_box)
    return hook


def _delivery(row: Sequence[Any]) -> DeliveryRow:
    delivery = DeliveryRow(*row)
    delivery.text_box = None if delivery.text_box is None else bytes(delivery.text_box)
    return delivery


def _job(row: Sequence[Any]) -> JobRow:
    job = JobRow(*row)
    job.payload_box = bytes(job.payload_box)
    job.result_box = None if job.result_box is None else bytes(job.result_box)
    return job


def _event(row: Sequence[Any]) -> HistoryRow:
    return HistoryRow(*row)


DATA_SCHEMA = "memvault"


def masked_url(url: str) -> str:
    """The URL without its password (``user:secret@`` -> ``user:***@``; ``password=`` too)."""
    masked = re.sub(r"(://[^/:@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)", r"\1***", masked)


class PostgresStore:
    """A ``DataStore`` in one Postgres schema, shared by every node that opens it."""

    backend = "postgres"

    def __init__(
        self,
        url: str,
        *,
        decrypt_metadata: MetaDecryptor,
        max_filter_seconds: float = 2.0,
        schema: str = DATA_SCHEMA,
        pool_min: int = 1,
        pool_max: int = 8,
        pool_timeout_seconds: float = 5.0,
    ) -> None:
        self._url = url
        self._schema = schema
        self._max_filter_seconds = max_filter_seconds
        # Decrypted metadata (every tenant's plaintext): bounded in bytes, not only entries.
        self._decrypt_metadata = memoize(
            decrypt_metadata, max_bytes=METADATA_CACHE_BYTES, max_entries=METADATA_CACHE_ENTRIES
        )
        with guard("opening the store"):
            with psycopg.connect(url, autocommit=True) as conn:
                migrate(conn, schema)
            self._pool: ConnectionPool[Conn] = ConnectionPool(
                url,
                min_size=pool_min,
                max_size=pool_max,
                # While the server is down the pool cannot open a connection: a request answers
                # storage_busy after this long instead of psycopg's 30 s.
                timeout=pool_timeout_seconds,
                kwargs={"autocommit": True},
                configure=self._configure,
                open=False,
            )
            self._pool.open(wait=True)

    def _configure(self, conn: Conn) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))

    # --- connections and transactions ---------------------------------------------------------

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _connection(self, action: str) -> Iterator[Conn]:
        with guard(action), self._pool.connection() as conn:
            yield conn

    def _fetch(self, query: Any, params: Sequence[Any] = (), action: str = "read") -> list[Any]:
        with self._connection(action) as conn:
            return conn.execute(query, params).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[WriteTx]:
        """One transaction on one pooled connection: committed when the block ends, rolled back
        (advisory locks released either way) when it raises."""
        with self._connection("write") as conn, conn.transaction():
            yield _PgTx(conn)

    def forget_decrypted(self) -> None:
        """Drop the cache of decrypted metadata (after an erase: nothing of it stays in memory)."""
        self._decrypt_metadata.cache_clear()

    def after_erase(self) -> None:
        """Nothing to do beyond the commit that already happened.

        Postgres has no WAL file a store could truncate. What remains of erased rows after the
        commit: their old tuple versions in the heap and index pages until (auto)VACUUM reclaims
        them and later writes reuse the space, and the WAL segments that logged them until the
        server recycles them (and any WAL archive or replica, which the operator owns). The rows
        are ciphertext under keys the key store has destroyed, which is what makes an erase
        final; no VACUUM is run here (it cannot run in a transaction and is not cheap on a
        large table)."""

    # --- raw rows (Exportable: memvault migrate) -----------------------------------------------

    def export_batch(self, table: str, after: Cursor, limit: int) -> tuple[list[ExportRow], Cursor]:
        check_table(table, keys=False)
        with self._connection("exporting rows") as conn:
            return transfer.export_batch(conn, table, after, limit)

    def import_batch(self, table: str, rows: Sequence[ExportRow]) -> Imported:
        check_table(table, keys=False)
        with self._connection("importing rows") as conn, conn.transaction():
            return transfer.import_batch(conn, table, rows)

    def snapshot(self, directory: Path) -> Snapshot:
        """A ``pg_dump`` of the schema in one exported snapshot (``postgres/backup.py``)."""
        return snapshot_schema(
            self._url,
            self._schema,
            directory / DATA_DUMP,
            (*DATA_TABLES, "jobs"),
            migrations=True,
        )

    def scope_ids_in_use(self) -> set[str]:
        rows = self._fetch(
            "SELECT scope_id FROM memories UNION SELECT scope_id FROM history"
            " UNION SELECT scope_id FROM jobs"
        )
        return {str(row[0]) for row in rows}

    def count_rows(self, table: str) -> int:
        check_table(table, keys=False)
        with self._connection("counting rows") as conn:
            return transfer.count_rows(conn, table)

    # --- store metadata -----------------------------------------------------------------------

    def status(self) -> StoreStatus:
        with self._connection("reading the store status") as conn:
            names = applied(conn)
            memories = conn.execute("SELECT count(*) FROM memories").fetchone()
            events = conn.execute("SELECT count(*) FROM history").fetchone()
            size = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind = 'r'",
                (self._schema,),
            ).fetchone()
        return StoreStatus(
            backend=self.backend,
            location=f"{masked_url(self._url)} (schema {self._schema})",
            schema_version=names[-1] if names else "",
            migrations=tuple(names),
            memories=int(memories[0]) if memories else 0,
            history_events=int(events[0]) if events else 0,
            bytes_used=int(size[0]) if size else None,
        )

    def get_meta(self, key: str) -> str | None:
        rows = self._fetch("SELECT value FROM store_meta WHERE key = %s", (key,))
        return str(rows[0][0]) if rows else None

    def check_writes(self) -> None:
        """Nothing to do: a Postgres server that cannot write (stopped, out of disk, read-only)
        also fails the read of ``get_meta`` that ``/readyz`` makes first."""

    def set_meta_once(self, key: str, value: str) -> str:
        with self._connection("writing store metadata") as conn, conn.transaction():
            conn.execute(
                "INSERT INTO store_meta VALUES (%s, %s) ON CONFLICT (key) DO NOTHING", (key, value)
            )
            row = conn.execute("SELECT value FROM store_meta WHERE key = %s", (key,)).fetchone()
        assert row is not None
        return str(row[0])

    # --- reads --------------------------------------------------------------------------------

    def get(self, namespace: str, memory_id: str, now: str | None = None) -> MemoryRow | None:
        query = f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE m.namespace = %s AND m.id = %s"
        params: list[Any] = [namespace, memory_id]
        if now is not None:
            query += _NOT_EXPIRED
            params.append(now)
        rows = self._fetch(query, params)
        return _memory(rows[0]) if rows else None

    def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, MemoryRow]:
        if not ids:
            return {}
        rows = self._fetch(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE m.namespace = %s AND m.id = ANY(%s)",
            (namespace, list(ids)),
        )
        return {row.id: row for row in map(_memory, rows)}

    # --- entities (core/entities.py) ---------------------------------------------------------

    def entity_terms(self, namespace: str, ids: Sequence[str]) -> dict[str, tuple[int, str, str]]:
        if not ids:
            return {}
        rows = self._fetch(
            "SELECT m.id, m.rowid, m.scope_id, m.terms_entities FROM memories m"
            " WHERE m.namespace = %s AND m.id = ANY(%s)",
            (namespace, list(ids)),
        )
        return {str(row[0]): (int(row[1]), str(row[2]), str(row[3])) for row in rows}

    def entity_frequencies(
        self, scope_ids: Sequence[str], hashes: Sequence[str], now: str | None = None
    ) -> dict[tuple[str, str], int]:
        if not hashes or not scope_ids:
            return {}
        params = (list(hashes), list(scope_ids))
        rows = self._fetch(
            "SELECT scope_id, entity_hash, count(*) FROM memory_entities"
            " WHERE entity_hash = ANY(%s) AND scope_id = ANY(%s) GROUP BY scope_id, entity_hash",
            params,
        )
        found = {(str(row[0]), str(row[1])): int(row[2]) for row in rows}
        if now is not None:
            # Less the expired memories not purged yet (few, through the expiry index), so a
            # common entity is still counted from the entity index alone.
            expired = self._fetch(
                "SELECT e.scope_id, e.entity_hash, count(*) FROM memories m"
                " JOIN memory_entities e ON e.memory_rowid = m.rowid"
                " WHERE m.expires_at <= %s AND e.entity_hash = ANY(%s) AND e.scope_id = ANY(%s)"
                " GROUP BY e.scope_id, e.entity_hash",
                (now, *params),
            )
            for scope_id, value, count in expired:
                key = (str(scope_id), str(value))
                left = found.get(key, 0) - int(count)
                if left > 0:
                    found[key] = left
                else:
                    found.pop(key, None)
        return found

    def entity_postings(
        self, scope_ids: Sequence[str], hashes: Sequence[str]
    ) -> list[tuple[str, str, int]]:
        if not hashes or not scope_ids:
            return []
        rows = self._fetch(
            "SELECT scope_id, entity_hash, memory_rowid FROM memory_entities"
            " WHERE entity_hash = ANY(%s) AND scope_id = ANY(%s)",
            (list(hashes), list(scope_ids)),
        )
        return [(str(row[0]), str(row[1]), int(row[2])) for row in rows]

    def link_rows(self, namespace: str, rowids: Sequence[int], now: str) -> list[LinkedRow]:
        if not rowids:
            return []
        rows = self._fetch(
            "SELECT m.rowid, m.id, m.scope_id, m.user_id, m.agent_id, m.run_id FROM memories m"
            f" WHERE m.rowid = ANY(%s) AND m.namespace = %s{_NOT_EXPIRED}",
            (list(rowids), namespace, now),
        )
        return [LinkedRow(*row) for row in rows]

    def count_without_entities(self, namespace: str) -> int:
        rows = self._fetch(
            "SELECT count(*) FROM memories m WHERE m.namespace = %s AND m.entities_box IS NULL",
            (namespace,),
        )
        return int(rows[0][0])

    def entity_counts(
        self, namespace: str, scope: Scope, now: str, limit: int
    ) -> list[tuple[str, str, int, str]]:
        where, params = self._where(namespace, scope, now)
        rows = self._fetch(
            'SELECT m.scope_id, e.entity_hash, count(*) AS n, max(m.id COLLATE "C")'
            f" FROM memory_entities e JOIN memories m ON m.rowid = e.memory_rowid WHERE {where}"
            " GROUP BY m.scope_id, e.entity_hash ORDER BY n DESC, e.entity_hash LIMIT %s",
            [*params, limit],
        )
        return [(str(row[0]), str(row[1]), int(row[2]), str(row[3])) for row in rows]

    def _where(
        self, namespace: str, scope: Scope, now: str | None, *, exact: bool = False
    ) -> tuple[str, list[Any]]:
        where, params = _scope_sql(namespace, scope, exact=exact)
        if now is not None:
            where += _NOT_EXPIRED
            params.append(now)
        return where, params

    def _filtered_rowids(
        self, node: FilterNode, query: str, params: Sequence[Any]
    ) -> Generator[int, None, None]:
        """The ``rowid`` of each row of ``query`` (which selects ``_FILTER_COLUMNS``) that passes
        ``node``, in the query's order, within the time budget."""
        matcher = compile_matcher(node)
        needs_metadata = reads_metadata(node)
        budget = self._max_filter_seconds
        deadline = time.monotonic() + budget
        width = len(COLUMNS)

        def matches(row: Sequence[Any]) -> bool:
            record: dict[str, Any] = dict(zip(COLUMNS, row[:width], strict=True))
            if needs_metadata:
                _rowid, scope_id, namespace, box, seal_version = row[width:]
                owners = (record["user_id"], record["agent_id"], record["run_id"])
                record["metadata"] = json.loads(
                    self._decrypt_metadata(
                        scope_id, record["id"], bytes(box), namespace, owners, seal_version
                    )
                )
            return matcher(record)

        try:
            with self._connection("filtered read") as conn, conn.transaction():
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    (str(max(1, int(budget * 1000))),),
                )
                try:
                    with conn.cursor(name="memvault_filter") as cursor:
                        cursor.execute(query, params)
                        while rows := cursor.fetchmany(_FETCH):
                            for row in rows:
                                if time.monotonic() > deadline:
                                    raise _OverBudget
                                if matches(row):
                                    yield int(row[width])
                except psycopg.errors.QueryCanceled:  # the statement_timeout
                    raise _OverBudget from None
        except _OverBudget:
            raise self._too_expensive() from None

    def _too_expensive(self) -> FilterTooExpensive:
        return FilterTooExpensive(
            f"the filter took more than {self._max_filter_seconds:g} s over this scope:"
            " use fewer conditions on metadata, or raise max_filter_seconds"
        )

    def _by_rowids(self, rowids: Sequence[int]) -> list[MemoryRow]:
        """Rows by ``rowid``, in the order given."""
        if not rowids:
            return []
        rows = self._fetch(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE m.rowid = ANY(%s)", (list(rowids),)
        )
        found = {row.rowid: row for row in map(_memory, rows)}
        return [found[r] for r in rowids if r in found]

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
        exact: bool = False,
    ) -> list[MemoryRow]:
        where, params = self._where(namespace, scope, now, exact=exact)
        order = "DESC" if newest_first else "ASC"
        if node is None:
            rows = self._fetch(
                f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE {where}"
                f" ORDER BY m.rowid {order} LIMIT %s OFFSET %s",
                [*params, _limit(limit), offset],
            )
            return [_memory(row) for row in rows]
        chosen: list[int] = []
        query = f"SELECT {_FILTER_COLUMNS} FROM memories m WHERE {where} ORDER BY m.rowid {order}"
        skipped = 0
        stream = self._filtered_rowids(node, query, params)
        try:
            for rowid in stream:
                if skipped < offset:
                    skipped += 1
                    continue
                if 0 <= limit <= len(chosen):
                    break
                chosen.append(rowid)
        finally:
            stream.close()
        return self._by_rowids(chosen)

    def page_rows(
        self,
        namespace: str,
        scope: Scope,
        node: FilterNode | None,
        *,
        now: str,
        limit: int,
        offset: int = 0,
    ) -> tuple[list[MemoryRow], int]:
        """One page of the scope's live rows passing the filter, newest first, and how many pass
        in all (the filter runs once)."""
        where, params = self._where(namespace, scope, now)
        if node is None:
            matched = [
                int(row[0])
                for row in self._fetch(
                    f"SELECT m.rowid FROM memories m WHERE {where} ORDER BY m.rowid DESC", params
                )
            ]
        else:
            query = f"SELECT {_FILTER_COLUMNS} FROM memories m WHERE {where} ORDER BY m.rowid DESC"
            matched = list(self._filtered_rowids(node, query, params))
        page = matched[offset:] if limit < 0 else matched[offset : offset + limit]
        return self._by_rowids(page), len(matched)

    def ids_matching(
        self,
        namespace: str,
        scope: Scope,
        node: FilterNode | None,
        now: str | None,
        *,
        among: Collection[str] | None = None,
    ) -> set[str]:
        """Ids of the scope's live rows that pass the filter (only those in ``among``, if given)."""
        where, params = self._where(namespace, scope, now)
        if among is not None:
            where += " AND m.id = ANY(%s)"
            params.append(list(among))
        if node is None:
            rows = self._fetch(f"SELECT m.id FROM memories m WHERE {where}", params)
            return {str(row[0]) for row in rows}
        query = f"SELECT {_FILTER_COLUMNS} FROM memories m WHERE {where}"
        rowids = list(self._filtered_rowids(node, query, params))
        if not rowids:
            return set()
        rows = self._fetch("SELECT id FROM memories WHERE rowid = ANY(%s)", (rowids,))
        return {str(row[0]) for row in rows}

    def scope_ids(self, namespace: str, scope: Scope) -> list[str]:
        where, params = _scope_sql(namespace, scope)
        rows = self._fetch(f"SELECT DISTINCT m.scope_id FROM memories m WHERE {where}", params)
        return [str(row[0]) for row in rows]

    def scope_version(self, scope_id: str) -> int:
        rows = self._fetch("SELECT version FROM scope_versions WHERE scope_id = %s", (scope_id,))
        return int(rows[0][0]) if rows else 0

    def scope_vectors(self, scope_id: str, consume: Callable[[list[VectorRow]], None]) -> int:
        """Every vector and index entry of one key scope, ``_VECTOR_CHUNK`` rows at a time, from
        one snapshot (a REPEATABLE READ, read-only transaction); the version of that snapshot."""
        with self._connection("reading a scope's vectors") as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            found = conn.execute(
                "SELECT version FROM scope_versions WHERE scope_id = %s", (scope_id,)
            ).fetchone()
            with conn.cursor(name="memvault_vectors") as cursor:
                cursor.execute(
                    "SELECT id, namespace, user_id, agent_id, run_id, seal_version,"
                    " expires_at, vector_box, terms_body, terms_context FROM memories"
                    " WHERE scope_id = %s ORDER BY rowid",
                    (scope_id,),
                )
                while rows := cursor.fetchmany(_VECTOR_CHUNK):
                    consume([VectorRow(*row) for row in rows])
        return int(found[0]) if found else 0

    def vectors_of(self, scope_id: str, ids: Sequence[str]) -> list[VectorRow]:
        """The sealed vectors of the scope's rows among ``ids`` (one read)."""
        rows = self._fetch(
            "SELECT id, namespace, user_id, agent_id, run_id, seal_version, expires_at,"
            " vector_box, '', '' FROM memories WHERE id = ANY(%s) AND scope_id = %s",
            (list(ids), scope_id),
            "reading vectors",
        )
        return [VectorRow(*row) for row in rows]

    def user_rows(self, namespace: str, user_id: str) -> tuple[int, int]:
        rows = self._fetch(
            "SELECT (SELECT count(*) FROM memories WHERE namespace = %s AND user_id = %s),"
            " (SELECT count(*) FROM history WHERE namespace = %s AND user_id = %s)",
            (namespace, user_id, namespace, user_id),
        )
        return int(rows[0][0]), int(rows[0][1])

    def owner_counts(self, namespace: str, user_id: str | None, now: str) -> list[OwnerCount]:
        sql = (
            "SELECT user_id, agent_id, run_id, count(*), min(created_at), max(updated_at)"
            " FROM memories WHERE namespace = %s AND (expires_at IS NULL OR expires_at > %s)"
        )
        params: list[Any] = [namespace, now]
        if user_id is not None:
            sql += " AND user_id = %s"
            params.append(user_id)
        rows = self._fetch(sql + " GROUP BY user_id, agent_id, run_id", params)
        return [OwnerCount(r[0], r[1], r[2], int(r[3]), str(r[4]), str(r[5])) for r in rows]

    def history(self, namespace: str, memory_id: str) -> list[HistoryRow]:
        rows = self._fetch(
            f"SELECT {_HISTORY_COLUMNS} FROM history WHERE namespace = %s AND memory_id = %s"
            " ORDER BY seq",
            (namespace, memory_id),
        )
        return [_event(row) for row in rows]

    def history_of_user(self, namespace: str, user_id: str) -> list[HistoryRow]:
        rows = self._fetch(
            f"SELECT {_HISTORY_COLUMNS} FROM history WHERE namespace = %s AND user_id = %s"
            ' ORDER BY memory_id COLLATE "C", seq',
            (namespace, user_id),
        )
        return [_event(row) for row in rows]

    def expired(self, now: str, limit: int) -> list[MemoryRow]:
        """Expired memories of every namespace, oldest expiry first."""
        rows = self._fetch(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE m.expires_at IS NOT NULL"
            " AND m.expires_at <= %s ORDER BY m.expires_at LIMIT %s",
            (now, _limit(limit)),
        )
        return [_memory(row) for row in rows]

    def legacy_key_names(self, namespace: str, kind: str, owner: str) -> set[str]:
        with self._connection("read") as conn:
            return _legacy_key_names(conn, namespace, kind, owner)

    def touch(self, namespace: str, ids: Sequence[str], when: str) -> None:
        """Count reads (``access_count``, ``last_accessed_at``); one statement for all, an id
        read n times counted n times."""
        if not ids:
            return
        counts = Counter(ids)
        with self._connection("counting reads") as conn:
            conn.execute(
                "UPDATE memories m SET access_count = m.access_count + r.n, last_accessed_at = %s"
                " FROM unnest(%s::text[], %s::int[]) AS r(id, n)"
                " WHERE m.namespace = %s AND m.id = r.id",
                (when, list(counts), list(counts.values()), namespace),
            )

    def namespace_settings(self, namespace: str) -> dict[str, Any]:
        rows = self._fetch(
            "SELECT secret_policy, default_ttl_seconds, extraction_instructions,"
            " reconciliation_instructions FROM namespace_settings WHERE namespace = %s",
            (namespace,),
        )
        return namespace_rules(rows[0] if rows else None)

    def set_namespace_settings(self, namespace: str, rules: Mapping[str, Any]) -> None:
        with self._connection("writing namespace settings") as conn:
            conn.execute(
                "INSERT INTO namespace_settings (namespace, secret_policy, default_ttl_seconds,"
                " extraction_instructions, reconciliation_instructions)"
                " VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (namespace) DO UPDATE SET secret_policy = excluded.secret_policy,"
                " default_ttl_seconds = excluded.default_ttl_seconds,"
                " extraction_instructions = excluded.extraction_instructions,"
                " reconciliation_instructions = excluded.reconciliation_instructions",
                (namespace, *rules_values(rules)),
            )

    def scope_stats(
        self, namespace: str, now: str
    ) -> list[tuple[str | None, str | None, str, int]]:
        rows = self._fetch(
            "SELECT user_id, agent_id, memory_type, count(*) FROM memories"
            " WHERE namespace = %s AND (expires_at IS NULL OR expires_at > %s)"
            " GROUP BY user_id, agent_id, memory_type",
            (namespace, now),
        )
        return [(r[0], r[1], str(r[2]), int(r[3])) for r in rows]

    def namespace_stats(self) -> list[dict[str, Any]]:
        rows = self._fetch(
            "SELECT namespace, sum(memories) AS memories, sum(keys) AS keys FROM ("
            " SELECT namespace, count(*) AS memories, 0 AS keys FROM memories GROUP BY namespace"
            " UNION ALL SELECT namespace, 0, count(*) FROM api_keys GROUP BY namespace) AS t"
            ' GROUP BY namespace ORDER BY namespace COLLATE "C"'
        )
        return [{"name": r[0], "memories": int(r[1]), "keys": int(r[2])} for r in rows]

    # --- API keys -----------------------------------------------------------------------------

    def insert_api_key(self, row: ApiKeyRow, *, max_live: int | None, now: str) -> bool:
        with self._connection("creating an API key") as conn, conn.transaction():
            if max_live is not None:
                # Two creators in one namespace count one after the other.
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    ("memvault.api_keys:" + row.namespace,),
                )
                live = conn.execute(
                    "SELECT count(*) FROM api_keys WHERE namespace = %s AND revoked_at IS NULL"
                    " AND (expires_at IS NULL OR expires_at > %s)",
                    (row.namespace, now),
                ).fetchone()
                if live is not None and int(live[0]) >= max_live:
                    return False
            conn.execute(
                f"INSERT INTO api_keys ({_API_KEY_COLUMNS}) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                values(row),
            )
        return True

    def api_key(self, key_id: str) -> ApiKeyRow | None:
        rows = self._fetch(f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE id = %s", (key_id,))
        return ApiKeyRow(*rows[0]) if rows else None

    def api_keys(self, namespace: str | None) -> list[ApiKeyRow]:
        if namespace is None:
            rows = self._fetch(f"SELECT {_API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")
        else:
            rows = self._fetch(
                f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE namespace = %s"
                " ORDER BY created_at, id",
                (namespace,),
            )
        return [ApiKeyRow(*row) for row in rows]

    def revoke_api_key(self, key_id: str, namespace: str | None, now: str) -> bool:
        query = "UPDATE api_keys SET revoked_at = coalesce(revoked_at, %s) WHERE id = %s"
        params: list[Any] = [now, key_id]
        if namespace is not None:
            query += " AND namespace = %s"
            params.append(namespace)
        with self._connection("revoking an API key") as conn:
            return conn.execute(query, params).rowcount > 0

    def touch_api_key(self, key_id: str, now: str) -> None:
        with self._connection("recording an API key's use") as conn:
            conn.execute("UPDATE api_keys SET last_used_at = %s WHERE id = %s", (now, key_id))

    def count_api_keys(self) -> int:
        return int(self._fetch("SELECT count(*) FROM api_keys")[0][0])

    # --- audit chain --------------------------------------------------------------------------

    def append_audit(self, build: Callable[[int, str], list[AuditRow]]) -> list[AuditRow]:
        """Under an exclusive advisory lock (every node appends one after the other): read the
        head, let ``build`` chain the new rows to it, insert them, commit."""
        with self._connection("appending to the audit log") as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_AUDIT_LOCK,))
            head = conn.execute(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            rows = build(int(head[0]), str(head[1])) if head else build(0, "")
            with conn.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO audit_log ({_AUDIT_COLUMNS}) VALUES"
                    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [values(r) for r in rows],
                )
        return rows

    def audit_rows(
        self, namespace: str | None, *, limit: int, before: int | None
    ) -> list[AuditRow]:
        """Newest first; ``before`` pages back from a sequence number."""
        query = f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE true"
        params: list[Any] = []
        if namespace is not None:
            query += " AND namespace = %s"
            params.append(namespace)
        if before is not None:
            query += " AND seq < %s"
            params.append(before)
        rows = self._fetch(query + " ORDER BY seq DESC LIMIT %s", [*params, _limit(limit)])
        return [AuditRow(*row) for row in rows]

    def audit_chain(self) -> Iterator[AuditRow]:
        """Every entry in ``seq`` order, streamed (a server-side cursor in one snapshot)."""
        with (
            self._connection("reading the audit log") as conn,
            conn.transaction(),
            conn.cursor(name="memvault_audit") as cursor,
        ):
            cursor.execute(f"SELECT {_AUDIT_COLUMNS} FROM audit_log ORDER BY seq")
            while rows := cursor.fetchmany(_FETCH):
                yield from (AuditRow(*row) for row in rows)

    # --- the job queue (JobStore) -------------------------------------------------------------

    def enqueue(self, job: JobRow) -> None:
        with self.transaction() as tx:
            tx.insert_job(job)

    def claim(self, worker: str, lease_until: str, now: str) -> JobRow | None:
        """The oldest claimable job, locked with ``SKIP LOCKED`` (a job another claimer holds
        is passed over, not waited for), then marked running, in one transaction."""
        with self._connection("claiming a job") as conn, conn.transaction():
            found = conn.execute(
                "SELECT id FROM jobs WHERE (status = 'queued' AND run_after <= %s)"
                " OR (status = 'running' AND lease_until <= %s)"
                " ORDER BY run_after, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                (now, now),
            ).fetchone()
            if found is None:
                return None
            row = conn.execute(
                f"UPDATE jobs SET status = 'running', attempts = attempts + 1,"
                f" lease_owner = %s, lease_until = %s, updated_at = %s WHERE id = %s"
                f" RETURNING {_JOB_COLUMNS}",
                (worker, lease_until, now, found[0]),
            ).fetchone()
        return _job(row) if row is not None else None

    def renew(self, job_id: str, worker: str, lease_until: str) -> bool:
        with self._connection("renewing a job lease") as conn, conn.transaction():
            cursor = conn.execute(
                "UPDATE jobs SET lease_until = %s WHERE id = %s AND status = 'running'"
                " AND lease_owner = %s",
                (lease_until, job_id, worker),
            )
            return bool(cursor.rowcount > 0)

    def complete(
        self, job_id: str, worker: str, result_box: bytes, now: str, *, scope_id: str
    ) -> bool:
        # A rotation holding the row (``jobs_under_key``) makes this wait; READ COMMITTED then
        # checks the WHERE against the rotated row, whose scope_id no longer matches.
        with self._connection("completing a job") as conn, conn.transaction():
            cursor = conn.execute(
                "UPDATE jobs SET status = 'done', result_box = %s, error_code = NULL,"
                " lease_owner = NULL, lease_until = NULL, updated_at = %s"
                " WHERE id = %s AND status = 'running' AND lease_owner = %s AND scope_id = %s",
                (result_box, now, job_id, worker, scope_id),
            )
            return bool(cursor.rowcount > 0)

    def fail(
        self, job_id: str, worker: str, error_code: str, retry_at: str | None, now: str
    ) -> bool:
        with self._connection("failing a job") as conn, conn.transaction():
            cursor = conn.execute(
                "UPDATE jobs SET status = CASE WHEN %s::text IS NULL OR attempts >= max_attempts"
                " THEN 'dead' ELSE 'queued' END, run_after = coalesce(%s::text, run_after),"
                " error_code = %s, lease_owner = NULL, lease_until = NULL, updated_at = %s"
                " WHERE id = %s AND status = 'running' AND lease_owner = %s",
                (retry_at, retry_at, error_code, now, job_id, worker),
            )
            return bool(cursor.rowcount > 0)

    def release(self, job_id: str, worker: str, now: str) -> bool:
        with self._connection("releasing a job") as conn, conn.transaction():
            cursor = conn.execute(
                "UPDATE jobs SET status = 'queued', attempts = greatest(attempts - 1, 0),"
                " lease_owner = NULL, lease_until = NULL, updated_at = %s"
                " WHERE id = %s AND status = 'running' AND lease_owner = %s",
                (now, job_id, worker),
            )
            return bool(cursor.rowcount > 0)

    def get_job(self, namespace: str, job_id: str) -> JobRow | None:
        rows = self._fetch(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE namespace = %s AND id = %s",
            (namespace, job_id),
        )
        return _job(rows[0]) if rows else None

    def list_jobs(
        self, namespace: str, *, status: str | None, user_id: str | None, limit: int
    ) -> list[JobRow]:
        rows = self._fetch(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE namespace = %s"
            " AND (%s::text IS NULL OR status = %s) AND (%s::text IS NULL OR user_id = %s)"
            " ORDER BY id DESC LIMIT %s",
            (namespace, status, status, user_id, user_id, limit),
        )
        return [_job(row) for row in rows]

    def retry_job(self, namespace: str, job_id: str, now: str) -> JobRow | None:
        with self._connection("retrying a job") as conn, conn.transaction():
            row = conn.execute(
                f"UPDATE jobs SET status = 'queued', attempts = 0, run_after = %s,"
                f" error_code = NULL, lease_owner = NULL, lease_until = NULL, updated_at = %s"
                f" WHERE namespace = %s AND id = %s AND status IN ('dead', 'failed')"
                f" RETURNING {_JOB_COLUMNS}",
                (now, now, namespace, job_id),
            ).fetchone()
        return _job(row) if row is not None else None

    def delete_jobs(self, namespace: str, user_id: str | None = None) -> int:
        with self.transaction() as tx:
            return int(tx.delete_jobs(namespace, user_id))

    # --- webhooks and their outbox (WebhookStore) ---------------------------------------------

    def get_webhook(self, namespace: str) -> WebhookRow | None:
        rows = self._fetch(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE namespace = %s", (namespace,)
        )
        return _webhook(rows[0]) if rows else None

    def create_webhook(self, row: WebhookRow) -> bool:
        with self._connection("writing a webhook") as conn, conn.transaction():
            cursor = conn.execute(
                f"INSERT INTO webhooks ({_WEBHOOK_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (namespace) DO NOTHING",
                astuple(row),
            )
            return bool(cursor.rowcount > 0)

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
        with self._connection("writing a webhook") as conn, conn.transaction():
            cursor = conn.execute(
                "UPDATE webhooks SET url = coalesce(%s::text, url),"
                " include_text = coalesce(%s::boolean, include_text),"
                " secret_box = coalesce(%s::bytea, secret_box), updated_at = %s"
                " WHERE namespace = %s" + (" AND secret_box = %s" if replacing is not None else ""),
                (
                    url,
                    include_text,
                    secret_box,
                    now,
                    namespace,
                    *([replacing] if replacing is not None else []),
                ),
            )
            return bool(cursor.rowcount > 0)

    def get_delivery(self, namespace: str, delivery_id: str) -> DeliveryRow | None:
        rows = self._fetch(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_outbox WHERE namespace = %s AND id = %s",
            (namespace, delivery_id),
        )
        return _delivery(rows[0]) if rows else None

    def delete_webhook(self, namespace: str) -> tuple[bool, int]:
        with self._connection("removing a webhook") as conn, conn.transaction():
            found = conn.execute("DELETE FROM webhooks WHERE namespace = %s", (namespace,))
            dropped = conn.execute(
                "DELETE FROM webhook_outbox WHERE namespace = %s", (namespace,)
            ).rowcount
            return found.rowcount > 0, int(dropped)

    def claim_delivery(self, worker: str, lease_until: str, now: str) -> DeliveryRow | None:
        """The oldest due delivery, locked with ``SKIP LOCKED``, then marked sending."""
        with self._connection("claiming a delivery") as conn, conn.transaction():
            found = conn.execute(
                "SELECT id FROM webhook_outbox WHERE (status = 'pending' AND run_after <= %s)"
                " OR (status = 'sending' AND lease_until <= %s)"
                " ORDER BY run_after, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                (now, now),
            ).fetchone()
            if found is None:
                return None
            row = conn.execute(
                f"UPDATE webhook_outbox SET status = 'sending', attempts = attempts + 1,"
                f" lease_owner = %s, lease_until = %s, updated_at = %s WHERE id = %s"
                f" RETURNING {_DELIVERY_COLUMNS}",
                (worker, lease_until, now, found[0]),
            ).fetchone()
        return _delivery(row) if row is not None else None

    def delivered(self, delivery_id: str, worker: str, status: int, now: str) -> bool:
        with self._connection("recording a delivery") as conn, conn.transaction():
            cursor = conn.execute(
                "UPDATE webhook_outbox SET status = 'delivered', last_status = %s,"
                " last_error = NULL, text_box = NULL, lease_owner = NULL, lease_until = NULL,"
                " updated_at = %s WHERE id = %s AND status = 'sending' AND lease_owner = %s",
                (status, now, delivery_id, worker),
            )
            return bool(cursor.rowcount > 0)

    def delivery_failed(
        self,
        delivery_id: str,
        worker: str,
        error_code: str,
        status: int | None,
        retry_at: str | None,
        now: str,
    ) -> bool:
        with self._connection("recording a failed delivery") as conn, conn.transaction():
            cursor = conn.execute(
                "UPDATE webhook_outbox SET status = CASE WHEN %s::text IS NULL"
                " OR attempts >= max_attempts THEN 'dead' ELSE 'pending' END,"
                " run_after = coalesce(%s::text, run_after), last_error = %s,"
                " last_status = %s, lease_owner = NULL, lease_until = NULL, updated_at = %s"
                " WHERE id = %s AND status = 'sending' AND lease_owner = %s",
                (retry_at, retry_at, error_code, status, now, delivery_id, worker),
            )
            return bool(cursor.rowcount > 0)

    def list_deliveries(
        self, namespace: str, *, status: str | None, limit: int
    ) -> list[DeliveryRow]:
        rows = self._fetch(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_outbox WHERE namespace = %s"
            " AND (%s::text IS NULL OR status = %s) ORDER BY id DESC LIMIT %s",
            (namespace, status, status, limit),
        )
        return [_delivery(row) for row in rows]

    def retry_delivery(self, namespace: str, delivery_id: str, now: str) -> DeliveryRow | None:
        with self._connection("retrying a delivery") as conn, conn.transaction():
            row = conn.execute(
                f"UPDATE webhook_outbox SET status = 'pending', attempts = 0, run_after = %s,"
                f" last_error = NULL, lease_owner = NULL, lease_until = NULL, updated_at = %s"
                f" WHERE namespace = %s AND id = %s AND status = 'dead'"
                f" RETURNING {_DELIVERY_COLUMNS}",
                (now, now, namespace, delivery_id),
            ).fetchone()
        return _delivery(row) if row is not None else None

    def prune_deliveries(self, before: str) -> int:
        with self._connection("removing old deliveries") as conn, conn.transaction():
            return int(
                conn.execute(
                    "DELETE FROM webhook_outbox WHERE status = 'delivered' AND updated_at < %s",
                    (before,),
                ).rowcount
            )


class _OverBudget(Exception):
    """A filtered read ran out of time between rows."""


def _legacy_key_names(conn: Conn, namespace: str, kind: str, owner: str) -> set[str]:
    if kind not in _OWNER_SQL:
        return set()
    who = _OWNER_SQL[kind]
    rows = conn.execute(
        f"SELECT scope_id FROM memories WHERE seal_version = 1 AND namespace = %s AND {who}"
        f" UNION SELECT scope_id FROM history WHERE seal_version = 1 AND namespace = %s"
        f" AND {who}",
        (namespace, owner, namespace, owner),
    ).fetchall()
    return {str(row[0]) for row in rows}


class _PgTx:
    """A ``WriteTx`` on one connection inside its transaction (see ``PostgresStore``)."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    def _all(self, query: Any, params: Sequence[Any]) -> list[Any]:
        return self._conn.execute(query, params).fetchall()

    def lock(self, name: str, *, exclusive: bool = True) -> None:
        if exclusive:
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))
        else:
            self._conn.execute(
                "SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, 0))", (name,)
            )

    def lock_all(self, names: Sequence[str]) -> None:
        """One statement: ``unnest`` yields the names in the array's order, and each row's lock
        is taken before the next row is produced, so the order callers sort by holds."""
        if names:
            self._all(
                "SELECT pg_advisory_xact_lock(hashtextextended(k, 0))"
                " FROM unnest(%s::text[]) WITH ORDINALITY AS l(k, i) ORDER BY i",
                (list(names),),
            )

    def get(self, namespace: str, memory_id: str) -> MemoryRow | None:
        rows = self._all(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE m.namespace = %s AND m.id = %s"
            " FOR UPDATE",
            (namespace, memory_id),
        )
        return _memory(rows[0]) if rows else None

    def scope_rows(self, namespace: str, scope: Scope, *, limit: int) -> list[MemoryRow]:
        where, params = _scope_sql(namespace, scope)
        rows = self._all(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE {where}"
            " ORDER BY m.rowid DESC LIMIT %s",
            [*params, _limit(limit)],
        )
        return [_memory(row) for row in rows]

    def recent_rows(self, namespace: str, scope: Scope, limit: int) -> list[MemoryRow]:
        where, params = _scope_sql(namespace, scope, exact=True)
        rows = self._all(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE {where}"
            " ORDER BY m.rowid DESC LIMIT %s",
            [*params, _limit(limit)],
        )
        return [_memory(row) for row in rows]

    def recent_rows_many(
        self, namespace: str, scopes: Sequence[Scope], limit: int
    ) -> dict[Scope, list[MemoryRow]]:
        """One query per scope shape (which owner columns are named): a ``LATERAL`` look-up per
        scope, each served by its owner column's index like ``recent_rows``. The rows carry
        their text box only (metadata, vector and context boxes empty): the context window
        needs the text, and the vectors were most of the bytes read (a bulk load reads
        ``limit`` rows per scope and batch)."""
        found: dict[Scope, list[MemoryRow]] = {scope: [] for scope in scopes}
        shapes: dict[tuple[bool, bool, bool], list[Scope]] = {}
        for scope in found:
            shape = (
                scope.user_id is not None,
                scope.agent_id is not None,
                scope.run_id is not None,
            )
            shapes.setdefault(shape, []).append(scope)
        for group in shapes.values():
            clauses = ["m.namespace = %s"]
            for name in ("user_id", "agent_id", "run_id"):
                if getattr(group[0], name) is not None:  # the group's shape
                    clauses.append(f"m.{name} = k.{name}")
                else:
                    clauses.append(f"m.{name} IS NULL")
            where = " AND ".join(clauses)
            rows = self._all(
                f"SELECT k.i, {_TEXT_ONLY_COLUMNS} FROM unnest(%s::text[], %s::text[], %s::text[],"
                " %s::int[]) AS k(user_id, agent_id, run_id, i) CROSS JOIN LATERAL"
                f" (SELECT {_MEMORY_COLUMNS} FROM memories m WHERE {where}"
                " ORDER BY m.rowid DESC LIMIT %s) AS m"
                " ORDER BY k.i, m.rowid DESC",
                (
                    [scope.user_id for scope in group],
                    [scope.agent_id for scope in group],
                    [scope.run_id for scope in group],
                    list(range(len(group))),
                    namespace,
                    _limit(limit),
                ),
            )
            for row in rows:
                found[group[int(row[0])]].append(_memory(row[1:]))
        return found

    def find_duplicate(self, row: MemoryRow) -> str | None:
        key = (row.user_id, row.agent_id, row.run_id, row.hash)
        return self.find_duplicates(row.namespace, [key]).get(key)

    def find_duplicates(self, namespace: str, keys: Sequence[DedupKey]) -> dict[DedupKey, str]:
        """One query for the lot (the dedup index serves each key)."""
        if not keys:
            return {}
        # LATERAL ... LIMIT 1: a probe of memories_dedup per key whatever the statistics say (a
        # plain join was planned as a hash join over the whole namespace while the table's
        # statistics were stale: every row read, per batch of a bulk load).
        rows = self._all(
            "SELECT m.id, k.i FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::int[]) AS k(u, a, r, h, i) CROSS JOIN LATERAL (SELECT m.id FROM memories m"
            " WHERE m.namespace = %s AND coalesce(m.user_id, '') = k.u"
            " AND coalesce(m.agent_id, '') = k.a AND coalesce(m.run_id, '') = k.r"
            " AND m.hash = k.h LIMIT 1) AS m",
            (
                [k[0] or "" for k in keys],
                [k[1] or "" for k in keys],
                [k[2] or "" for k in keys],
                [k[3] for k in keys],
                list(range(len(keys))),
                namespace,
            ),
        )
        return {keys[int(index)]: str(memory_id) for memory_id, index in rows}

    def rows_under_key(
        self, namespace: str, user_id: str, scope_id: str, limit: int
    ) -> list[MemoryRow]:
        rows = self._all(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE m.namespace = %s"
            " AND m.user_id = %s AND m.scope_id = %s ORDER BY m.rowid LIMIT %s",
            (namespace, user_id, scope_id, _limit(limit)),
        )
        return [_memory(row) for row in rows]

    def events_under_key(
        self, namespace: str, user_id: str, scope_id: str, limit: int
    ) -> list[HistoryRow]:
        rows = self._all(
            f"SELECT {_HISTORY_COLUMNS} FROM history WHERE namespace = %s AND user_id = %s"
            " AND scope_id = %s ORDER BY seq LIMIT %s",
            (namespace, user_id, scope_id, _limit(limit)),
        )
        return [_event(row) for row in rows]

    def legacy_rows(self, after: int, limit: int) -> list[MemoryRow]:
        rows = self._all(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE m.seal_version = 1"
            " AND m.rowid > %s ORDER BY m.rowid LIMIT %s",
            (after, _limit(limit)),
        )
        return [_memory(row) for row in rows]

    def rows_without_entities(self, namespace: str, after: int, limit: int) -> list[MemoryRow]:
        rows = self._all(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE m.namespace = %s"
            " AND m.entities_box IS NULL AND m.rowid > %s ORDER BY m.rowid LIMIT %s FOR UPDATE",
            (namespace, after, _limit(limit)),
        )
        return [_memory(row) for row in rows]

    def set_entities(self, row: MemoryRow, hashes: str) -> None:
        # The trigger rewrites the row's memory_entities entries.
        self._conn.execute(
            "UPDATE memories SET entities_box = %s, terms_entities = %s WHERE rowid = %s",
            (row.entities_box, hashes, row.rowid),
        )

    def legacy_events(self, after: str, limit: int) -> list[HistoryRow]:
        rows = self._all(
            f"SELECT {_HISTORY_COLUMNS} FROM history WHERE seal_version = 1 AND id > %s"
            " ORDER BY id LIMIT %s",
            (after, _limit(limit)),
        )
        return [_event(row) for row in rows]

    def legacy_key_names(self, namespace: str, kind: str, owner: str) -> set[str]:
        return _legacy_key_names(self._conn, namespace, kind, owner)

    def legacy_name_shared(self, name: str, namespace: str, kind: str, owner: str) -> bool:
        if kind not in _OTHER_OWNER_SQL:
            return False
        other = _OTHER_OWNER_SQL[kind]
        rows = self._all(
            f"SELECT 1 FROM memories WHERE seal_version = 1 AND scope_id = %s AND {other}"
            f" UNION ALL SELECT 1 FROM history WHERE seal_version = 1 AND scope_id = %s"
            f" AND {other} LIMIT 1",
            (name, namespace, owner, name, namespace, owner),
        )
        return bool(rows)

    # writes

    def insert(self, row: MemoryRow, terms: IndexTerms) -> None:
        self.insert_many([(row, terms)])

    def insert_many(self, rows: Sequence[tuple[MemoryRow, IndexTerms]]) -> None:
        """One pipelined ``executemany`` (a round trip for the lot, not one per row)."""
        if not rows:
            return
        with self._conn.cursor() as cursor:
            cursor.executemany(
                _INSERT_MEMORY, [_memory_params(row, terms) for row, terms in rows], returning=True
            )
            for row, _ in rows:
                found = cursor.fetchone()
                assert found is not None
                row.rowid = int(found[0])
                cursor.nextset()

    def rewrite(self, row: MemoryRow, terms: IndexTerms | None) -> None:
        params: list[Any] = [
            row.scope_id,
            row.seal_version,
            row.hash,
            row.text_box,
            row.metadata_box,
            row.vector_box,
            row.context_box,
            row.updated_at,
            row.entities_box,
        ]
        query = (
            "UPDATE memories SET scope_id = %s, seal_version = %s, hash = %s, text_box = %s,"
            " metadata_box = %s, vector_box = %s, context_box = %s, updated_at = %s,"
            " entities_box = %s"
        )
        if terms is not None:
            # The trigger rewrites the row's memory_entities entries.
            query += ", terms_body = %s, terms_context = %s, terms_entities = %s"
            params += [terms.body, terms.context, terms.entities]
        self._conn.execute(query + " WHERE rowid = %s", [*params, row.rowid])

    def delete(self, row: MemoryRow) -> None:
        self._conn.execute("DELETE FROM memories WHERE rowid = %s", (row.rowid,))

    def add_history(self, event: HistoryRow) -> None:
        self.add_history_many([event])

    def add_history_many(self, events: Sequence[HistoryRow]) -> None:
        if events:
            with self._conn.cursor() as cursor:
                cursor.executemany(_INSERT_HISTORY, [_history_params(e) for e in events])

    def rewrite_event(self, event: HistoryRow) -> None:
        self._conn.execute(
            "UPDATE history SET scope_id = %s, seal_version = %s, old_box = %s, new_box = %s,"
            " meta_box = %s WHERE id = %s",
            (
                event.scope_id,
                event.seal_version,
                event.old_box,
                event.new_box,
                event.meta_box,
                event.id,
            ),
        )

    def bump_version(self, scope_id: str) -> tuple[int, int]:
        found = self._conn.execute(
            "INSERT INTO scope_versions AS v VALUES (%s, 1) ON CONFLICT (scope_id)"
            " DO UPDATE SET version = v.version + 1 RETURNING version",
            (scope_id,),
        ).fetchone()
        assert found is not None
        after = int(found[0])
        return after - 1, after

    def bump_versions(self, scope_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """One statement; rows are inserted (and their locks taken) in the order given."""
        if not scope_ids:
            return {}
        rows = self._all(
            "INSERT INTO scope_versions AS v SELECT s, 1 FROM unnest(%s::text[])"
            " WITH ORDINALITY AS u(s, i) ORDER BY i ON CONFLICT (scope_id)"
            " DO UPDATE SET version = v.version + 1 RETURNING scope_id, version",
            (list(scope_ids),),
        )
        return {str(scope_id): (int(after) - 1, int(after)) for scope_id, after in rows}

    def delete_user(self, namespace: str, user_id: str) -> tuple[int, int]:
        memories = self._conn.execute(
            "DELETE FROM memories WHERE namespace = %s AND user_id = %s", (namespace, user_id)
        ).rowcount
        events = self._conn.execute(
            "DELETE FROM history WHERE namespace = %s AND user_id = %s", (namespace, user_id)
        ).rowcount
        return memories, events

    def delete_scope_rows(self, scope_id: str) -> tuple[int, int, int]:
        memories = self._conn.execute(
            "DELETE FROM memories WHERE scope_id = %s", (scope_id,)
        ).rowcount
        events = self._conn.execute("DELETE FROM history WHERE scope_id = %s", (scope_id,)).rowcount
        jobs = self._conn.execute("DELETE FROM jobs WHERE scope_id = %s", (scope_id,)).rowcount
        return memories, events, jobs

    def delete_namespace(self, namespace: str) -> None:
        # Every key scope that held rows gets a later version: no cache elsewhere stays current.
        # scope_versions rows stay: a version only ever grows.
        self._conn.execute(
            "UPDATE scope_versions SET version = version + 1 WHERE scope_id IN"
            " (SELECT scope_id FROM memories WHERE namespace = %s"
            " UNION SELECT scope_id FROM history WHERE namespace = %s)",
            (namespace, namespace),
        )
        self._conn.execute("DELETE FROM memories WHERE namespace = %s", (namespace,))
        self._conn.execute("DELETE FROM history WHERE namespace = %s", (namespace,))

    def insert_job(self, job: JobRow) -> None:
        self._conn.execute(
            f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({_JOB_VALUES})", astuple(job)
        )

    def delete_jobs(self, namespace: str, user_id: str | None = None) -> int:
        if user_id is None:
            return self._conn.execute(
                "DELETE FROM jobs WHERE namespace = %s", (namespace,)
            ).rowcount
        return self._conn.execute(
            "DELETE FROM jobs WHERE namespace = %s AND user_id = %s", (namespace, user_id)
        ).rowcount

    def jobs_under_key(
        self, namespace: str, user_id: str, scope_id: str, limit: int
    ) -> list[JobRow]:
        # FOR UPDATE: a worker's complete of one of these waits until the rotation commits.
        rows = self._all(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE namespace = %s AND user_id = %s"
            " AND scope_id = %s ORDER BY id LIMIT %s FOR UPDATE",
            (namespace, user_id, scope_id, _limit(limit)),
        )
        return [_job(row) for row in rows]

    def rewrite_job(self, job: JobRow) -> None:
        self._conn.execute(
            "UPDATE jobs SET scope_id = %s, payload_box = %s, result_box = %s WHERE id = %s",
            (job.scope_id, job.payload_box, job.result_box, job.id),
        )

    def webhook(self, namespace: str) -> WebhookRow | None:
        rows = self._all(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE namespace = %s", (namespace,)
        )
        return _webhook(rows[0]) if rows else None

    def insert_deliveries(self, rows: Sequence[DeliveryRow]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO webhook_outbox ({_DELIVERY_COLUMNS}) VALUES ({_DELIVERY_VALUES})",
                [row.columns() for row in rows],
            )

    def shred_delivery_texts(self, namespace: str, user_id: str) -> int:
        return int(
            self._conn.execute(
                "UPDATE webhook_outbox SET text_box = NULL, scope_id = NULL"
                " WHERE namespace = %s AND user_id = %s AND text_box IS NOT NULL",
                (namespace, user_id),
            ).rowcount
        )

    def delete_deliveries(self, namespace: str) -> int:
        return int(
            self._conn.execute(
                "DELETE FROM webhook_outbox WHERE namespace = %s", (namespace,)
            ).rowcount
        )


_INSERT_MEMORY = (
    "INSERT INTO memories (id, namespace, scope_id, user_id, agent_id, run_id, actor_id,"
    " role, memory_type, hash, text_box, metadata_box, vector_box, context_box,"
    " created_at, updated_at, expires_at, importance, access_count, last_accessed_at,"
    " seal_version, terms_body, terms_context, entities_box, terms_entities) VALUES (%s, %s, %s,"
    " %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " RETURNING rowid"
)
_INSERT_HISTORY = (
    f"INSERT INTO history ({_HISTORY_COLUMNS}) VALUES"
    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def _memory_params(row: MemoryRow, terms: IndexTerms) -> tuple[Any, ...]:
    return (
        row.id,
        row.namespace,
        row.scope_id,
        row.user_id,
        row.agent_id,
        row.run_id,
        row.actor_id,
        row.role,
        row.memory_type,
        row.hash,
        row.text_box,
        row.metadata_box,
        row.vector_box,
        row.context_box,
        row.created_at,
        row.updated_at,
        row.expires_at,
        row.importance,
        row.access_count,
        row.last_accessed_at,
        row.seal_version,
        terms.body,
        terms.context,
        row.entities_box,
        terms.entities,
    )


def _history_params(event: HistoryRow) -> tuple[Any, ...]:
    return (
        event.id,
        event.memory_id,
        event.namespace,
        event.scope_id,
        event.user_id,
        event.agent_id,
        event.run_id,
        event.event,
        event.old_box,
        event.new_box,
        event.actor_id,
        event.role,
        event.created_at,
        event.seal_version,
        event.meta_box,
    )
