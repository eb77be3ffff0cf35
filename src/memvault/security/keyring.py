"""Master key (KEK) and per-scope data keys (DEKs), kept apart from the data in ``keys.db``.

Envelope encryption: each key scope (``keyscope.KeyScope``: namespace, kind, owner, generation)
gets a random 256-bit data key, stored only wrapped (AES-256-GCM) by the master key with the key
scope's id as associated data. ``keys.db`` is a separate
file from ``memvault.db`` so that it can be backed up on its own schedule, and so that forgetting a
scope's key (crypto-shredding) makes every copy of that scope's rows unreadable.

The master key comes from ``MEMVAULT_MASTER_KEY`` (base64 of 32 bytes) or, for the embedded
default, from ``master.key`` created 0600 in the home on first start. A key file beside the data
protects against a stolen database file, not against a stolen home directory: docs/security.md says
so. A check value wrapped by the master key tells a wrong key apart from a corrupt row.

Generations are never reused: rotation, erase and reset move a key scope to a new generation
(a new id) and keep the record, so an id names one data key forever and a cipher cached by id in
any process can only ever open rows of that very key. Writers read the current generation from
``keys.db`` inside their write transaction (``current``), never from a cache.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from memvault.errors import IntegrityError, InvalidConfig, StorageError, WrongMasterKey
from memvault.lru import ByteLRU, text_size
from memvault.security.crypto import KEY_BYTES, ScopeCipher, open_box, seal_box
from memvault.security.keyscope import API_KEYS, AUDIT, KeyScope
from memvault.storage.files import create_private_file, open_sqlite

__all__ = ["KeyRing", "MasterKey", "MasterRing", "load_master_key"]

KEY_FILE_NAME = "master.key"
KEYS_DB_NAME = "keys.db"
_CHECK_PLAINTEXT = b"memvault master key check v1"
_DELETE_KEY = "DELETE FROM data_keys WHERE scope_id = ?"
_DELETE_LEGACY_KEY = "DELETE FROM data_keys WHERE scope_id = ? AND format = 1"
# Unwrapped data keys kept in memory: at most this many (an AES-GCM context and a 32-byte key
# each, charged ~1 KB), least recently used first out.
CIPHER_CACHE_ENTRIES = 4096
CIPHER_CACHE_BYTES = 8 * 1024 * 1024
# The pre-v2 names of the two system keys: constants, never computed from a key scope. No tenant
# can spell them ("_system" is not a namespace), so their adoption needs no row to vouch for it.
# How often (at most) a use of a cached key looks at keys.db for keys destroyed by another process:
# a search uses ~20 keys in a millisecond; one look costs ~6 us (Python's sqlite3 call overhead).
RECHECK_SECONDS = 0.001
_SYSTEM_LEGACY_NAMES = {API_KEYS: "_system/api-keys", AUDIT: "_system/audit"}


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
    """Data keys by scope, unwrapped on first use and kept in memory while the store is open.

    Another process may destroy a key (erase, reset) at any time: a use of the cache first
    reads ``PRAGMA data_version`` of the ``keys.db`` connection (it changes when another
    connection commits), at most once per ``RECHECK_SECONDS``; when it changed, cached keys no
    longer in ``data_keys`` are dropped and the ``on_forget`` listeners told (they drop the
    decrypted metadata and vector indexes of those scopes)."""

    def __init__(self, home: Path, master: MasterRing) -> None:
        self._ring = master
        # Re-entrant: generation and rotation helpers call each other under it, and it also
        # serialises every use of the one keys.db connection across threads.
        self._lock = threading.RLock()
        self._ciphers: ByteLRU[str, ScopeCipher] = ByteLRU(
            max_bytes=CIPHER_CACHE_BYTES,
            max_entries=CIPHER_CACHE_ENTRIES,
            size=lambda scope_id, _cipher: text_size(scope_id) + 1024,
        )
        self._listeners: list[Callable[[list[str]], None]] = []
        self._db = open_sqlite(home / KEYS_DB_NAME, synchronous="FULL")
        try:
            self._migrate()
            self._check_master()
            self._seen_version = self._data_version()
            self._checked_at = time.monotonic()
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

    def on_forget(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener(scope_ids)`` when cached keys turn out destroyed by another process."""
        with self._lock:
            self._listeners.append(listener)

    def _data_version(self) -> int:
        try:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise StorageError(f"key store: {exc}") from exc

    def _revalidate(self) -> list[str]:
        """(Under the lock.) The cached keys another connection destroyed since the last look,
        now dropped from the cache; empty when ``keys.db`` did not change."""
        now = time.monotonic()
        if now - self._checked_at < RECHECK_SECONDS:
            return []
        self._checked_at = now
        version = self._data_version()
        if version == self._seen_version:
            return []
        self._seen_version = version
        cached = self._ciphers.keys()
        if not cached:
            return []
        present = {
            row[0]
            for row in self._db.execute(
                "SELECT scope_id FROM data_keys WHERE scope_id IN (SELECT value FROM json_each(?))",
                (json.dumps(cached),),
            )
        }
        gone = [scope_id for scope_id in cached if scope_id not in present]
        for scope_id in gone:
            self._ciphers.pop(scope_id)
        return gone

    def _tell(self, gone: list[str]) -> None:
        """Outside the lock: the listeners take their own locks."""
        if gone:
            for listener in list(self._listeners):
                listener(gone)

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

    def cipher(self, scope_id: str) -> ScopeCipher | None:
        """The cipher of the key named ``scope_id`` (a ``KeyScope.id``, or a pre-v2 name), or
        None when no such key exists (never made, or destroyed: by this process, or by another
        one more than ``RECHECK_SECONDS`` before).
        Never creates a key: readers use this, so a row whose ``scope_id`` was edited cannot
        conjure a fresh key."""
        return self._lookup(scope_id, None)

    def cipher_for(self, key_scope: KeyScope, *, adopt: str | None = None) -> ScopeCipher:
        """The cipher of ``key_scope``, its data key made now if it has none yet.

        ``adopt``: the pre-v2 name of the key that rows of this very owner and generation name
        (the caller read it from those rows, with their owner columns: see ``codec.legacy_keys``);
        a new key takes that key's bytes (re-wrapped under the new id), so dedup and token
        hashes of old rows stay valid. No old name is ever computed here from a key scope: the
        user ``alice#g2`` spells the old name of ``alice``'s second generation."""
        cipher = self._lookup(key_scope.id, lambda: self._create(key_scope, adopt))
        assert cipher is not None  # made when missing
        return cipher

    def _lookup(self, scope_id: str, make: Callable[[], bytes] | None) -> ScopeCipher | None:
        """The cached cipher (once destroyed keys are dropped), else the stored key, else the
        key ``make`` creates (None when there is no ``make``)."""
        with self._lock:
            gone = self._revalidate()
            cached = self._ciphers.get(scope_id)
            if cached is None:
                row = self._stored(scope_id)
                if row is not None:
                    cached = self._remember(scope_id, self._unwrap(scope_id, row))
                elif make is not None:
                    cached = self._remember(scope_id, make())
        self._tell(gone)
        return cached

    def _stored(self, scope_id: str) -> tuple[int, bytes] | None:
        """The key's (master version, wrapped key) row, or None (call under the lock)."""
        row = self._db.execute(
            "SELECT kek_version, wrapped FROM data_keys WHERE scope_id = ?", (scope_id,)
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def _remember(self, scope_id: str, data_key: bytes) -> ScopeCipher:
        cipher = ScopeCipher(scope_id, data_key)
        self._ciphers.put(scope_id, cipher)
        return cipher

    def _unwrap(self, scope_id: str, row: tuple[int, bytes]) -> bytes:
        return self._master_for(int(row[0])).unwrap(bytes(row[1]), scope_id)

    def _create(self, key_scope: KeyScope, adopt: str | None) -> bytes:
        self._refresh()
        master = self._ring.current
        scope_id = key_scope.id
        adopt = adopt or _SYSTEM_LEGACY_NAMES.get(key_scope)
        legacy = None
        if adopt is not None:
            legacy = self._db.execute(
                "SELECT kek_version, wrapped FROM data_keys WHERE scope_id = ? AND format = 1",
                (adopt,),
            ).fetchone()
        data_key = (
            self._unwrap(adopt, legacy) if adopt is not None and legacy else os.urandom(KEY_BYTES)
        )
        current, previous = self._generations(key_scope)
        with self._transaction() as db:
            # Another process may have created it a moment ago: keep theirs.
            db.execute(
                "INSERT OR IGNORE INTO data_keys VALUES (?, ?, ?, ?, 2)",
                (scope_id, master.version, master.wrap(data_key, scope_id), _now()),
            )
            # Record the generation, so that reset can move past it (ids are never reused).
            db.execute(
                "INSERT OR IGNORE INTO key_generations VALUES (?, ?, ?, ?, ?)",
                (key_scope.namespace, key_scope.kind, key_scope.owner, current, previous),
            )
            row = self._stored(scope_id)  # ours, or another process's made a moment before
        assert row is not None  # inserted above in this transaction, or there already
        return self._unwrap(scope_id, row)

    # --- data key generations -----------------------------------------------------------------

    def _generations(self, key_scope: KeyScope) -> tuple[int, int | None]:
        with self._lock:
            row = self._db.execute(
                "SELECT current, previous FROM key_generations"
                " WHERE namespace = ? AND kind = ? AND owner = ?",
                (key_scope.namespace, key_scope.kind, key_scope.owner),
            ).fetchone()
            if row is None:  # an older version's record, if any
                row = self._db.execute(
                    "SELECT current, previous FROM scope_generations WHERE base = ?",
                    (key_scope.owner_legacy_base,),
                ).fetchone()
        return (1, None) if row is None else (int(row[0]), None if row[1] is None else int(row[1]))

    def current(self, key_scope: KeyScope) -> KeyScope:
        """The generation new rows of ``key_scope`` are sealed with, read from ``keys.db`` now.

        Call it inside the write transaction of ``memvault.db``: erase and rotation change the
        generation while holding that lock, so the answer holds until the write commits."""
        return key_scope.at(self._generations(key_scope)[0])

    def live(self, key_scope: KeyScope) -> list[KeyScope]:
        """Every generation that may hold rows: the current one, and the previous one while a
        data key rotation is moving rows."""
        current, previous = self._generations(key_scope)
        scopes = [key_scope.at(current)]
        if previous is not None:
            scopes.append(key_scope.at(previous))
        return scopes

    def _set_generations(self, key_scope: KeyScope, current: int, previous: int | None) -> None:
        with self._lock, self._transaction() as db:
            db.execute(
                "INSERT INTO key_generations VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (namespace, kind, owner)"
                " DO UPDATE SET current = excluded.current, previous = excluded.previous",
                (key_scope.namespace, key_scope.kind, key_scope.owner, current, previous),
            )

    def start_generation(self, key_scope: KeyScope) -> tuple[KeyScope, KeyScope]:
        """Begin (or resume) replacing the data key: returns (old generation, new generation)."""
        with self._lock:
            current, previous = self._generations(key_scope)
            if previous is None:
                previous, current = current, current + 1
                self._set_generations(key_scope, current, previous)
        return key_scope.at(previous), key_scope.at(current)

    def finish_generation(self, key_scope: KeyScope) -> None:
        """The old generation holds no rows any more: destroy its key."""
        with self._lock:
            current, previous = self._generations(key_scope)
            if previous is None:
                return
            self._destroy_generation(key_scope.at(previous))
            self._set_generations(key_scope, current, None)

    def destroy_scope(self, key_scope: KeyScope) -> None:
        """Crypto-shred every generation of a key scope (erase) and move it to a new, unused
        generation: a process still holding a cipher of an old one can never seal under an id
        that new rows use."""
        with self._lock:
            current, _ = self._generations(key_scope)
            for generation in range(1, current + 1):
                self._destroy_generation(key_scope.at(generation))
            self._set_generations(key_scope, current + 1, None)

    def _destroy_generation(self, key_scope: KeyScope) -> None:
        # Only the key's own id: its pre-v2 name might be another owner's key (see
        # ``destroy_legacy``, which takes names read from the owner's own rows).
        self.destroy(key_scope.id)

    def destroy_legacy(self, names: list[str]) -> None:
        """Crypto-shred keys stored under pre-v2 names, as read from an owner's own legacy rows
        (``codec.legacy_keys``); never a name computed from a key scope."""
        for name in names:
            self.destroy(name, legacy_only=True)

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
        """Forget every data key of a namespace (used by ``reset``): its rows become noise.
        Each key scope moves to a new generation, so no id is ever reused."""
        with self._lock:
            with self._transaction() as db:
                recorded = db.execute(
                    "SELECT kind, owner, current FROM key_generations WHERE namespace = ?",
                    (namespace,),
                ).fetchall()
                ids = [
                    KeyScope(namespace, kind, owner, generation).id
                    for kind, owner, current in recorded
                    for generation in range(1, int(current) + 1)
                ]
                db.executemany(_DELETE_KEY, [(i,) for i in ids])
                db.execute(
                    "UPDATE key_generations SET current = current + 1, previous = NULL"
                    " WHERE namespace = ?",
                    (namespace,),
                )
                # Keys of older versions, by their joined names.
                gone = db.execute(
                    "DELETE FROM data_keys WHERE format = 1 AND scope_id LIKE ? ESCAPE '\\'"
                    " RETURNING scope_id",
                    (_like_prefix(f"{namespace}/"),),
                ).fetchall()
            for scope_id in [*ids, *(row[0] for row in gone)]:
                self._ciphers.pop(scope_id)
            self._flush_wal()

    def drop_legacy_keys(self) -> int:
        """Forget every key still under a pre-v2 name (once no row needs one): each was adopted
        under its new id, or holds no rows."""
        with self._lock:
            with self._transaction() as db:
                gone = db.execute(
                    "DELETE FROM data_keys WHERE format = 1 RETURNING scope_id"
                ).fetchall()
            for (scope_id,) in gone:
                self._ciphers.pop(scope_id)
            self._flush_wal()
        return len(gone)

    def has(self, scope_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM data_keys WHERE scope_id = ?", (scope_id,))
            return row.fetchone() is not None

    def destroy(self, scope_id: str, *, legacy_only: bool = False) -> bool:
        """Crypto-shred one key: forget it everywhere this process can reach.

        The row is deleted with ``secure_delete`` on (its page is overwritten), the cached key is
        dropped, and the WAL is checkpointed and truncated so no old frame still holds the
        wrapped key. Every copy of the rows it sealed, backups included, is then unreadable.
        ``legacy_only``: only a key stored under a pre-v2 joined name.
        """
        sql = _DELETE_LEGACY_KEY if legacy_only else _DELETE_KEY
        with self._lock:
            with self._transaction() as db:
                gone = db.execute(sql, (scope_id,)).rowcount
            self._ciphers.pop(scope_id)
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
