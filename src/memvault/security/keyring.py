"""Master key (KEK) and per-scope data keys (DEKs), kept apart from the data in ``keys.db``.

Envelope encryption: each (namespace, scope) gets a random 256-bit data key, stored only wrapped
(AES-256-GCM) by the master key with the scope id as associated data. ``keys.db`` is a separate
file from ``memvault.db`` so that it can be backed up on its own schedule, and so that forgetting a
scope's key (crypto-shredding) makes every copy of that scope's rows unreadable.

The master key comes from ``MEMVAULT_MASTER_KEY`` (base64 of 32 bytes) or, for the embedded
default, from ``master.key`` created 0600 in the home on first start. A key file beside the data
protects against a stolen database file, not against a stolen home directory: docs/security.md says
so. A check value wrapped by the master key tells a wrong key apart from a corrupt row.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from memvault.errors import IntegrityError, InvalidConfig, StorageError, WrongMasterKey
from memvault.security.crypto import KEY_BYTES, ScopeCipher, open_box, seal_box
from memvault.storage.files import create_private_file, open_sqlite

__all__ = ["KeyRing", "MasterKey", "load_master_key"]

KEY_FILE_NAME = "master.key"
KEYS_DB_NAME = "keys.db"
_CHECK_PLAINTEXT = b"memvault master key check v1"


class MasterKey:
    """One version of the key-encryption key."""

    __slots__ = ("_aead", "version")

    def __init__(self, version: int, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise InvalidConfig("the master key must be 32 bytes (base64 of 32 random bytes)")
        self.version = version
        self._aead = AESGCM(key)

    def wrap(self, data_key: bytes, scope_id: str) -> bytes:
        return seal_box(self._aead, data_key, _wrap_ad(scope_id, self.version))

    def unwrap(self, wrapped: bytes, scope_id: str) -> bytes:
        return open_box(self._aead, wrapped, _wrap_ad(scope_id, self.version), "data key")


def _wrap_ad(scope_id: str, version: int) -> bytes:
    return f"memvault/v1/dek|{version}|{scope_id}".encode()


def decode_master_key(encoded: str) -> bytes:
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidConfig("MEMVAULT_MASTER_KEY must be base64 of 32 random bytes") from None
    if len(key) != KEY_BYTES:
        raise InvalidConfig(f"MEMVAULT_MASTER_KEY decodes to {len(key)} bytes; it must be 32")
    return key


def load_master_key(home: Path, from_env: str | None, *, create: bool) -> MasterKey:
    """The master key from the environment, else the home's key file (created when ``create``)."""
    if from_env:
        return MasterKey(1, decode_master_key(from_env))
    path = home / KEY_FILE_NAME
    if not path.exists():
        if not create:
            raise WrongMasterKey(
                f"no master key: set MEMVAULT_MASTER_KEY or restore {path} for this store"
            )
        encoded = base64.b64encode(os.urandom(KEY_BYTES)).decode()
        create_private_file(path, json.dumps({"version": 1, "key": encoded}).encode())
    try:
        content = json.loads(path.read_text())
        return MasterKey(int(content["version"]), decode_master_key(content["key"]))
    except (ValueError, KeyError, TypeError):
        raise InvalidConfig(f"{path} is not a memvault key file") from None


class KeyRing:
    """Data keys by scope, unwrapped on first use and kept in memory while the store is open."""

    def __init__(self, home: Path, master: MasterKey) -> None:
        self._master = master
        self._lock = threading.Lock()
        self._ciphers: dict[str, ScopeCipher] = {}
        self._db = open_sqlite(home / KEYS_DB_NAME, synchronous="FULL")
        try:
            self._migrate()
            self._check_master()
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._ciphers.clear()
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"key store: {exc}") from exc

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

    def _check_master(self) -> None:
        version = self._master.version
        with self._transaction() as db:
            row = db.execute(
                "SELECT check_box FROM master_checks WHERE version = ?", (version,)
            ).fetchone()
            if row is None:
                known = db.execute("SELECT count(*) FROM master_checks").fetchone()[0]
                if known:
                    raise WrongMasterKey(f"master key version {version} is not known to this store")
                box = self._master.wrap(_CHECK_PLAINTEXT, "check")
                db.execute("INSERT INTO master_checks VALUES (?, ?, ?)", (version, box, _now()))
                return
        try:
            self._master.unwrap(row[0], "check")
        except IntegrityError:
            raise WrongMasterKey(
                "the master key does not open this store (wrong MEMVAULT_MASTER_KEY or key file)"
            ) from None

    def cipher(self, scope_id: str, *, create: bool = True) -> ScopeCipher | None:
        """The scope's cipher; a new data key is made when ``create`` and none exists yet."""
        cached = self._ciphers.get(scope_id)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._ciphers.get(scope_id)
            if cached is not None:
                return cached
            row = self._db.execute(
                "SELECT kek_version, wrapped FROM data_keys WHERE scope_id = ?", (scope_id,)
            ).fetchone()
            if row is None:
                if not create:
                    return None
                row = self._create(scope_id)
            if row[0] != self._master.version:
                raise WrongMasterKey(f"data key of a scope is wrapped by master version {row[0]}")
            cipher = ScopeCipher(scope_id, self._master.unwrap(row[1], scope_id))
            self._ciphers[scope_id] = cipher
            return cipher

    def _create(self, scope_id: str) -> tuple[int, bytes]:
        wrapped = self._master.wrap(os.urandom(KEY_BYTES), scope_id)
        with self._transaction() as db:
            # Another process may have created it a moment ago: keep theirs.
            db.execute(
                "INSERT OR IGNORE INTO data_keys VALUES (?, ?, ?, ?)",
                (scope_id, self._master.version, wrapped, _now()),
            )
            row = db.execute(
                "SELECT kek_version, wrapped FROM data_keys WHERE scope_id = ?", (scope_id,)
            ).fetchone()
        return int(row[0]), bytes(row[1])

    def forget_cached(self) -> None:
        with self._lock:
            self._ciphers.clear()

    def destroy_all(self, namespace: str) -> None:
        """Forget every data key of a namespace (used by ``reset``): its rows become noise."""
        with self._lock:
            with self._transaction() as db:
                db.execute(
                    "DELETE FROM data_keys WHERE scope_id LIKE ? ESCAPE '\\'",
                    (_like_prefix(f"{namespace}/"),),
                )
            self._ciphers = {
                k: v for k, v in self._ciphers.items() if not k.startswith(f"{namespace}/")
            }
            self._flush_wal()

    def has(self, scope_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM data_keys WHERE scope_id = ?", (scope_id,))
        return row.fetchone() is not None

    def destroy(self, scope_id: str) -> bool:
        """Crypto-shred one scope: forget its data key everywhere this process can reach.

        The row is deleted with ``secure_delete`` on (its page is overwritten), the cached key is
        dropped, and the WAL is checkpointed and truncated so no old frame still holds the
        wrapped key. Every copy of the scope's rows, backups included, is then unreadable.
        """
        with self._lock:
            with self._transaction() as db:
                gone = db.execute("DELETE FROM data_keys WHERE scope_id = ?", (scope_id,)).rowcount
            self._ciphers.pop(scope_id, None)
            self._flush_wal()
        return bool(gone)

    def _flush_wal(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StorageError(f"key store checkpoint failed: {exc}") from exc


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _now() -> str:
    return datetime.now(UTC).isoformat()
