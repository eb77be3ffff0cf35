"""The embedded store: one SQLite file, rows already encrypted by the caller (``DataStore``).

The store sees ciphertext and keyed token hashes only. Metadata filters still run in SQL: the
function ``mv_meta`` (a row's key id, id, box, namespace, owner columns and seal version) is
registered on each connection and decrypts a row's metadata inside the query, so the filter is
compiled, not applied after the fact. The metadata part of a filter is one ``mv_match`` call per
row (``filter_sql.to_sql``): the row's metadata is decrypted and parsed once per row and statement,
whatever the number of conditions, and the parsed filter is named by a bound token, never re-sent
per row. ``mv_match`` also checks the statement's time budget (``max_filter_seconds``). Every
read is restricted to one namespace and one scope in its WHERE clause.

Connections are per thread (SQLite in WAL mode lets readers run beside the writer); writes take
``BEGIN IMMEDIATE`` so two writers queue instead of failing half-way.

Defence in depth behind the filter compiler (which binds every key and value, see
``memvault.filters``): each connection has an authorizer that refuses ATTACH, DETACH and every
PRAGMA that sets a value (but the checkpoint), and, while a filtered read is prepared,
everything but reading the ``memories`` table and ``json_each`` and calling the functions a
compiled filter uses. It runs when SQLite prepares a statement, not per row.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import astuple
from pathlib import Path
from typing import Any

from memvault.errors import FilterTooExpensive, MemvaultError, StorageBusy, StorageError
from memvault.filters import COLUMNS, FilterNode, Matcher, compile_matcher, fold
from memvault.lru import memoize
from memvault.storage.base import Cursor, DedupKey, MetaDecryptor, check_table
from memvault.storage.files import open_sqlite
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
from memvault.storage.sqlite import transfer
from memvault.storage.sqlite.backup import snapshot_file
from memvault.storage.sqlite.errors import translate, translated
from memvault.storage.sqlite.filter_sql import MATCH_ARITY, to_sql
from memvault.storage.sqlite.migrations import applied, migrate
from memvault.validation import Scope

__all__ = ["DB_NAME", "SQLiteStore"]

WRITE_PROBE_BYTES = 64 * 1024  # /readyz's write after a write fault

DB_NAME = "memvault.db"
# The decrypted-metadata cache (``mv_meta``): a byte budget, and an entry cap that keeps even
# entries of the largest metadata (box + JSON) within ``METADATA_CACHE_ENTRIES`` x 32 KB.
METADATA_CACHE_BYTES = 32 * 1024 * 1024
METADATA_CACHE_ENTRIES = 8192

_PRAGMAS = frozenset({"wal_checkpoint"})
_FILTER_TABLES = frozenset({"memories", "json_each"})
_FILTER_FUNCTIONS = frozenset({"mv_meta", "mv_match", "mv_fold", "coalesce", "typeof", "instr"})
_META_SQL = (
    "mv_meta(m.scope_id, m.id, m.metadata_box, m.namespace, m.user_id, m.agent_id,"
    " m.run_id, m.seal_version)"
)

_MEMORY_COLUMNS = (
    "rowid, id, namespace, scope_id, user_id, agent_id, run_id, actor_id, role, memory_type, hash,"
    " text_box, metadata_box, vector_box, context_box, created_at, updated_at, expires_at,"
    " importance, access_count, last_accessed_at, seal_version, entities_box"
)
_API_KEY_COLUMNS = (
    "id, namespace, role, name, user_id, secret_hash, created_at, expires_at, revoked_at,"
    " last_used_at"
)
_AUDIT_COLUMNS = (
    "seq, at, namespace, key_id, action, user_id, memory_ids, source, outcome, prev_hash, hash"
)
_JOB_COLUMNS = (
    "id, namespace, user_id, agent_id, run_id, scope_id, kind, status, attempts, max_attempts,"
    " lease_owner, lease_until, run_after, payload_box, result_box, error_code, created_at,"
    " updated_at"
)
_WEBHOOK_COLUMNS = "namespace, url, include_text, secret_box, created_at, updated_at"
_DELIVERY_COLUMNS = (
    "id, namespace, event, memory_id, user_id, agent_id, run_id, scope_id, text_box, status,"
    " attempts, max_attempts, lease_owner, lease_until, run_after, last_error, last_status,"
    " created_at, updated_at"
)
_HISTORY_COLUMNS = (
    "id, memory_id, namespace, scope_id, user_id, agent_id, run_id, event, old_box, new_box,"
    " actor_id, role, created_at, seal_version, meta_box"
)


def _scope_sql(namespace: str, scope: Scope, *, exact: bool = False) -> tuple[str, list[Any]]:
    """``exact``: the other scope ids must be absent too (``IS NULL``), not merely unconstrained."""
    clauses = ["m.namespace = ?"]
    params: list[Any] = [namespace]
    for name in ("user_id", "agent_id", "run_id"):
        value = getattr(scope, name)
        if value is not None or exact:
            clauses.append(f"m.{name} IS ?")
            params.append(value)
    return " AND ".join(clauses), params


class SQLiteStore:
    """Rows, history, the full-text index, scope versions, API keys and the audit chain in
    ``memvault.db``."""

    backend = "sqlite"

    def __init__(
        self,
        home: Path,
        *,
        synchronous: str,
        decrypt_metadata: MetaDecryptor,
        max_filter_seconds: float = 2.0,
        busy_timeout_seconds: float = 30.0,
    ) -> None:
        self.path = home / DB_NAME
        self._synchronous = synchronous
        self._max_filter_seconds = max_filter_seconds
        # SQLite's busy_timeout, and as long for a writer of this process waiting for another.
        self._busy_timeout = busy_timeout_seconds
        self._local = threading.local()
        # Each connection with the thread it belongs to (``close`` closes only the idle ones).
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        # The writers of this process queue here, woken the moment the lock is free. Left to
        # SQLite's busy handler, a thread that finds the write lock taken sleeps 1, 2, 5, 10, ...
        # 100 ms between tries, and under a busy job pool a request waited tens of ms for a lock
        # free most of that time. Other processes still meet at BEGIN IMMEDIATE (busy_timeout).
        self._writer = threading.RLock()
        self._closed = False
        # The code of the last write's fault (storage_busy), None once a write commits again.
        self._write_fault: str | None = None
        self._udf_errors = threading.local()
        # Decrypted metadata (every tenant's plaintext): bounded in bytes, not only entries.
        self._decrypt_metadata = memoize(
            decrypt_metadata, max_bytes=METADATA_CACHE_BYTES, max_entries=METADATA_CACHE_ENTRIES
        )
        with translated("opening the store"):
            migrate(self._db())

    # --- connections and transactions ---------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            return db
        if self._closed:
            raise StorageError("the store is closed")
        db = open_sqlite(
            self.path, synchronous=self._synchronous, busy_timeout_seconds=self._busy_timeout
        )
        db.row_factory = sqlite3.Row
        db.create_function("mv_meta", 8, self._mv_meta, deterministic=True)
        db.create_function("mv_fold", 1, _fold_or_none, deterministic=True)
        db.create_function("mv_match", MATCH_ARITY, self._mv_match)
        db.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        db.set_authorizer(self._authorize)
        # json_each declares its table on first use (a write to the schema, as the authorizer
        # sees it): do it now, so that a filtered read never needs more than reading it.
        db.execute("SELECT 1 FROM json_each('[]')")
        with self._connections_lock:
            self._connections.append((threading.current_thread(), db))
        self._local.db = db
        return db

    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None
    ) -> int:
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA and arg2 is not None and arg1 not in _PRAGMAS:
            return sqlite3.SQLITE_DENY  # a PRAGMA that sets something
        if not getattr(self._local, "filtered", False):
            return sqlite3.SQLITE_OK
        allowed = (
            action == sqlite3.SQLITE_SELECT
            or (action == sqlite3.SQLITE_READ and arg1 in _FILTER_TABLES)
            or (action == sqlite3.SQLITE_FUNCTION and arg2 in _FILTER_FUNCTIONS)
        )
        return sqlite3.SQLITE_OK if allowed else sqlite3.SQLITE_DENY

    def _mv_meta(
        self,
        scope_id: str,
        memory_id: str,
        box: bytes,
        namespace: str,
        user_id: str | None,
        agent_id: str | None,
        run_id: str | None,
        seal_version: int,
    ) -> str | None:
        owners = (user_id, agent_id, run_id)
        try:
            return self._decrypt_metadata(
                scope_id, memory_id, bytes(box), namespace, owners, seal_version
            )
        except MemvaultError as exc:
            # SQLite would replace the exception with a generic one: keep it for the caller.
            self._udf_errors.error = exc
            return None

    def _bind_filter(self, node: FilterNode) -> int:
        """A token naming ``node`` for the next statement of this thread (``mv_match``'s last
        argument): the parsed filter is used as it is, never re-sent or re-parsed per row."""
        bound: dict[int, Matcher] | None = getattr(self._local, "bound", None)
        if bound is None:
            bound = self._local.bound = {}
        token = len(bound) + 1
        bound[token] = compile_matcher(node)
        return token

    def _mv_match(self, meta_json: str | None, *args: Any) -> int:
        """Whether a row passes the metadata part of a filter: one call per row, the metadata
        decrypted (``mv_meta``, the first argument) and parsed once, then the filter's compiled
        ``filters.matches``."""
        budget: _WorkBudget | None = getattr(self._local, "budget", None)
        if budget is not None and budget.exhausted():
            raise sqlite3.OperationalError("interrupted")  # _query reports FilterTooExpensive
        if meta_json is None:  # the decryption failed: _query raises its error
            return 0
        *columns, token = args
        matcher: Matcher = self._local.bound[token]
        record: dict[str, Any] = dict(zip(COLUMNS, columns, strict=True))
        record["metadata"] = json.loads(meta_json)
        return int(matcher(record))

    def _raise_udf_error(self) -> None:
        error = getattr(self._udf_errors, "error", None)
        if error is not None:
            self._udf_errors.error = None
            raise error

    def forget_decrypted(self) -> None:
        """Drop the cache of decrypted metadata (after an erase: nothing of it stays in memory)."""
        self._decrypt_metadata.cache_clear()

    def close(self) -> None:
        """Close the store: this thread's connection and those of threads that ended are closed
        now. Another live thread's connection is never closed from here: closing a connection
        under a query another thread is running can crash the interpreter (a job worker still
        finishing when its Memory closed did, in CI). Its references are dropped instead: an
        idle one is closed as soon as nothing holds it, one in use when its query returns, and
        that thread's next call finds the store closed (``StorageError``)."""
        me = threading.current_thread()
        with self._connections_lock:
            self._closed = True
            held, self._connections = self._connections, []
        self._local = threading.local()  # every thread's cached connection is forgotten
        for owner, db in held:
            if owner is me or not owner.is_alive():
                db.close()

    @contextmanager
    def transaction(self) -> Iterator[SQLiteTx]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; any error rolls everything back."""
        db = self._db()
        if not self._writer.acquire(timeout=self._busy_timeout):
            raise StorageBusy("the store is busy with other writes; try again")
        try:
            with translated("starting a write"):
                db.execute("BEGIN IMMEDIATE")
            try:
                with translated("a write"):
                    yield SQLiteTx(self, db)
                    db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with suppress(sqlite3.Error):
                        # SQLite has already rolled back after a full disk or an I/O error.
                        db.execute("ROLLBACK")
                raise
        except StorageBusy as exc:
            self._write_fault = exc.code
            raise
        else:
            self._write_fault = None
        finally:
            self._writer.release()

    def _query(
        self, sql: str, params: Sequence[Any] = (), *, filtered: bool = False
    ) -> list[sqlite3.Row]:
        """``filtered``: the statement holds a compiled filter; the authorizer narrows to it."""
        db = self._db()
        self._local.filtered = filtered
        budget = _WorkBudget(self._max_filter_seconds) if filtered else None
        self._local.budget = budget
        if budget is not None:
            # A filter's cost is the caller's choice (conditions x rows): it gets a time budget,
            # checked every few thousand SQLite instructions, so no request can hold a core.
            db.set_progress_handler(budget.exhausted, _PROGRESS_INSTRUCTIONS)
        try:
            rows = db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            self._raise_udf_error()
            if budget is not None and budget.spent:
                raise FilterTooExpensive(
                    f"the filter took more than {self._max_filter_seconds:g} s over this scope:"
                    " use fewer conditions on metadata, or raise max_filter_seconds"
                ) from None
            raise translate(exc, "a read") from exc
        finally:
            self._local.filtered = False
            self._local.budget = None
            self._local.bound = None  # the filters bound for this statement
            if budget is not None:
                db.set_progress_handler(None, 0)
        self._raise_udf_error()
        return rows

    # --- store metadata and status ------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM store_meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta_once(self, key: str, value: str) -> str:
        """Set ``key`` unless set; return the value that holds now."""
        with self.transaction() as tx:
            tx.db.execute("INSERT OR IGNORE INTO store_meta VALUES (?, ?)", (key, value))
            row = tx.db.execute("SELECT value FROM store_meta WHERE key = ?", (key,)).fetchone()
            return str(row[0])

    def check_writes(self) -> None:
        # Only after a failed write: then one write (a row of store_meta) shows whether the
        # fault cleared, so a node taken out of rotation by /readyz comes back by itself. The
        # row is as large as a batch of memories (WRITE_PROBE_BYTES): a full disk often still
        # has a few free pages, enough for a tiny write but not for the next real one.
        if self._write_fault is None:
            return
        probe = f"{time.time()} ".ljust(WRITE_PROBE_BYTES, ".")
        with self.transaction() as tx:
            tx.db.execute("INSERT OR REPLACE INTO store_meta VALUES ('write_probe', ?)", (probe,))

    def status(self) -> StoreStatus:
        with translated("reading the status"):
            names = tuple(applied(self._db()))
        memories = int(self._query("SELECT count(*) FROM memories")[0][0])
        events = int(self._query("SELECT count(*) FROM history")[0][0])
        size = sum(
            path.stat().st_size for path in (self.path, Path(f"{self.path}-wal")) if path.exists()
        )
        return StoreStatus(
            backend=self.backend,
            location=str(self.path),
            schema_version=names[-1] if names else "",
            migrations=names,
            memories=memories,
            history_events=events,
            bytes_used=size,
        )

    # --- raw rows (Exportable: memvault migrate) -----------------------------------------------

    def export_batch(self, table: str, after: Cursor, limit: int) -> tuple[list[ExportRow], Cursor]:
        check_table(table, keys=False)
        with translated("exporting rows"):
            return transfer.export_batch(self._db(), table, after, limit)

    def import_batch(self, table: str, rows: Sequence[ExportRow]) -> Imported:
        check_table(table, keys=False)
        with self.transaction() as tx:
            return transfer.import_batch(tx.db, table, rows)

    def snapshot(self, directory: Path) -> Snapshot:
        """``memvault.db`` as of one commit, into ``directory`` (``sqlite/backup.py``)."""
        return snapshot_file(self._db(), directory / DB_NAME, keys=False)

    def scope_ids_in_use(self) -> set[str]:
        rows = self._query(
            "SELECT scope_id FROM memories UNION SELECT scope_id FROM history"
            " UNION SELECT scope_id FROM jobs"
        )
        return {str(row[0]) for row in rows}

    def count_rows(self, table: str) -> int:
        check_table(table, keys=False)
        with translated("counting rows"):
            return transfer.count_rows(self._db(), table)

    # --- reads --------------------------------------------------------------------------------

    def get(self, namespace: str, memory_id: str, now: str | None = None) -> MemoryRow | None:
        # "+m.namespace": look rows up by the unique id index, never by a namespace scan.
        sql = f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE +m.namespace = ? AND m.id = ?"
        params: list[Any] = [namespace, memory_id]
        if now is not None:
            sql += " AND (m.expires_at IS NULL OR m.expires_at > ?)"
            params.append(now)
        rows = self._query(sql, params)
        return _memory(rows[0]) if rows else None

    def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, MemoryRow]:
        found: dict[str, MemoryRow] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            rows = self._query(
                f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE +m.namespace = ?"
                f" AND m.id IN ({', '.join('?' * len(chunk))})",
                [namespace, *chunk],
            )
            found.update((row["id"], _memory(row)) for row in rows)
        return found

    def _where(
        self,
        namespace: str,
        scope: Scope,
        node: FilterNode | None,
        now: str | None,
        *,
        exact: bool = False,
    ) -> tuple[str, list[Any]]:
        where, params = _scope_sql(namespace, scope, exact=exact)
        if now is not None:
            where += " AND (m.expires_at IS NULL OR m.expires_at > ?)"
            params.append(now)
        if node is not None:
            sql, filter_params = to_sql(node, _column_sql, _META_SQL, self._bind_filter)
            where += f" AND {sql}"
            params.extend(filter_params)
        return where, params

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
        where, params = self._where(namespace, scope, node, now, exact=exact)
        order = "DESC" if newest_first else "ASC"
        rows = self._query(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE {where}"
            f" ORDER BY m.rowid {order} LIMIT ? OFFSET ?",
            [*params, limit, offset],
            filtered=node is not None,
        )
        return [_memory(row) for row in rows]

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
        in all: the filter runs once (a page then a count ran it twice per list request)."""
        where, params = self._where(namespace, scope, node, now)
        matched = self._query(
            f"SELECT m.rowid FROM memories m WHERE {where} ORDER BY m.rowid DESC",
            params,
            filtered=node is not None,
        )
        chosen = [row[0] for row in matched[offset : offset + limit]]
        if not chosen:
            return [], len(matched)
        rows = self._query(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m"
            " WHERE m.rowid IN (SELECT value FROM json_each(?)) ORDER BY m.rowid DESC",
            [json.dumps(chosen)],
        )
        return [_memory(row) for row in rows], len(matched)

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
        where, params = self._where(namespace, scope, node, now)
        if among is not None:
            where = f"m.id IN (SELECT value FROM json_each(?)) AND {where}"
            params = [json.dumps(list(among)), *params]
        rows = self._query(
            f"SELECT m.id FROM memories m WHERE {where}", params, filtered=node is not None
        )
        return {row[0] for row in rows}

    # --- entities (core/entities.py) ---------------------------------------------------------

    def entity_terms(self, namespace: str, ids: Sequence[str]) -> dict[str, tuple[int, str, str]]:
        found: dict[str, tuple[int, str, str]] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            rows = self._query(
                "SELECT m.id, m.rowid, m.scope_id, m.terms_entities FROM memories m"
                f" WHERE +m.namespace = ? AND m.id IN ({', '.join('?' * len(chunk))})",
                [namespace, *chunk],
            )
            found.update((row[0], (int(row[1]), row[2], row[3])) for row in rows)
        return found

    def entity_frequencies(
        self, scope_ids: Sequence[str], hashes: Sequence[str], now: str | None = None
    ) -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        scopes = list(dict.fromkeys(scope_ids))[:500]
        for start in range(0, len(hashes), 400):
            chunk = list(hashes[start : start + 400])
            marks = f"e.entity_hash IN ({', '.join('?' * len(chunk))})" + (
                f" AND e.scope_id IN ({', '.join('?' * len(scopes))})"
            )
            rows = self._query(
                f"SELECT e.scope_id, e.entity_hash, count(*) FROM memory_entities e WHERE {marks}"
                " GROUP BY e.scope_id, e.entity_hash",
                [*chunk, *scopes],
            )
            found.update(((row[0], row[1]), int(row[2])) for row in rows)
            if now is None:
                continue
            # Less the expired memories not purged yet: few, found through the expiry index
            # (CROSS JOIN keeps that order), so a common entity is still counted from the
            # entity index alone.
            expired = self._query(
                "SELECT e.scope_id, e.entity_hash, count(*) FROM memories m"
                " CROSS JOIN memory_entities e"
                f" WHERE m.expires_at <= ? AND e.memory_rowid = m.rowid AND {marks}"
                " GROUP BY e.scope_id, e.entity_hash",
                [now, *chunk, *scopes],
            )
            for scope_id, value, count in expired:
                left = found.get((scope_id, value), 0) - int(count)
                if left > 0:
                    found[(scope_id, value)] = left
                else:
                    found.pop((scope_id, value), None)
        return found

    def entity_postings(
        self, scope_ids: Sequence[str], hashes: Sequence[str]
    ) -> list[tuple[str, str, int]]:
        found: list[tuple[str, str, int]] = []
        scopes = list(dict.fromkeys(scope_ids))[:500]
        for start in range(0, len(hashes), 400):
            chunk = list(hashes[start : start + 400])
            rows = self._query(
                "SELECT scope_id, entity_hash, memory_rowid FROM memory_entities"
                f" WHERE entity_hash IN ({', '.join('?' * len(chunk))})"
                f" AND scope_id IN ({', '.join('?' * len(scopes))})",
                [*chunk, *scopes],
            )
            found.extend((row[0], row[1], int(row[2])) for row in rows)
        return found

    def link_rows(self, namespace: str, rowids: Sequence[int], now: str) -> list[LinkedRow]:
        found: list[LinkedRow] = []
        for start in range(0, len(rowids), 500):
            chunk = list(rowids[start : start + 500])
            rows = self._query(
                "SELECT m.rowid, m.id, m.scope_id, m.user_id, m.agent_id, m.run_id FROM memories m"
                f" WHERE m.rowid IN ({', '.join('?' * len(chunk))}) AND +m.namespace = ?"
                " AND (m.expires_at IS NULL OR m.expires_at > ?)",
                [*chunk, namespace, now],
            )
            found.extend(LinkedRow(*row) for row in rows)
        return found

    def count_without_entities(self, namespace: str) -> int:
        rows = self._query(
            "SELECT count(*) FROM memories m WHERE m.namespace = ? AND m.entities_box IS NULL",
            [namespace],
        )
        return int(rows[0][0])

    def entity_counts(
        self, namespace: str, scope: Scope, now: str, limit: int
    ) -> list[tuple[str, str, int, str]]:
        where, params = self._where(namespace, scope, None, now)
        rows = self._query(
            "SELECT m.scope_id, e.entity_hash, count(*) AS n, max(m.id)"
            f" FROM memory_entities e JOIN memories m ON m.rowid = e.memory_rowid WHERE {where}"
            " GROUP BY m.scope_id, e.entity_hash ORDER BY n DESC, e.entity_hash LIMIT ?",
            [*params, limit],
        )
        return [(row[0], row[1], int(row[2]), row[3]) for row in rows]

    def scope_ids(self, namespace: str, scope: Scope) -> list[str]:
        """The key scopes that hold rows of a query scope."""
        where, params = _scope_sql(namespace, scope)
        rows = self._query(f"SELECT DISTINCT m.scope_id FROM memories m WHERE {where}", params)
        return [row[0] for row in rows]

    def scope_version(self, scope_id: str) -> int:
        rows = self._query("SELECT version FROM scope_versions WHERE scope_id = ?", (scope_id,))
        return int(rows[0][0]) if rows else 0

    def scope_vectors(
        self,
        scope_id: str,
        consume: Callable[[list[VectorRow]], None],
        *,
        chunk: int = 8192,
    ) -> int:
        """Hand every vector and the index terms of one key scope to ``consume``, ``chunk`` rows
        at a time (so a large scope is never held twice in memory), all from one snapshot;
        returns the scope version that snapshot holds."""
        db = self._db()
        with translated("reading a scope"):
            db.execute("BEGIN")
            try:
                version_row = db.execute(
                    "SELECT version FROM scope_versions WHERE scope_id = ?", (scope_id,)
                ).fetchone()
                cursor = db.execute(
                    "SELECT m.id, m.namespace, m.user_id, m.agent_id, m.run_id, m.seal_version,"
                    " m.expires_at, m.vector_box,"
                    " f.body, f.context FROM memories m JOIN memories_fts f ON f.rowid = m.rowid"
                    " WHERE m.scope_id = ? ORDER BY m.rowid",
                    (scope_id,),
                )
                while rows := cursor.fetchmany(chunk):
                    consume([VectorRow(*row) for row in rows])
            finally:
                db.execute("COMMIT")
        return int(version_row[0]) if version_row else 0

    def vectors_of(self, scope_id: str, ids: Sequence[str]) -> list[VectorRow]:
        """The sealed vectors of the scope's rows among ``ids`` (one read)."""
        rows = self._query(
            "SELECT id, namespace, user_id, agent_id, run_id, seal_version, expires_at,"
            " vector_box, '', '' FROM memories"
            # "+scope_id": looked up by id (unique), not by scanning the scope's rows.
            " WHERE id IN (SELECT value FROM json_each(?)) AND +scope_id = ?",
            (json.dumps(list(ids)), scope_id),
        )
        return [VectorRow(*row) for row in rows]

    def user_rows(self, namespace: str, user_id: str) -> tuple[int, int]:
        """How many memories and history events a user has in a namespace."""
        memories = self._query(
            "SELECT count(*) FROM memories WHERE namespace = ? AND user_id = ?",
            (namespace, user_id),
        )[0][0]
        events = self._query(
            "SELECT count(*) FROM history WHERE namespace = ? AND user_id = ?", (namespace, user_id)
        )[0][0]
        return int(memories), int(events)

    def owner_counts(self, namespace: str, user_id: str | None, now: str) -> list[OwnerCount]:
        sql = (
            "SELECT user_id, agent_id, run_id, count(*), min(created_at), max(updated_at)"
            " FROM memories WHERE namespace = ? AND (expires_at IS NULL OR expires_at > ?)"
        )
        params: list[Any] = [namespace, now]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        rows = self._query(sql + " GROUP BY user_id, agent_id, run_id", params)
        return [OwnerCount(r[0], r[1], r[2], int(r[3]), r[4], r[5]) for r in rows]

    def history_of_user(self, namespace: str, user_id: str) -> list[HistoryRow]:
        rows = self._query(
            f"SELECT {_HISTORY_COLUMNS} FROM history"
            " WHERE namespace = ? AND user_id = ? ORDER BY memory_id, seq",
            (namespace, user_id),
        )
        return [_event(row) for row in rows]

    def history(self, namespace: str, memory_id: str) -> list[HistoryRow]:
        rows = self._query(
            f"SELECT {_HISTORY_COLUMNS} FROM history"
            " WHERE namespace = ? AND memory_id = ? ORDER BY seq",
            (namespace, memory_id),
        )
        return [_event(row) for row in rows]

    def expired(self, now: str, limit: int) -> list[MemoryRow]:
        """Expired memories of every namespace, oldest expiry first."""
        rows = self._query(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE m.expires_at IS NOT NULL"
            " AND m.expires_at <= ? ORDER BY m.expires_at LIMIT ?",
            (now, limit),
        )
        return [_memory(row) for row in rows]

    def legacy_key_names(self, namespace: str, kind: str, owner: str) -> set[str]:
        """The pre-v2 key names that legacy rows of a key owner name (see codec.legacy_keys)."""
        return _legacy_key_names(self._db(), namespace, kind, owner)

    def after_erase(self) -> None:
        """Fold the WAL into the database and truncate it (after erasing, nothing lingers)."""
        with translated("a checkpoint"):
            self._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def namespace_settings(self, namespace: str) -> dict[str, Any]:
        rows = self._query(
            "SELECT secret_policy, default_ttl_seconds, extraction_instructions,"
            " reconciliation_instructions FROM namespace_settings WHERE namespace = ?",
            (namespace,),
        )
        return namespace_rules(rows[0] if rows else None)

    def set_namespace_settings(self, namespace: str, rules: Mapping[str, Any]) -> None:
        with self.transaction() as tx:
            tx.db.execute(
                "INSERT INTO namespace_settings (namespace, secret_policy, default_ttl_seconds,"
                " extraction_instructions, reconciliation_instructions) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (namespace) DO UPDATE SET secret_policy = excluded.secret_policy,"
                " default_ttl_seconds = excluded.default_ttl_seconds,"
                " extraction_instructions = excluded.extraction_instructions,"
                " reconciliation_instructions = excluded.reconciliation_instructions",
                (namespace, *rules_values(rules)),
            )

    def scope_stats(
        self, namespace: str, now: str
    ) -> list[tuple[str | None, str | None, str, int]]:
        rows = self._query(
            "SELECT user_id, agent_id, memory_type, count(*) FROM memories"
            " WHERE namespace = ? AND (expires_at IS NULL OR expires_at > ?)"
            " GROUP BY user_id, agent_id, memory_type",
            (namespace, now),
        )
        return [(r[0], r[1], str(r[2]), int(r[3])) for r in rows]

    def namespace_stats(self) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT namespace, sum(memories) AS memories, sum(keys) AS keys FROM ("
            " SELECT namespace, count(*) AS memories, 0 AS keys FROM memories GROUP BY namespace"
            " UNION ALL SELECT namespace, 0, count(*) FROM api_keys GROUP BY namespace)"
            " GROUP BY namespace ORDER BY namespace"
        )
        return [{"name": r[0], "memories": int(r[1]), "keys": int(r[2])} for r in rows]

    def touch(self, namespace: str, ids: Sequence[str], when: str) -> None:
        """Count reads (``access_count``, ``last_accessed_at``); one transaction for all."""
        with self.transaction() as tx:
            tx.db.executemany(
                "UPDATE memories SET access_count = access_count + 1, last_accessed_at = ?"
                " WHERE namespace = ? AND id = ?",
                [(when, namespace, memory_id) for memory_id in ids],
            )

    # --- API keys (ApiKeyRecords) -------------------------------------------------------------

    def insert_api_key(self, row: ApiKeyRow, *, max_live: int | None, now: str) -> bool:
        with self.transaction() as tx:
            if max_live is not None:
                live = tx.db.execute(
                    "SELECT count(*) FROM api_keys WHERE namespace = ? AND revoked_at IS NULL"
                    " AND (expires_at IS NULL OR expires_at > ?)",
                    (row.namespace, now),
                ).fetchone()[0]
                if live >= max_live:
                    return False
            tx.db.execute(
                f"INSERT INTO api_keys ({_API_KEY_COLUMNS}) VALUES ({', '.join('?' * 10)})",
                values(row),
            )
        return True

    def api_key(self, key_id: str) -> ApiKeyRow | None:
        rows = self._query(f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,))
        return ApiKeyRow(*rows[0]) if rows else None

    def api_keys(self, namespace: str | None) -> list[ApiKeyRow]:
        if namespace is None:
            rows = self._query(f"SELECT {_API_KEY_COLUMNS} FROM api_keys ORDER BY created_at")
        else:
            rows = self._query(
                f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE namespace = ? ORDER BY created_at",
                (namespace,),
            )
        return [ApiKeyRow(*row) for row in rows]

    def revoke_api_key(self, key_id: str, namespace: str | None, now: str) -> bool:
        with self.transaction() as tx:
            if namespace is None:
                cursor = tx.db.execute(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?",
                    (now, key_id),
                )
            else:
                cursor = tx.db.execute(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?)"
                    " WHERE id = ? AND namespace = ?",
                    (now, key_id, namespace),
                )
            return cursor.rowcount > 0

    def touch_api_key(self, key_id: str, now: str) -> None:
        with self.transaction() as tx:
            tx.db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, key_id))

    def count_api_keys(self) -> int:
        return int(self._query("SELECT count(*) FROM api_keys")[0][0])

    # --- the audit chain (AuditRecords) -------------------------------------------------------

    def append_audit(self, build: Callable[[int, str], list[AuditRow]]) -> list[AuditRow]:
        with self.transaction() as tx:
            head = tx.db.execute(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            rows = build(int(head[0]), str(head[1])) if head else build(0, "")
            tx.db.executemany(
                f"INSERT INTO audit_log ({_AUDIT_COLUMNS}) VALUES ({', '.join('?' * 11)})",
                [values(r) for r in rows],
            )
        return rows

    def audit_rows(
        self, namespace: str | None, *, limit: int, before: int | None
    ) -> list[AuditRow]:
        sql = f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE 1 = 1"
        params: list[Any] = []
        if namespace is not None:
            sql += " AND namespace = ?"
            params.append(namespace)
        if before is not None:
            sql += " AND seq < ?"
            params.append(before)
        rows = self._query(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit])
        return [AuditRow(*row) for row in rows]

    def audit_chain(self) -> Iterator[AuditRow]:
        after = 0
        while True:
            rows = self._query(
                f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT 1000",
                (after,),
            )
            for row in rows:
                yield AuditRow(*row)
            if len(rows) < 1000:
                return
            after = int(rows[-1][0])

    # --- the job queue (JobStore) -------------------------------------------------------------

    def enqueue(self, job: JobRow) -> None:
        with self.transaction() as tx:
            tx.insert_job(job)

    def claim(self, worker: str, lease_until: str, now: str) -> JobRow | None:
        # BEGIN IMMEDIATE: one claimer at a time in every process, so the job picked is not
        # picked by another before this UPDATE commits.
        with self.transaction() as tx:
            row = tx.db.execute(
                f"UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = ?,"
                f" lease_until = ?, updated_at = ? WHERE id = (SELECT id FROM jobs WHERE"
                f" (status = 'queued' AND run_after <= ?) OR (status = 'running' AND"
                f" lease_until <= ?) ORDER BY run_after, id LIMIT 1) RETURNING {_JOB_COLUMNS}",
                (worker, lease_until, now, now, now),
            ).fetchone()
        return _job(row) if row is not None else None

    def renew(self, job_id: str, worker: str, lease_until: str) -> bool:
        with self.transaction() as tx:
            cursor = tx.db.execute(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND status = 'running'"
                " AND lease_owner = ?",
                (lease_until, job_id, worker),
            )
            return cursor.rowcount > 0

    def complete(
        self, job_id: str, worker: str, result_box: bytes, now: str, *, scope_id: str
    ) -> bool:
        with self.transaction() as tx:
            cursor = tx.db.execute(
                "UPDATE jobs SET status = 'done', result_box = ?, error_code = NULL,"
                " lease_owner = NULL, lease_until = NULL, updated_at = ?"
                " WHERE id = ? AND status = 'running' AND lease_owner = ? AND scope_id = ?",
                (result_box, now, job_id, worker, scope_id),
            )
            return cursor.rowcount > 0

    def fail(
        self, job_id: str, worker: str, error_code: str, retry_at: str | None, now: str
    ) -> bool:
        with self.transaction() as tx:
            cursor = tx.db.execute(
                "UPDATE jobs SET status = CASE WHEN ? IS NULL OR attempts >= max_attempts"
                " THEN 'dead' ELSE 'queued' END, run_after = coalesce(?, run_after),"
                " error_code = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?"
                " WHERE id = ? AND status = 'running' AND lease_owner = ?",
                (retry_at, retry_at, error_code, now, job_id, worker),
            )
            return cursor.rowcount > 0

    def release(self, job_id: str, worker: str, now: str) -> bool:
        with self.transaction() as tx:
            cursor = tx.db.execute(
                "UPDATE jobs SET status = 'queued', attempts = max(attempts - 1, 0),"
                " lease_owner = NULL, lease_until = NULL, updated_at = ?"
                " WHERE id = ? AND status = 'running' AND lease_owner = ?",
                (now, job_id, worker),
            )
            return cursor.rowcount > 0

    def get_job(self, namespace: str, job_id: str) -> JobRow | None:
        rows = self._query(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE namespace = ? AND id = ?", (namespace, job_id)
        )
        return _job(rows[0]) if rows else None

    def list_jobs(
        self, namespace: str, *, status: str | None, user_id: str | None, limit: int
    ) -> list[JobRow]:
        rows = self._query(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE namespace = ? AND (? IS NULL OR status = ?)"
            " AND (? IS NULL OR user_id = ?) ORDER BY id DESC LIMIT ?",
            (namespace, status, status, user_id, user_id, limit),
        )
        return [_job(row) for row in rows]

    def retry_job(self, namespace: str, job_id: str, now: str) -> JobRow | None:
        with self.transaction() as tx:
            row = tx.db.execute(
                f"UPDATE jobs SET status = 'queued', attempts = 0, run_after = ?,"
                f" error_code = NULL, lease_owner = NULL, lease_until = NULL, updated_at = ?"
                f" WHERE namespace = ? AND id = ? AND status IN ('dead', 'failed')"
                f" RETURNING {_JOB_COLUMNS}",
                (now, now, namespace, job_id),
            ).fetchone()
        return _job(row) if row is not None else None

    def delete_jobs(self, namespace: str, user_id: str | None = None) -> int:
        with self.transaction() as tx:
            return tx.delete_jobs(namespace, user_id)

    # --- webhooks and their outbox (WebhookStore) ---------------------------------------------

    def get_webhook(self, namespace: str) -> WebhookRow | None:
        rows = self._query(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE namespace = ?", (namespace,)
        )
        return _webhook(rows[0]) if rows else None

    def create_webhook(self, row: WebhookRow) -> bool:
        with self.transaction() as tx:
            cursor = tx.db.execute(
                f"INSERT INTO webhooks ({_WEBHOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (namespace) DO NOTHING",
                (
                    row.namespace,
                    row.url,
                    int(row.include_text),
                    row.secret_box,
                    row.created_at,
                    row.updated_at,
                ),
            )
            return cursor.rowcount > 0

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
        flag = None if include_text is None else int(include_text)
        with self.transaction() as tx:
            cursor = tx.db.execute(
                "UPDATE webhooks SET url = coalesce(?, url),"
                " include_text = coalesce(?, include_text),"
                " secret_box = coalesce(?, secret_box), updated_at = ? WHERE namespace = ?"
                + (" AND secret_box = ?" if replacing is not None else ""),
                (
                    url,
                    flag,
                    secret_box,
                    now,
                    namespace,
                    *([replacing] if replacing is not None else []),
                ),
            )
            return cursor.rowcount > 0

    def get_delivery(self, namespace: str, delivery_id: str) -> DeliveryRow | None:
        rows = self._query(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_outbox WHERE namespace = ? AND id = ?",
            (namespace, delivery_id),
        )
        return _delivery(rows[0]) if rows else None

    def delete_webhook(self, namespace: str) -> tuple[bool, int]:
        with self.transaction() as tx:
            found = tx.db.execute("DELETE FROM webhooks WHERE namespace = ?", (namespace,))
            dropped = tx.db.execute(
                "DELETE FROM webhook_outbox WHERE namespace = ?", (namespace,)
            ).rowcount
            return found.rowcount > 0, dropped

    def claim_delivery(self, worker: str, lease_until: str, now: str) -> DeliveryRow | None:
        with self.transaction() as tx:
            row = tx.db.execute(
                f"UPDATE webhook_outbox SET status = 'sending', attempts = attempts + 1,"
                f" lease_owner = ?, lease_until = ?, updated_at = ? WHERE id = (SELECT id FROM"
                f" webhook_outbox WHERE (status = 'pending' AND run_after <= ?) OR"
                f" (status = 'sending' AND lease_until <= ?) ORDER BY run_after, id LIMIT 1)"
                f" RETURNING {_DELIVERY_COLUMNS}",
                (worker, lease_until, now, now, now),
            ).fetchone()
        return _delivery(row) if row is not None else None

    def delivered(self, delivery_id: str, worker: str, status: int, now: str) -> bool:
        with self.transaction() as tx:
            cursor = tx.db.execute(
                "UPDATE webhook_outbox SET status = 'delivered', last_status = ?,"
                " last_error = NULL, text_box = NULL, lease_owner = NULL, lease_until = NULL,"
                " updated_at = ? WHERE id = ? AND status = 'sending' AND lease_owner = ?",
                (status, now, delivery_id, worker),
            )
            return cursor.rowcount > 0

    def delivery_failed(
        self,
        delivery_id: str,
        worker: str,
        error_code: str,
        status: int | None,
        retry_at: str | None,
        now: str,
    ) -> bool:
        with self.transaction() as tx:
            cursor = tx.db.execute(
                "UPDATE webhook_outbox SET status = CASE WHEN ? IS NULL"
                " OR attempts >= max_attempts THEN 'dead' ELSE 'pending' END,"
                " run_after = coalesce(?, run_after), last_error = ?, last_status = ?,"
                " lease_owner = NULL, lease_until = NULL, updated_at = ?"
                " WHERE id = ? AND status = 'sending' AND lease_owner = ?",
                (retry_at, retry_at, error_code, status, now, delivery_id, worker),
            )
            return cursor.rowcount > 0

    def list_deliveries(
        self, namespace: str, *, status: str | None, limit: int
    ) -> list[DeliveryRow]:
        rows = self._query(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_outbox WHERE namespace = ?"
            " AND (? IS NULL OR status = ?) ORDER BY id DESC LIMIT ?",
            (namespace, status, status, limit),
        )
        return [_delivery(row) for row in rows]

    def retry_delivery(self, namespace: str, delivery_id: str, now: str) -> DeliveryRow | None:
        with self.transaction() as tx:
            row = tx.db.execute(
                f"UPDATE webhook_outbox SET status = 'pending', attempts = 0, run_after = ?,"
                f" last_error = NULL, lease_owner = NULL, lease_until = NULL, updated_at = ?"
                f" WHERE namespace = ? AND id = ? AND status = 'dead'"
                f" RETURNING {_DELIVERY_COLUMNS}",
                (now, now, namespace, delivery_id),
            ).fetchone()
        return _delivery(row) if row is not None else None

    def prune_deliveries(self, before: str) -> int:
        with self.transaction() as tx:
            return int(
                tx.db.execute(
                    "DELETE FROM webhook_outbox WHERE status = 'delivered' AND updated_at < ?",
                    (before,),
                ).rowcount
            )


