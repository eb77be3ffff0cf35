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

__all__ = ["KeyRing", "MasterKey", "MasterRing", "load_master_key"]

KEY_FILE_NAME = "master.key"
KEYS_DB_NAME = "keys.db"
_CHECK_PLAINTEXT = b"memvault master key check v1"


class MasterKey:
    """One version of the key-encryption key."""

    __slots__ = ("_aead", "raw", "version")

    def __init__(self, version: int, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise InvalidConfig("the master key must be 32 bytes (base64 of 32 random bytes)")
        self.version = version
        self.raw = key
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


class MasterRing:
    """The master key versions this process holds; ``current`` wraps new data keys.

    From ``MEMVAULT_MASTER_KEY`` (one base64 key, or ``"2:<base64>,1:<base64>"``, current first)
    or from the home's key file (``{"current": 2, "keys": {"1": ..., "2": ...}}``), which is
    re-read when it changes, so a running server picks up a rotation without a restart.
    """

    def __init__(self, keys: dict[int, MasterKey], current: int, path: Path | None = None) -> None:
        self.keys = keys
        self.current_version = current
        self.path = path
        self._stamp = path.stat().st_mtime_ns if path is not None else None

    @property
    def current(self) -> MasterKey:
        return self.keys[self.current_version]

    @classmethod
    def from_env(cls, value: str) -> MasterRing:
        keys: dict[int, MasterKey] = {}
        order = []
        for part in value.split(","):
            version_text, sep, encoded = part.strip().rpartition(":")
            if not sep:
                version, encoded = 1, part.strip()
            elif version_text.isdigit() and int(version_text) > 0:
                version = int(version_text)
            else:
                raise InvalidConfig(
                    "MEMVAULT_MASTER_KEY: write '<version>:<base64>' pairs, newest first"
                )
            if version in keys:
                raise InvalidConfig(f"MEMVAULT_MASTER_KEY names version {version} twice")
            keys[version] = MasterKey(version, decode_master_key(encoded))
            order.append(version)
        return cls(keys, order[0])

    @classmethod
    def from_file(cls, path: Path) -> MasterRing:
        try:
            content = json.loads(path.read_text())
            if "keys" in content:
                stored = {int(v): k for v, k in content["keys"].items()}
                current = int(content["current"])
            else:  # the first format: one key
                stored = {int(content["version"]): content["key"]}
                current = int(content["version"])
            keys = {v: MasterKey(v, decode_master_key(k)) for v, k in stored.items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InvalidConfig(f"{path} is not a memvault key file") from None
        if current not in keys:
            raise InvalidConfig(f"{path}: the current version has no key")
        return cls(keys, current, path)

    def changed(self) -> bool:
        return self.path is not None and self.path.stat().st_mtime_ns != self._stamp

    def add_version(self) -> int:
        """A new random key as the current version, written to the key file (file rings only)."""
        if self.path is None:
            raise InvalidConfig(
                "the master key comes from MEMVAULT_MASTER_KEY: put the new key first in it"
                " ('2:<new>,1:<old>'), restart, then run rotate-master to rewrap"
            )
        version = max(self.keys) + 1
        self.keys[version] = MasterKey(version, os.urandom(KEY_BYTES))
        self.current_version = version
        self._save()
        return version

    def drop_version(self, version: int) -> None:
        self.keys.pop(version, None)
        if self.path is not None:
            self._save()

    def _save(self) -> None:
        assert self.path is not None
        content = {
            "current": self.current_version,
            "keys": {str(v): base64.b64encode(k.raw).decode() for v, k in self.keys.items()},
        }
        temporary = self.path.with_suffix(".new")
        temporary.unlink(missing_ok=True)
        create_private_file(temporary, json.dumps(content).encode())
        os.replace(temporary, self.path)
        self._stamp = self.path.stat().st_mtime_ns


def load_master_key(home: Path, from_env: str | None, *, create: bool) -> MasterRing:
    """The master key ring from the environment, else the home's key file (made when ``create``)."""
    if from_env:
        return MasterRing.from_env(from_env)
    path = home / KEY_FILE_NAME
    if not path.exists():
        if not create:
            raise WrongMasterKey(
                f"no master key: set MEMVAULT_MASTER_KEY or restore {path} for this store"
            )
        encoded = base64.b64encode(os.urandom(KEY_BYTES)).decode()
        create_private_file(path, json.dumps({"current": 1, "keys": {"1": encoded}}).encode())
    return MasterRing.from_file(path)


class KeyRing:
    """Data keys by scope, unwrapped on first use and kept in memory while the store is open."""

    def __init__(self, home: Path, master: MasterRing) -> None:
        self._ring = master
        # Re-entrant: generation and rotation helpers call each other under it, and it also
        # serialises every use of the one keys.db connection across threads.
        self._lock = threading.RLock()
        self._ciphers: dict[str, ScopeCipher] = {}
        self._db = open_sqlite(home / KEYS_DB_NAME, synchronous="FULL")
        try:
            self._migrate()
            self._check_master()
        except BaseException:
            self._db.close()
            raise

    @property
    def master(self) -> MasterRing:
        return self._ring

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
            # A scope's data key can be replaced: generation N > 1 lives under "<scope>#gN",
            # and while rows move to it the previous generation stays readable.
            db.execute(
                "CREATE TABLE IF NOT EXISTS scope_generations ("
                " base TEXT PRIMARY KEY, current INTEGER NOT NULL, previous INTEGER)"
            )

    def _check_master(self) -> None:
        """Every ring version the store knows must open its check value, and at least one must
        be known (unless the store is new); a new version is recorded once an old one vouched."""
        with self._transaction() as db:
            checks = {
                int(v): bytes(box)
                for v, box in db.execute("SELECT version, check_box FROM master_checks")
            }
            vouched = False
            for version, box in checks.items():
                key = self._ring.keys.get(version)
                if key is None:
                    continue
                try:
                    key.unwrap(box, "check")
                except IntegrityError:
                    raise WrongMasterKey(
                        f"master key version {version} does not open this store"
                        " (wrong MEMVAULT_MASTER_KEY or key file)"
                    ) from None
                vouched = True
            if checks and not vouched:
                raise WrongMasterKey(
                    "the master key does not open this store"
                    " (wrong MEMVAULT_MASTER_KEY or key file)"
                )
            for version, key in self._ring.keys.items():
                if version not in checks:
                    db.execute(
                        "INSERT INTO master_checks VALUES (?, ?, ?)",
                        (version, key.wrap(_CHECK_PLAINTEXT, "check"), _now()),
                    )

    def _refresh(self) -> None:
        """Pick up a rotated key file (a running server sees ``rotate-master`` at once)."""
        if self._ring.changed():
            assert self._ring.path is not None
            self._ring = MasterRing.from_file(self._ring.path)
            self._check_master()

    def _master_for(self, version: int) -> MasterKey:
        key = self._ring.keys.get(version)
        if key is None:
            self._refresh()
            key = self._ring.keys.get(version)
        if key is None:
            raise WrongMasterKey(
                f"a data key is wrapped by master key version {version}, which this process"
                " does not hold: add it to MEMVAULT_MASTER_KEY or the key file"
            )
        return key

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
            data_key = self._master_for(int(row[0])).unwrap(bytes(row[1]), scope_id)
            cipher = ScopeCipher(scope_id, data_key)
            self._ciphers[scope_id] = cipher
            return cipher

    def _create(self, scope_id: str) -> tuple[int, bytes]:
        self._refresh()
        master = self._ring.current
        wrapped = master.wrap(os.urandom(KEY_BYTES), scope_id)
        with self._transaction() as db:
            # Another process may have created it a moment ago: keep theirs.
            db.execute(
                "INSERT OR IGNORE INTO data_keys VALUES (?, ?, ?, ?)",
                (scope_id, master.version, wrapped, _now()),
            )
            row = db.execute(
                "SELECT kek_version, wrapped FROM data_keys WHERE scope_id = ?", (scope_id,)
            ).fetchone()
        return int(row[0]), bytes(row[1])

    # --- data key generations -----------------------------------------------------------------

    @staticmethod
    def generation_id(base: str, generation: int) -> str:
        return base if generation == 1 else f"{base}#g{generation}"

    def _generations(self, base: str) -> tuple[int, int | None]:
        with self._lock:
            row = self._db.execute(
                "SELECT current, previous FROM scope_generations WHERE base = ?", (base,)
            ).fetchone()
        return (1, None) if row is None else (int(row[0]), None if row[1] is None else int(row[1]))

    def current_scope(self, base: str) -> str:
        """The key scope new rows of ``base`` are sealed with."""
        return self.generation_id(base, self._generations(base)[0])

    def live_scopes(self, base: str) -> list[str]:
        """Every key scope that may hold rows of ``base``: the current one, and the previous one
        while a data key rotation is moving rows."""
        current, previous = self._generations(base)
        scopes = [self.generation_id(base, current)]
        if previous is not None:
            scopes.append(self.generation_id(base, previous))
        return scopes

    def start_generation(self, base: str) -> tuple[str, str]:
        """Begin (or resume) replacing ``base``'s data key: returns (old scope, new scope)."""
        with self._lock:
            current, previous = self._generations(base)
            if previous is None:
                previous, current = current, current + 1
                with self._transaction() as db:
                    db.execute(
                        "INSERT INTO scope_generations VALUES (?, ?, ?) ON CONFLICT (base)"
                        " DO UPDATE SET current = excluded.current, previous = excluded.previous",
                        (base, current, previous),
                    )
        return self.generation_id(base, previous), self.generation_id(base, current)

    def finish_generation(self, base: str) -> None:
        """The old generation holds no rows any more: destroy its key."""
        _, previous = self._generations(base)
        if previous is None:
            return
        self.destroy(self.generation_id(base, previous))
        with self._lock, self._transaction() as db:
            db.execute("UPDATE scope_generations SET previous = NULL WHERE base = ?", (base,))

    def destroy_scope(self, base: str) -> None:
        """Crypto-shred every generation of a scope (erase)."""
        current, _ = self._generations(base)
        for generation in range(1, current + 1):
            self.destroy(self.generation_id(base, generation))
        with self._lock, self._transaction() as db:
            db.execute("DELETE FROM scope_generations WHERE base = ?", (base,))

    # --- rotation -----------------------------------------------------------------------------

    def versions_in_use(self) -> dict[int, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT kek_version, count(*) FROM data_keys"
                " GROUP BY kek_version ORDER BY kek_version"
            ).fetchall()
        return {int(v): int(n) for v, n in rows}

    def rotate_master(self, *, new_version: bool) -> int:
        """Rewrap every data key under the current master version (adding one first when asked).

        Each key is rewrapped with compare-and-set, in batches, so readers and writers carry on:
        a data key itself never changes, only the envelope around it.
        """
        with self._lock:
            self._refresh()
            if new_version:
                self._ring.add_version()
                self._check_master()
        rewrapped = 0
        while True:
            with self._lock:
                current = self._ring.current
                rows = self._db.execute(
                    "SELECT scope_id, kek_version, wrapped FROM data_keys WHERE kek_version != ?"
                    " LIMIT 200",
                    (current.version,),
                ).fetchall()
                if not rows:
                    break
                with self._transaction() as db:
                    for scope_id, version, wrapped in rows:
                        data_key = self._master_for(int(version)).unwrap(bytes(wrapped), scope_id)
                        rewrapped += db.execute(
                            "UPDATE data_keys SET kek_version = ?, wrapped = ?"
                            " WHERE scope_id = ? AND kek_version = ?",
                            (current.version, current.wrap(data_key, scope_id), scope_id, version),
                        ).rowcount
        with self._lock:
            self._flush_wal()
        return rewrapped

    def retire_master(self, version: int) -> None:
        """Forget an old master version: it no longer opens this store."""
        with self._lock:
            self._refresh()
            if version == self._ring.current_version:
                raise InvalidConfig("the current master key version cannot be retired")
            in_use = self.versions_in_use().get(version, 0)
            if in_use:
                raise InvalidConfig(
                    f"{in_use} data keys are still wrapped by version {version}: run rotate-master"
                )
            with self._transaction() as db:
                db.execute("DELETE FROM master_checks WHERE version = ?", (version,))
            self._ring.drop_version(version)
            self._flush_wal()

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
        with self._lock:
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
