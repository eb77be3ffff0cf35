"""The Postgres key store: wrapped data keys, their generations and the master key checks.

It lives in a schema of its own (``memvault_keys`` by default), and may be in another database
than the data: it only takes a URL, so a backup of the data never holds the keys. The tables are
those of ``keys.db``: ``master_checks``, ``data_keys`` (``format`` 1 = a pre-v2 joined name,
2 = a ``KeyScope`` id), ``scope_generations`` (pre-v2 generation records, read, never written)
and ``key_generations``.

``changes()``: LISTEN/NOTIFY. Every method that changes keys or generations runs
``pg_notify('memvault_keys', '')`` inside its transaction, so the notification is delivered to
every listening session when (and only if) the change commits. A daemon thread holds one
autocommit connection that ``LISTEN``s and counts notifications; ``changes()`` returns the count,
so a node's cached keys are re-checked after any node changed the store, at the price of reading
one integer. While that connection is down, ``changes()`` returns a new number on every call
(every use re-checks), and the thread reconnects with a growing back-off; a reconnect counts as a
change too (notifications sent meanwhile were lost).

Deleting a key (crypto-shredding) really deletes its row; the old tuple version stays in the
table's heap until VACUUM, so every method that deletes keys runs ``VACUUM data_keys`` after its
commit (the table is tiny: one row per key owner and generation). WAL segments that logged the
wrapped key remain until the server recycles them (and in any WAL archive or replica): the
master key is what still protects them.

Nothing a caller passes is spliced into SQL: values are parameters, the schema an identifier
composed by ``psycopg.sql.Identifier``; errors go through ``errors.guard``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from memvault.storage.base import KEY_TABLES, Cursor, check_table
from memvault.storage.postgres import transfer
from memvault.storage.postgres.backup import KEYS_DUMP, snapshot_schema
from memvault.storage.postgres.errors import guard
from memvault.storage.rows import ExportRow, Imported, KeyStoreStatus, Snapshot, WrappedKey

__all__ = ["CHANNEL", "KEYS_SCHEMA", "PostgresKeyStore"]

_ADVANCE = (
    "INSERT INTO key_generations VALUES (%s, %s, %s, %s, %s)"
    " ON CONFLICT (namespace, kind, owner)"
    " DO UPDATE SET current = excluded.current, previous = excluded.previous"
)

Conn = psycopg.Connection[tuple[Any, ...]]

_log = logging.getLogger(__name__)

CHANNEL = "memvault_keys"
KEYS_SCHEMA = "memvault_keys"
_NOTIFY = "SELECT pg_notify('memvault_keys', '')"
_POLL_SECONDS = 0.1  # how often the listener looks at its stop flag (no round trip)
_BACKOFF_MAX = 10.0

_TABLES = (
    "CREATE TABLE IF NOT EXISTS master_checks (version integer PRIMARY KEY,"
    ' check_box bytea NOT NULL, created_at text COLLATE "C" NOT NULL)',
    'CREATE TABLE IF NOT EXISTS data_keys (scope_id text COLLATE "C" PRIMARY KEY,'
    " kek_version integer NOT NULL, wrapped bytea NOT NULL,"
    ' created_at text COLLATE "C" NOT NULL, format integer NOT NULL DEFAULT 2)',
    "CREATE TABLE IF NOT EXISTS scope_generations (base text PRIMARY KEY,"
    " current integer NOT NULL, previous integer)",
    "CREATE TABLE IF NOT EXISTS key_generations (namespace text NOT NULL, kind text NOT NULL,"
    " owner text NOT NULL, current integer NOT NULL, previous integer,"
    " PRIMARY KEY (namespace, kind, owner))",
)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class PostgresKeyStore:
    """A ``KeyStore`` in one Postgres schema; every method is one transaction."""

    backend = "postgres"

    def __init__(
        self, url: str, *, schema: str = KEYS_SCHEMA, pool_timeout_seconds: float = 5.0
    ) -> None:
        self._url = url
        self._schema = schema
        self._changes = 0
        self._listening = False
        self._state = threading.Lock()
        self._stop = threading.Event()
        with guard("opening the key store"):
            with psycopg.connect(url, autocommit=True) as conn:
                self._migrate(conn)
            self._pool: ConnectionPool[Conn] = ConnectionPool(
                url,
                min_size=1,
                max_size=4,
                timeout=pool_timeout_seconds,  # see PostgresStore
                kwargs={"autocommit": True},
                configure=self._configure,
                open=False,
            )
            self._pool.open(wait=True)
        # Listen before returning, so no change made after the constructor is missed.
        self._listener: Conn | None = self._listen()
        self._thread = threading.Thread(
            target=self._run, name="memvault-keys-listener", daemon=True
        )
        self._thread.start()

    def _configure(self, conn: Conn) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))

    def _migrate(self, conn: Conn) -> None:
        """Create the schema and tables if missing, under a session advisory lock."""
        key = f"memvault.migrate.{self._schema}"
        conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        try:
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema))
            )
            self._configure(conn)
            with conn.transaction():
                for statement in _TABLES:
                    conn.execute(statement)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))

    # --- change notifications -----------------------------------------------------------------

    def _listen(self) -> Conn | None:
        try:
            conn = psycopg.connect(self._url, autocommit=True)
        except psycopg.Error:
            return None
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        except psycopg.Error:
            conn.close()
            return None
        with self._state:
            self._listening = True
            self._changes += 1  # whatever happened before this connection is unknown
        return conn

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            conn = self._listener
            if conn is None:
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, _BACKOFF_MAX)
                self._listener = self._listen()
                continue
            backoff = 0.1
            try:
                for _ in conn.notifies(timeout=_POLL_SECONDS):
                    with self._state:
                        self._changes += 1
                    if self._stop.is_set():
                        break
            except psycopg.Error:
                with self._state:
                    self._listening = False
                conn.close()
                self._listener = None
        listener = self._listener
        self._listener = None
        if listener is not None:
            listener.close()

    def changes(self) -> int:
        """A number that moves when the key store changed (see the module docstring)."""
        with self._state:
            if not self._listening:
                self._changes += 1  # no notifications: every look must re-check
            return self._changes

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5 * _POLL_SECONDS + 5)
        with self._state:
            self._listening = False
        self._pool.close()

    # --- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def _connection(self, action: str) -> Iterator[Conn]:
        with guard(f"key store: {action}"), self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _write(self, action: str) -> Iterator[Conn]:
        """A transaction that notifies every listener when it commits."""
        with self._connection(action) as conn, conn.transaction():
            yield conn
            conn.execute(_NOTIFY)

    def _vacuum(self) -> None:
        """Reclaim the dead tuples of deleted keys now (outside any transaction). Best effort:
        the delete has committed, so a failure here is logged (without the driver's text), not
        raised; autovacuum reclaims them later."""
        try:
            with self._pool.connection() as conn:
                conn.execute("VACUUM data_keys")
        except psycopg.Error as exc:
            _log.warning("key store: VACUUM data_keys failed (SQLSTATE %s)", exc.sqlstate)

    def _fetch(self, query: Any, params: Sequence[Any] = ()) -> list[Any]:
        with self._connection("read") as conn:
            return conn.execute(query, params).fetchall()

    def status(self) -> KeyStoreStatus:
        with self._connection("reading the status") as conn:
            keys = conn.execute("SELECT count(*) FROM data_keys").fetchone()
            versions = conn.execute("SELECT count(*) FROM master_checks").fetchone()
        from memvault.storage.postgres.store import masked_url

        return KeyStoreStatus(
            f"{masked_url(self._url)} (schema {self._schema})",
            int(keys[0]) if keys else 0,
            int(versions[0]) if versions else 0,
        )

    # --- raw rows (Exportable: memvault migrate) ----------------------------------------------

    def export_batch(self, table: str, after: Cursor, limit: int) -> tuple[list[ExportRow], Cursor]:
        check_table(table, keys=True)
        with self._connection("exporting rows") as conn:
            return transfer.export_batch(conn, table, after, limit)

    def import_batch(self, table: str, rows: Sequence[ExportRow]) -> Imported:
        check_table(table, keys=True)
        with self._write("importing rows") as conn:
            return transfer.import_batch(conn, table, rows)

    def snapshot(self, directory: Path) -> Snapshot:
        """A ``pg_dump`` of the key schema in one exported snapshot (``postgres/backup.py``)."""
        return snapshot_schema(
            self._url, self._schema, directory / KEYS_DUMP, KEY_TABLES, migrations=False
        )

    def count_rows(self, table: str) -> int:
        check_table(table, keys=True)
        with self._connection("counting rows") as conn:
            return transfer.count_rows(conn, table)

    # --- master key checks --------------------------------------------------------------------

    def master_checks(self) -> dict[int, bytes]:
        rows = self._fetch("SELECT version, check_box FROM master_checks")
        return {int(v): bytes(box) for v, box in rows}

    def add_master_checks(self, checks: dict[int, bytes]) -> None:
        if not checks:
            return
        with self._write("recording master key checks") as conn, conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO master_checks VALUES (%s, %s, %s) ON CONFLICT (version) DO NOTHING",
                [(version, box, _now()) for version, box in sorted(checks.items())],
            )

    def drop_master_check(self, version: int) -> None:
        with self._write("dropping a master key check") as conn:
            conn.execute("DELETE FROM master_checks WHERE version = %s", (version,))

    # --- data keys ----------------------------------------------------------------------------

    def wrapped(self, scope_id: str, *, legacy_only: bool = False) -> WrappedKey | None:
        query = "SELECT kek_version, wrapped FROM data_keys WHERE scope_id = %s"
        if legacy_only:
            query += " AND format = 1"
        rows = self._fetch(query, (scope_id,))
        return WrappedKey(int(rows[0][0]), bytes(rows[0][1])) if rows else None

    def present(self, scope_ids: Sequence[str]) -> set[str]:
        if not scope_ids:
            return set()
        rows = self._fetch(
            "SELECT scope_id FROM data_keys WHERE scope_id = ANY(%s)", (list(scope_ids),)
        )
        return {str(row[0]) for row in rows}

    def create(
        self,
        scope_id: str,
        key: WrappedKey,
        generation: tuple[str, str, str, int, int | None],
    ) -> WrappedKey:
        """Insert unless present (the first creator wins: ``ON CONFLICT DO NOTHING``), record
        the generation unless recorded, and return the key that holds now."""
        with self._write("creating a data key") as conn:
            conn.execute(
                "INSERT INTO data_keys (scope_id, kek_version, wrapped, created_at, format)"
                " VALUES (%s, %s, %s, %s, 2) ON CONFLICT (scope_id) DO NOTHING",
                (scope_id, key.kek_version, key.wrapped, _now()),
            )
            conn.execute(
                "INSERT INTO key_generations VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (namespace, kind, owner) DO NOTHING",
                generation,
            )
            row = conn.execute(
                "SELECT kek_version, wrapped FROM data_keys WHERE scope_id = %s", (scope_id,)
            ).fetchone()
        assert row is not None  # inserted above, or there already
        return WrappedKey(int(row[0]), bytes(row[1]))

    def generations(
        self, namespace: str, kind: str, owner: str, legacy_base: str
    ) -> tuple[int, int | None] | None:
        with self._connection("reading key generations") as conn:
            row = conn.execute(
                "SELECT current, previous FROM key_generations"
                " WHERE namespace = %s AND kind = %s AND owner = %s",
                (namespace, kind, owner),
            ).fetchone()
            if row is None:  # an older version's record, if any
                row = conn.execute(
                    "SELECT current, previous FROM scope_generations WHERE base = %s",
                    (legacy_base,),
                ).fetchone()
        if row is None:
            return None
        return int(row[0]), None if row[1] is None else int(row[1])

    def generations_many(
        self, owners: Sequence[tuple[str, str, str, str]]
    ) -> list[tuple[int, int | None] | None]:
        """One query for every owner's record; a second only for owners without one (an older
        version's record, by legacy base)."""
        if not owners:
            return []
        found: list[tuple[int, int | None] | None] = [None] * len(owners)
        with self._connection("reading key generations") as conn:
            rows = conn.execute(
                "SELECT k.i, g.current, g.previous FROM unnest(%s::text[], %s::text[],"
                " %s::text[], %s::int[]) AS k(n, kind, o, i) JOIN key_generations g"
                " ON g.namespace = k.n AND g.kind = k.kind AND g.owner = k.o",
                (
                    [o[0] for o in owners],
                    [o[1] for o in owners],
                    [o[2] for o in owners],
                    list(range(len(owners))),
                ),
            ).fetchall()
            for index, current, previous in rows:
                found[int(index)] = int(current), None if previous is None else int(previous)
            missing = [i for i, value in enumerate(found) if value is None]
            if missing:
                rows = conn.execute(
                    "SELECT k.i, g.current, g.previous FROM unnest(%s::text[], %s::int[])"
                    " AS k(b, i) JOIN scope_generations g ON g.base = k.b",
                    ([owners[i][3] for i in missing], missing),
                ).fetchall()
                for index, current, previous in rows:
                    found[int(index)] = int(current), None if previous is None else int(previous)
        return found

    def namespace_generations(self, namespace: str) -> list[tuple[str, str, int]]:
        rows = self._fetch(
            "SELECT kind, owner, current FROM key_generations WHERE namespace = %s"
            ' ORDER BY kind, owner COLLATE "C"',
            (namespace,),
        )
        return [(str(k), str(o), int(c)) for k, o, c in rows]

    def set_generations(
        self, namespace: str, kind: str, owner: str, current: int, previous: int | None
    ) -> None:
        with self._write("recording key generations") as conn:
            conn.execute(_ADVANCE, (namespace, kind, owner, current, previous))

    def delete(
        self,
        scope_ids: Sequence[str],
        *,
        legacy_only: bool = False,
        advance: tuple[str, str, str, int] | None = None,
    ) -> list[str]:
        """Delete the keys (crypto-shred), then ``VACUUM data_keys``; the ids that were there.
        ``advance``: the key owner's new generation, in the same transaction."""
        if not scope_ids and advance is None:
            return []
        query = "DELETE FROM data_keys WHERE scope_id = ANY(%s)"
        if legacy_only:
            query += " AND format = 1"
        with self._write("deleting data keys") as conn:
            gone = conn.execute(query + " RETURNING scope_id", (list(scope_ids),)).fetchall()
            if advance is not None:
                conn.execute(_ADVANCE, (*advance, None))
        self._vacuum()
        return [str(row[0]) for row in gone]

    def delete_namespace(self, namespace: str, scope_ids: Sequence[str]) -> list[str]:
        """The given keys, every pre-v2 key named under ``<namespace>/``, and a new generation
        for every key owner of the namespace, in one transaction; then ``VACUUM``."""
        with self._write("deleting a namespace's keys") as conn:
            gone = conn.execute(
                "DELETE FROM data_keys WHERE scope_id = ANY(%s)"
                " OR (format = 1 AND starts_with(scope_id, %s)) RETURNING scope_id",
                (list(scope_ids), f"{namespace}/"),
            ).fetchall()
            conn.execute(
                "UPDATE key_generations SET current = current + 1, previous = NULL"
                " WHERE namespace = %s",
                (namespace,),
            )
        self._vacuum()
        return [str(row[0]) for row in gone]

    def drop_legacy(self) -> list[str]:
        with self._write("dropping pre-v2 keys") as conn:
            gone = conn.execute("DELETE FROM data_keys WHERE format = 1 RETURNING scope_id")
            names = [str(row[0]) for row in gone.fetchall()]
        self._vacuum()
        return names

    def versions_in_use(self) -> dict[int, int]:
        rows = self._fetch("SELECT kek_version, count(*) FROM data_keys GROUP BY kek_version")
        return {int(v): int(n) for v, n in rows}

    def not_wrapped_by(self, version: int, limit: int) -> list[tuple[str, WrappedKey]]:
        rows = self._fetch(
            "SELECT scope_id, kek_version, wrapped FROM data_keys WHERE kek_version <> %s"
            " ORDER BY scope_id LIMIT %s",
            (version, limit),
        )
        return [(str(s), WrappedKey(int(v), bytes(w))) for s, v, w in rows]

    def rewrap(self, changes: Sequence[tuple[str, WrappedKey, WrappedKey]]) -> int:
        with self._write("rewrapping data keys") as conn:
            return sum(
                conn.execute(
                    "UPDATE data_keys SET kek_version = %s, wrapped = %s"
                    " WHERE scope_id = %s AND kek_version = %s AND wrapped = %s",
                    (new.kek_version, new.wrapped, scope_id, old.kek_version, old.wrapped),
                ).rowcount
                for scope_id, old, new in changes
            )

    def flush(self) -> None:
        """Old tuple versions of rewrapped or deleted keys go with a VACUUM of the table."""
        self._vacuum()
