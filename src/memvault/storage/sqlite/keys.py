"""The embedded key store (``KeyStore``): ``keys.db`` beside ``memvault.db``, a file of its own.

A separate file so that it is backed up on its own schedule, and so that forgetting a key
(crypto-shredding) makes every copy of the rows it sealed unreadable, data backups included.
Deletes run with ``secure_delete`` (the freed page is overwritten) and are followed by a WAL
checkpoint that truncates the log, so no old frame still holds a wrapped key.

``changes()`` is SQLite's ``PRAGMA data_version``, which moves when another connection commits:
what lets a process notice another one's erase without reading the table.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from memvault.storage.base import Cursor, check_table
from memvault.storage.files import open_sqlite
from memvault.storage.rows import ExportRow, Imported, KeyStoreStatus, Snapshot, WrappedKey
from memvault.storage.sqlite import transfer
from memvault.storage.sqlite.backup import snapshot_file
from memvault.storage.sqlite.errors import translated

__all__ = ["KEYS_DB_NAME", "SQLiteKeyStore"]

KEYS_DB_NAME = "keys.db"
_DELETE_KEY = "DELETE FROM data_keys WHERE scope_id = ? RETURNING scope_id"
_DELETE_LEGACY_KEY = "DELETE FROM data_keys WHERE scope_id = ? AND format = 1 RETURNING scope_id"
_ADVANCE = (
    "INSERT INTO key_generations VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (namespace, kind, owner)"
    " DO UPDATE SET current = excluded.current, previous = excluded.previous"
)


class SQLiteKeyStore:
    def __init__(self, home: Path, *, busy_timeout_seconds: float = 30.0) -> None:
        self.path = home / KEYS_DB_NAME
        # One connection, used under this lock by every thread of the process.
        self._lock = threading.RLock()
        self._db = open_sqlite(
            self.path, synchronous="FULL", busy_timeout_seconds=busy_timeout_seconds
        )
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, translated("a key store write"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock, translated("a key store read"):
            yield self._db

    def _migrate(self) -> None:
        with self._transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS master_checks ("
                " version INTEGER PRIMARY KEY, check_box BLOB NOT NULL, created_at TEXT NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS data_keys ("
                " scope_id TEXT PRIMARY KEY, kek_version INTEGER NOT NULL,"
                " wrapped BLOB NOT NULL, created_at TEXT NOT NULL)"
            )
            # Pre-v2 generation records, by an ambiguous joined name: read, never written.
            db.execute(
                "CREATE TABLE IF NOT EXISTS scope_generations ("
                " base TEXT PRIMARY KEY, current INTEGER NOT NULL, previous INTEGER)"
            )
            # A key scope's data key can be replaced: new rows use ``current``, and while rows
            # move to it (rotation) the ``previous`` generation stays readable.
            db.execute(
                "CREATE TABLE IF NOT EXISTS key_generations (namespace TEXT NOT NULL,"
                " kind TEXT NOT NULL, owner TEXT NOT NULL, current INTEGER NOT NULL,"
                " previous INTEGER, PRIMARY KEY (namespace, kind, owner))"
            )
            columns = {row[1] for row in db.execute("PRAGMA table_info(data_keys)")}
            if "format" not in columns:
                # 1: named by a pre-v2 joined string; 2: by ``KeyScope.id``.
                db.execute("ALTER TABLE data_keys ADD COLUMN format INTEGER NOT NULL DEFAULT 1")

    def status(self) -> KeyStoreStatus:
        with self._reading() as db:
            keys = int(db.execute("SELECT count(*) FROM data_keys").fetchone()[0])
            versions = int(db.execute("SELECT count(*) FROM master_checks").fetchone()[0])
        return KeyStoreStatus(str(self.path), keys, versions)

    # --- raw rows (Exportable: memvault migrate) ----------------------------------------------

    def export_batch(self, table: str, after: Cursor, limit: int) -> tuple[list[ExportRow], Cursor]:
        check_table(table, keys=True)
        with self._reading() as db:
            return transfer.export_batch(db, table, after, limit)

    def import_batch(self, table: str, rows: Sequence[ExportRow]) -> Imported:
        check_table(table, keys=True)
        with self._transaction() as db:
            return transfer.import_batch(db, table, rows)

    def snapshot(self, directory: Path) -> Snapshot:
        """``keys.db`` as of one commit, into ``directory`` (``sqlite/backup.py``)."""
        with self._lock:
            return snapshot_file(self._db, directory / KEYS_DB_NAME, keys=True)

    def count_rows(self, table: str) -> int:
        check_table(table, keys=True)
        with self._reading() as db:
            return transfer.count_rows(db, table)

    def changes(self) -> int:
        with self._reading() as db:
            return int(db.execute("PRAGMA data_version").fetchone()[0])

    # --- master key checks --------------------------------------------------------------------

    def master_checks(self) -> dict[int, bytes]:
        with self._reading() as db:
            rows = db.execute("SELECT version, check_box FROM master_checks").fetchall()
        return {int(version): bytes(box) for version, box in rows}

    def add_master_checks(self, checks: dict[int, bytes]) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO master_checks VALUES (?, ?, ?)",
                [(version, box, _now()) for version, box in checks.items()],
            )

    def drop_master_check(self, version: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM master_checks WHERE version = ?", (version,))
        self._flush_wal()

    # --- data keys ----------------------------------------------------------------------------

    def wrapped(self, scope_id: str, *, legacy_only: bool = False) -> WrappedKey | None:
        sql = "SELECT kek_version, wrapped FROM data_keys WHERE scope_id = ?"
        with self._reading() as db:
            row = db.execute(sql + " AND format = 1" if legacy_only else sql, (scope_id,))
            found = row.fetchone()
        return None if found is None else WrappedKey(int(found[0]), bytes(found[1]))

    def present(self, scope_ids: Sequence[str]) -> set[str]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT scope_id FROM data_keys WHERE scope_id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(scope_ids)),),
            ).fetchall()
        return {str(row[0]) for row in rows}

    def create(
        self,
        scope_id: str,
        key: WrappedKey,
        generation: tuple[str, str, str, int, int | None],
    ) -> WrappedKey:
        with self._transaction() as db:
            # Another process may have created it a moment ago: keep theirs.
            db.execute(
                "INSERT OR IGNORE INTO data_keys VALUES (?, ?, ?, ?, 2)",
                (scope_id, key.kek_version, key.wrapped, _now()),
            )
            # Record the generation, so that reset can move past it (ids are never reused).
            db.execute("INSERT OR IGNORE INTO key_generations VALUES (?, ?, ?, ?, ?)", generation)
            row = db.execute(
                "SELECT kek_version, wrapped FROM data_keys WHERE scope_id = ?", (scope_id,)
            ).fetchone()
        return WrappedKey(int(row[0]), bytes(row[1]))

    def delete(
        self,
        scope_ids: Sequence[str],
        *,
        legacy_only: bool = False,
        advance: tuple[str, str, str, int] | None = None,
    ) -> list[str]:
        sql = _DELETE_LEGACY_KEY if legacy_only else _DELETE_KEY
        with self._transaction() as db:
            gone = [str(row[0]) for i in scope_ids for row in db.execute(sql, (i,)).fetchall()]
            if advance is not None:
                db.execute(_ADVANCE, (*advance, None))
        self._flush_wal()
        return gone

    def drop_legacy(self) -> list[str]:
        with self._transaction() as db:
            gone = db.execute("DELETE FROM data_keys WHERE format = 1 RETURNING scope_id")
            names = [str(row[0]) for row in gone.fetchall()]
        self._flush_wal()
        return names

    def delete_namespace(self, namespace: str, scope_ids: Sequence[str]) -> list[str]:
        with self._transaction() as db:
            gone = [
                str(row[0]) for i in scope_ids for row in db.execute(_DELETE_KEY, (i,)).fetchall()
            ]
            db.execute(
                "UPDATE key_generations SET current = current + 1, previous = NULL"
                " WHERE namespace = ?",
                (namespace,),
            )
            # Keys of older versions, by their joined names ("<namespace>/...").
            legacy = db.execute(
                "DELETE FROM data_keys WHERE format = 1 AND substr(scope_id, 1, ?) = ?"
                " RETURNING scope_id",
                (len(namespace) + 1, f"{namespace}/"),
            ).fetchall()
            gone.extend(str(row[0]) for row in legacy)
        self._flush_wal()
        return gone

    # --- generations --------------------------------------------------------------------------

    def generations(
        self, namespace: str, kind: str, owner: str, legacy_base: str
    ) -> tuple[int, int | None] | None:
        with self._reading() as db:
            row = db.execute(
                "SELECT current, previous FROM key_generations"
                " WHERE namespace = ? AND kind = ? AND owner = ?",
                (namespace, kind, owner),
            ).fetchone()
            if row is None:  # an older version's record, if any
                row = db.execute(
                    "SELECT current, previous FROM scope_generations WHERE base = ?",
                    (legacy_base,),
                ).fetchone()
        if row is None:
            return None
        return int(row[0]), None if row[1] is None else int(row[1])

    def generations_many(
        self, owners: Sequence[tuple[str, str, str, str]]
    ) -> list[tuple[int, int | None] | None]:
        return [self.generations(*owner) for owner in owners]  # in process: no round trips

    def namespace_generations(self, namespace: str) -> list[tuple[str, str, int]]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT kind, owner, current FROM key_generations WHERE namespace = ?",
                (namespace,),
            ).fetchall()
        return [(str(kind), str(owner), int(current)) for kind, owner, current in rows]

    def set_generations(
        self, namespace: str, kind: str, owner: str, current: int, previous: int | None
    ) -> None:
        with self._transaction() as db:
            db.execute(_ADVANCE, (namespace, kind, owner, current, previous))

    # --- master key rotation ------------------------------------------------------------------

    def versions_in_use(self) -> dict[int, int]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT kek_version, count(*) FROM data_keys"
                " GROUP BY kek_version ORDER BY kek_version"
            ).fetchall()
        return {int(v): int(n) for v, n in rows}

    def not_wrapped_by(self, version: int, limit: int) -> list[tuple[str, WrappedKey]]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT scope_id, kek_version, wrapped FROM data_keys WHERE kek_version != ?"
                " LIMIT ?",
                (version, limit),
            ).fetchall()
        return [(str(s), WrappedKey(int(v), bytes(w))) for s, v, w in rows]

    def rewrap(self, changes: Sequence[tuple[str, WrappedKey, WrappedKey]]) -> int:
        with self._transaction() as db:
            return sum(
                db.execute(
                    "UPDATE data_keys SET kek_version = ?, wrapped = ?"
                    " WHERE scope_id = ? AND kek_version = ? AND wrapped = ?",
                    (new.kek_version, new.wrapped, scope_id, old.kek_version, old.wrapped),
                ).rowcount
                for scope_id, old, new in changes
            )

    def flush(self) -> None:
        """Truncate the WAL: no old frame keeps a key wrapped by a retired master version."""
        self._flush_wal()

    def _flush_wal(self) -> None:
        with self._reading() as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _now() -> str:
    return datetime.now(UTC).isoformat()