class SQLiteTx:
    """One write transaction (``WriteTx``) on the thread's connection, under SQLite's write lock
    (``BEGIN IMMEDIATE``), which already serialises every writer: ``lock`` has nothing to do."""

    def __init__(self, store: SQLiteStore, db: sqlite3.Connection) -> None:
        self._store = store
        self.db = db

    def lock(self, name: str, *, exclusive: bool = True) -> None:
        return None

    def lock_all(self, names: Sequence[str]) -> None:
        return None

    # --- reads (the same connection: they see this transaction's writes) --------------------

    def get(self, namespace: str, memory_id: str) -> MemoryRow | None:
        return self._store.get(namespace, memory_id)

    def scope_rows(self, namespace: str, scope: Scope, *, limit: int) -> list[MemoryRow]:
        return self._store.list_rows(namespace, scope, None, now=None, limit=limit)

    def recent_rows(self, namespace: str, scope: Scope, limit: int) -> list[MemoryRow]:
        return self._store.list_rows(namespace, scope, None, now=None, limit=limit, exact=True)

    def recent_rows_many(
        self, namespace: str, scopes: Sequence[Scope], limit: int
    ) -> dict[Scope, list[MemoryRow]]:
        return {scope: self.recent_rows(namespace, scope, limit) for scope in scopes}

    def find_duplicate(self, row: MemoryRow) -> str | None:
        key = (row.user_id, row.agent_id, row.run_id, row.hash)
        return self.find_duplicates(row.namespace, [key]).get(key)

    def find_duplicates(self, namespace: str, keys: Sequence[DedupKey]) -> dict[DedupKey, str]:
        found: dict[DedupKey, str] = {}
        for key in keys:  # in process: a query per key costs no round trip
            row = self.db.execute(
                "SELECT id FROM memories WHERE namespace = ? AND coalesce(user_id, '') = ?"
                " AND coalesce(agent_id, '') = ? AND coalesce(run_id, '') = ? AND hash = ?",
                (namespace, key[0] or "", key[1] or "", key[2] or "", key[3]),
            ).fetchone()
            if row is not None:
                found[key] = str(row[0])
        return found

    def rows_under_key(
        self, namespace: str, user_id: str, scope_id: str, limit: int
    ) -> list[MemoryRow]:
        found = self.db.execute(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m"
            " WHERE namespace = ? AND user_id = ? AND scope_id = ? LIMIT ?",
            (namespace, user_id, scope_id, limit),
        ).fetchall()
        return [_memory(row) for row in found]

    def events_under_key(
        self, namespace: str, user_id: str, scope_id: str, limit: int
    ) -> list[HistoryRow]:
        found = self.db.execute(
            f"SELECT {_HISTORY_COLUMNS} FROM history"
            " WHERE namespace = ? AND user_id = ? AND scope_id = ? LIMIT ?",
            (namespace, user_id, scope_id, limit),
        ).fetchall()
        return [_event(row) for row in found]

    def legacy_rows(self, after: int, limit: int) -> list[MemoryRow]:
        found = self.db.execute(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m"
            " WHERE seal_version = 1 AND rowid > ? ORDER BY rowid LIMIT ?",
            (after, limit),
        ).fetchall()
        return [_memory(row) for row in found]

    def rows_without_entities(self, namespace: str, after: int, limit: int) -> list[MemoryRow]:
        found = self.db.execute(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m"
            " WHERE namespace = ? AND entities_box IS NULL AND rowid > ? ORDER BY rowid LIMIT ?",
            (namespace, after, limit),
        ).fetchall()
        return [_memory(row) for row in found]

    def set_entities(self, row: MemoryRow, hashes: str) -> None:
        # The trigger rewrites the row's memory_entities entries in this statement.
        self.db.execute(
            "UPDATE memories SET entities_box = ?, terms_entities = ? WHERE rowid = ?",
            (row.entities_box, hashes, row.rowid),
        )

    def legacy_events(self, after: str, limit: int) -> list[HistoryRow]:
        found = self.db.execute(
            f"SELECT {_HISTORY_COLUMNS} FROM history"
            " WHERE seal_version = 1 AND id > ? ORDER BY id LIMIT ?",
            (after, limit),
        ).fetchall()
        return [_event(row) for row in found]

    def legacy_key_names(self, namespace: str, kind: str, owner: str) -> set[str]:
        return _legacy_key_names(self.db, namespace, kind, owner)

    def legacy_name_shared(self, name: str, namespace: str, kind: str, owner: str) -> bool:
        return any(
            self.db.execute(_NAMED_BY_OTHERS[(table, kind)], (name, namespace, owner)).fetchone()
            for table in ("memories", "history")
        )

    # --- writes -------------------------------------------------------------------------------

    def insert(self, row: MemoryRow, terms: IndexTerms) -> None:
        cursor = self.db.execute(
            f"INSERT INTO memories ({_MEMORY_COLUMNS}, terms_entities)"
            f" VALUES ({', '.join('?' * 24)})",
            (
                None,
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
                0,
                None,
                row.seal_version,
                row.entities_box,
                terms.entities,
            ),
        )
        row.rowid = cursor.lastrowid
        self._index(row, terms)

    def insert_many(self, rows: Sequence[tuple[MemoryRow, IndexTerms]]) -> None:
        for row, terms in rows:  # in process: no round trip to save
            self.insert(row, terms)

    def add_history_many(self, events: Sequence[HistoryRow]) -> None:
        for event in events:
            self.add_history(event)

    def _index(self, row: MemoryRow, terms: IndexTerms) -> None:
        self.db.execute(
            "INSERT INTO memories_fts (rowid, body, context) VALUES (?, ?, ?)",
            (row.rowid, terms.body, terms.context),
        )

    def rewrite(self, row: MemoryRow, terms: IndexTerms | None) -> None:
        self.db.execute(
            "UPDATE memories SET scope_id = ?, seal_version = ?, hash = ?, text_box = ?,"
            " metadata_box = ?, vector_box = ?, context_box = ?, updated_at = ?,"
            " entities_box = ? WHERE rowid = ?",
            (
                row.scope_id,
                row.seal_version,
                row.hash,
                row.text_box,
                row.metadata_box,
                row.vector_box,
                row.context_box,
                row.updated_at,
                row.entities_box,
                row.rowid,
            ),
        )
        if terms is not None:
            # The trigger rewrites the row's memory_entities entries in this statement.
            self.db.execute(
                "UPDATE memories SET terms_entities = ? WHERE rowid = ?",
                (terms.entities, row.rowid),
            )
            self.db.execute("DELETE FROM memories_fts WHERE rowid = ?", (row.rowid,))
            self._index(row, terms)

    def delete(self, row: MemoryRow) -> None:
        self.db.execute("DELETE FROM memories_fts WHERE rowid = ?", (row.rowid,))
        self.db.execute("DELETE FROM memories WHERE rowid = ?", (row.rowid,))

    def add_history(self, event: HistoryRow) -> None:
        # One writer at a time (BEGIN IMMEDIATE): max(seq) + 1 cannot race here.
        self.db.execute(
            "INSERT INTO history (id, seq, memory_id, namespace, scope_id, user_id, agent_id,"
            " run_id, event, old_box, new_box, actor_id, role, created_at, seal_version, meta_box)"
            " VALUES (?, (SELECT coalesce(max(seq), 0) + 1 FROM history"
            " WHERE namespace = ? AND memory_id = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.id,
                event.namespace,
                event.memory_id,
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
            ),
        )

    def rewrite_event(self, event: HistoryRow) -> None:
        self.db.execute(
            "UPDATE history SET scope_id = ?, seal_version = ?, old_box = ?, new_box = ?,"
            " meta_box = ? WHERE id = ?",
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
        """Raise the scope's version by one; return (before, after)."""
        after = self.db.execute(
            "INSERT INTO scope_versions VALUES (?, 1) ON CONFLICT (scope_id)"
            " DO UPDATE SET version = version + 1 RETURNING version",
            (scope_id,),
        ).fetchone()[0]
        return int(after) - 1, int(after)

    def bump_versions(self, scope_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        return {scope_id: self.bump_version(scope_id) for scope_id in scope_ids}

    def delete_user(self, namespace: str, user_id: str) -> tuple[int, int]:
        """Delete a user's memories, index entries and history; returns the two counts."""
        self.db.execute(
            "DELETE FROM memories_fts WHERE rowid IN"
            " (SELECT rowid FROM memories WHERE namespace = ? AND user_id = ?)",
            (namespace, user_id),
        )
        memories = self.db.execute(
            "DELETE FROM memories WHERE namespace = ? AND user_id = ?", (namespace, user_id)
        ).rowcount
        events = self.db.execute(
            "DELETE FROM history WHERE namespace = ? AND user_id = ?", (namespace, user_id)
        ).rowcount
        return memories, events

    def delete_scope_rows(self, scope_id: str) -> tuple[int, int, int]:
        """Delete every memory (and index entry), history event and job sealed under a key."""
        self.db.execute(
            "DELETE FROM memories_fts WHERE rowid IN"
            " (SELECT rowid FROM memories WHERE scope_id = ?)",
            (scope_id,),
        )
        memories = self.db.execute("DELETE FROM memories WHERE scope_id = ?", (scope_id,)).rowcount
        events = self.db.execute("DELETE FROM history WHERE scope_id = ?", (scope_id,)).rowcount
        jobs = self.db.execute("DELETE FROM jobs WHERE scope_id = ?", (scope_id,)).rowcount
        return memories, events, jobs

    def delete_namespace(self, namespace: str) -> None:
        # Every key scope that held rows gets a later version: no cache elsewhere stays current.
        self.db.execute(
            "UPDATE scope_versions SET version = version + 1 WHERE scope_id IN"
            " (SELECT DISTINCT scope_id FROM memories WHERE namespace = ?)",
            (namespace,),
        )
        self.db.execute(
            "DELETE FROM memories_fts WHERE rowid IN"
            " (SELECT rowid FROM memories WHERE namespace = ?)",
            (namespace,),
        )
        for table in ("memories", "history"):
            self.db.execute(f"DELETE FROM {table} WHERE namespace = ?", (namespace,))
        # scope_versions rows stay: a version only ever grows, so no cache anywhere can take a
        # later state of a key scope for one it has seen (reset moves keys to new generations).

    def insert_job(self, job: JobRow) -> None:
        self.db.execute(
            f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 18)})", astuple(job)
        )

    def delete_jobs(self, namespace: str, user_id: str | None = None) -> int:
        if user_id is None:
            return self.db.execute("DELETE FROM jobs WHERE namespace = ?", (namespace,)).rowcount
        return self.db.execute(
            "DELETE FROM jobs WHERE namespace = ? AND user_id = ?", (namespace, user_id)
        ).rowcount

    def jobs_under_key(
        self, namespace: str, user_id: str, scope_id: str, limit: int
    ) -> list[JobRow]:
        found = self.db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs"
            " WHERE namespace = ? AND user_id = ? AND scope_id = ? ORDER BY id LIMIT ?",
            (namespace, user_id, scope_id, limit),
        ).fetchall()
        return [_job(row) for row in found]

    def rewrite_job(self, job: JobRow) -> None:
        self.db.execute(
            "UPDATE jobs SET scope_id = ?, payload_box = ?, result_box = ? WHERE id = ?",
            (job.scope_id, job.payload_box, job.result_box, job.id),
        )

    def webhook(self, namespace: str) -> WebhookRow | None:
        return self._store.get_webhook(namespace)

    def insert_deliveries(self, rows: Sequence[DeliveryRow]) -> None:
        self.db.executemany(
            f"INSERT INTO webhook_outbox ({_DELIVERY_COLUMNS}) VALUES ({', '.join('?' * 19)})",
            [row.columns() for row in rows],
        )

    def shred_delivery_texts(self, namespace: str, user_id: str) -> int:
        return int(
            self.db.execute(
                "UPDATE webhook_outbox SET text_box = NULL, scope_id = NULL"
                " WHERE namespace = ? AND user_id = ? AND text_box IS NOT NULL",
                (namespace, user_id),
            ).rowcount
        )

    def delete_deliveries(self, namespace: str) -> int:
        return int(
            self.db.execute("DELETE FROM webhook_outbox WHERE namespace = ?", (namespace,)).rowcount
        )


def _webhook(row: sqlite3.Row) -> WebhookRow:
    hook = WebhookRow(*row)
    hook.include_text = bool(hook.include_text)
    hook.secret_box = bytes(hook.secret_box)
    return hook


def _delivery(row: sqlite3.Row) -> DeliveryRow:
    delivery = DeliveryRow(*row)
    delivery.text_box = None if delivery.text_box is None else bytes(delivery.text_box)
    return delivery


def _memory(row: sqlite3.Row) -> MemoryRow:
    return MemoryRow(**dict(row))


def _job(row: sqlite3.Row) -> JobRow:
    job = JobRow(*row)
    job.payload_box = bytes(job.payload_box)
    job.result_box = None if job.result_box is None else bytes(job.result_box)
    return job


def _event(row: sqlite3.Row) -> HistoryRow:
    return HistoryRow(**dict(row))


def _legacy_key_names(db: sqlite3.Connection, namespace: str, kind: str, owner: str) -> set[str]:
    return {
        str(row[0])
        for table in ("memories", "history")
        for row in db.execute(_LEGACY_NAMES[(table, kind)], (namespace, owner))
    }


# The scope ids legacy rows of an owner name, by (table, kind): rows whose key owner is
# (kind, owner) by the same rule as ``Scope.key_owner``.
_LEGACY_NAMES = {
    ("memories", "user"): "SELECT DISTINCT scope_id FROM memories"
    " WHERE seal_version = 1 AND namespace = ? AND user_id IS ?",
    ("memories", "agent"): "SELECT DISTINCT scope_id FROM memories"
    " WHERE seal_version = 1 AND namespace = ? AND user_id IS NULL AND agent_id IS ?",
    ("memories", "run"): "SELECT DISTINCT scope_id FROM memories WHERE seal_version = 1"
    " AND namespace = ? AND user_id IS NULL AND agent_id IS NULL AND run_id IS ?",
    ("history", "user"): "SELECT DISTINCT scope_id FROM history"
    " WHERE seal_version = 1 AND namespace = ? AND user_id IS ?",
    ("history", "agent"): "SELECT DISTINCT scope_id FROM history"
    " WHERE seal_version = 1 AND namespace = ? AND user_id IS NULL AND agent_id IS ?",
    ("history", "run"): "SELECT DISTINCT scope_id FROM history WHERE seal_version = 1"
    " AND namespace = ? AND user_id IS NULL AND agent_id IS NULL AND run_id IS ?",
}
# Whether legacy rows of any *other* owner name a scope id, by (table, kind).
_NAMED_BY_OTHERS = {
    ("memories", "user"): "SELECT 1 FROM memories WHERE seal_version = 1 AND scope_id = ?"
    " AND NOT (namespace = ? AND user_id IS ?) LIMIT 1",
    ("memories", "agent"): "SELECT 1 FROM memories WHERE seal_version = 1 AND scope_id = ?"
    " AND NOT (namespace = ? AND user_id IS NULL AND agent_id IS ?) LIMIT 1",
    ("memories", "run"): "SELECT 1 FROM memories WHERE seal_version = 1 AND scope_id = ? AND NOT"
    " (namespace = ? AND user_id IS NULL AND agent_id IS NULL AND run_id IS ?) LIMIT 1",
    ("history", "user"): "SELECT 1 FROM history WHERE seal_version = 1 AND scope_id = ?"
    " AND NOT (namespace = ? AND user_id IS ?) LIMIT 1",
    ("history", "agent"): "SELECT 1 FROM history WHERE seal_version = 1 AND scope_id = ?"
    " AND NOT (namespace = ? AND user_id IS NULL AND agent_id IS ?) LIMIT 1",
    ("history", "run"): "SELECT 1 FROM history WHERE seal_version = 1 AND scope_id = ? AND NOT"
    " (namespace = ? AND user_id IS NULL AND agent_id IS NULL AND run_id IS ?) LIMIT 1",
}


_PROGRESS_INSTRUCTIONS = 10_000


class _WorkBudget:
    """A deadline for one statement; SQLite aborts it when ``exhausted`` says so."""

    __slots__ = ("deadline", "spent")

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.spent = False

    def exhausted(self) -> int:
        self.spent = time.monotonic() > self.deadline
        return int(self.spent)


def _column_sql(name: str) -> str:
    """A built-in column of the filter grammar (one of ``filters.COLUMNS``, never a caller's)."""
    return f"m.{name}"


def _fold_or_none(value: object) -> str | None:
    return fold(value) if isinstance(value, str) else None
