"""Master key (KEK) and per-scope data keys (DEKs), kept apart from the data in ``keys.db``.

Envelope encryption: each key scope (``keyscope.KeyScope``: namespace, kind, owner, generation)
gets a random 256-bit data key, stored only wrapped (AES-256-GCM) by the master key with the key
scope's id as associated data, in a ``KeyStore`` (``storage.base``) apart from the data:
``keys.db`` beside ``memvault.db``, or a Postgres schema (or database) of its own, so that it can
be backed up on its own schedule, and so that forgetting a scope's key (crypto-shredding) makes
every copy of that scope's rows unreadable.

The master key comes from ``MEMVAULT_MASTER_KEY`` (base64 of 32 bytes) or, for the embedded
default, from ``master.key`` created 0600 in the home on first start. A key file beside the data
protects against a stolen database file, not against a stolen home directory: docs/security.md says
so. A check value wrapped by the master key tells a wrong key apart from a corrupt row.

Generations are never reused: rotation, erase and reset move a key scope to a new generation
(a new id) and keep the record, so an id names one data key forever and a cipher cached by id in
any process can only ever open rows of that very key. Writers read the current generation from
the key store inside their write transaction, under the key owner's lock (``current``), never
from a cache.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from memvault.errors import IntegrityError, InvalidConfig, WrongMasterKey
from memvault.lru import ByteLRU, text_size
from memvault.security.crypto import KEY_BYTES, ScopeCipher, open_box, seal_box
from memvault.security.keyscope import API_KEYS, AUDIT, KeyScope
from memvault.storage.base import KeyStore
from memvault.storage.files import create_private_file
from memvault.storage.rows import WrappedKey

__all__ = ["KeyRing", "MasterKey", "MasterRing", "load_master_key"]

KEY_FILE_NAME = "master.key"
_CHECK_PLAINTEXT = b"memvault master key check v1"
# Unwrapped data keys kept in memory: at most this many (an AES-GCM context and a 32-byte key
# each, charged ~1 KB), least recently used first out.
CIPHER_CACHE_ENTRIES = 4096
CIPHER_CACHE_BYTES = 8 * 1024 * 1024
# The pre-v2 names of the two system keys: constants, never computed from a key scope. No tenant
# can spell them ("_system" is not a namespace), so their adoption needs no row to vouch for it.
# How often (at most) a use of a cached key asks the key store whether another process changed it
# (``KeyStore.changes``): a search uses ~20 keys in a millisecond; one look costs ~6 us on SQLite
# (Python's sqlite3 call overhead) and nothing on Postgres (a counter LISTEN/NOTIFY moves).
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

    def wrapped(self, data_key: bytes, scope_id: str) -> WrappedKey:
        return WrappedKey(self.version, self.wrap(data_key, scope_id))

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

    Another process may destroy a key (erase, reset) at any time: a use of the cache first asks
    the key store for its change counter (``KeyStore.changes``: SQLite's ``data_version``, a
    LISTEN/NOTIFY counter on Postgres), at most once per ``RECHECK_SECONDS``; when it moved,
    cached keys no longer stored are dropped and the ``on_forget`` listeners told (they drop the
    decrypted metadata and vector indexes of those scopes)."""

    def __init__(self, keys: KeyStore, master: MasterRing) -> None:
        self._ring = master
        self._keys = keys
        # Re-entrant: generation and rotation helpers call each other under it.
        self._lock = threading.RLock()
        self._ciphers: ByteLRU[str, ScopeCipher] = ByteLRU(
            max_bytes=CIPHER_CACHE_BYTES,
            max_entries=CIPHER_CACHE_ENTRIES,
            size=lambda scope_id, _cipher: text_size(scope_id) + 1024,
        )
        self._listeners: list[Callable[[list[str]], None]] = []
        self._check_master()
        self._seen_version = self._keys.changes()
        self._checked_at = time.monotonic()

    @property
    def master(self) -> MasterRing:
        return self._ring

    @property
    def store(self) -> KeyStore:
        return self._keys

    def close(self) -> None:
        with self._lock:
            self._ciphers.clear()
            self._keys.close()

    def on_forget(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener(scope_ids)`` when cached keys turn out destroyed by another process."""
        with self._lock:
            self._listeners.append(listener)

    def _revalidate(self) -> list[str]:
        """(Under the lock.) The cached keys another process destroyed since the last look,
        now dropped from the cache; empty when the key store did not change."""
        now = time.monotonic()
        if now - self._checked_at < RECHECK_SECONDS:
            return []
        self._checked_at = now
        version = self._keys.changes()
        if version == self._seen_version:
            return []
        self._seen_version = version
        cached = self._ciphers.keys()
        if not cached:
            return []
        present = self._keys.present(cached)
        gone = [scope_id for scope_id in cached if scope_id not in present]
        for scope_id in gone:
            self._ciphers.pop(scope_id)
        return gone

    def _tell(self, gone: list[str]) -> None:
        """Outside the lock: the listeners take their own locks."""
        if gone:
            for listener in list(self._listeners):
                listener(gone)

    def _check_master(self) -> None:
        """Every ring version the store knows must open its check value, and at least one must
        be known (unless the store is new); a new version is recorded once an old one vouched."""
        checks = self._keys.master_checks()
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
                "the master key does not open this store (wrong MEMVAULT_MASTER_KEY or key file)"
            )
        missing = {
            version: key.wrap(_CHECK_PLAINTEXT, "check")
            for version, key in self._ring.keys.items()
            if version not in checks
        }
        if missing:
            self._keys.add_master_checks(missing)

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
                stored = self._keys.wrapped(scope_id)
                if stored is not None:
                    cached = self._remember(scope_id, self._unwrap(scope_id, stored))
                elif make is not None:
                    cached = self._remember(scope_id, make())
        self._tell(gone)
        return cached

    def _remember(self, scope_id: str, data_key: bytes) -> ScopeCipher:
        cipher = ScopeCipher(scope_id, data_key)
        self._ciphers.put(scope_id, cipher)
        return cipher

    def _unwrap(self, scope_id: str, stored: WrappedKey) -> bytes:
        return self._master_for(stored.kek_version).unwrap(stored.wrapped, scope_id)

    def _create(self, key_scope: KeyScope, adopt: str | None) -> bytes:
        self._refresh()
        master = self._ring.current
        scope_id = key_scope.id
        adopt = adopt or _SYSTEM_LEGACY_NAMES.get(key_scope)
        legacy = self._keys.wrapped(adopt, legacy_only=True) if adopt is not None else None
        data_key = (
            self._unwrap(adopt, legacy)
            if adopt is not None and legacy is not None
            else os.urandom(KEY_BYTES)
        )
        current, previous = self._generations(key_scope)
        generation = (key_scope.namespace, key_scope.kind, key_scope.owner, current, previous)
        # Ours, or another process's made a moment before (then theirs is kept).
        stored = self._keys.create(scope_id, master.wrapped(data_key, scope_id), generation)
        return self._unwrap(scope_id, stored)

    # --- data key generations -----------------------------------------------------------------

    def _generations(self, key_scope: KeyScope) -> tuple[int, int | None]:
        found = self._keys.generations(
            key_scope.namespace, key_scope.kind, key_scope.owner, key_scope.owner_legacy_base
        )
        return (1, None) if found is None else found

    def current(self, key_scope: KeyScope) -> KeyScope:
        """The generation new rows of ``key_scope`` are sealed with, read from the key store now.

        Call it inside the write transaction, holding the key owner's lock: erase and rotation
        change the generation under the same lock, so the answer holds until the write commits."""
        return key_scope.at(self._generations(key_scope)[0])

    def current_many(self, key_scopes: Sequence[KeyScope]) -> list[KeyScope]:
        """``current`` of each of ``key_scopes``, in order, read at once (one round trip on
        Postgres instead of one per owner). The same rule: inside the write transaction."""
        found = self._keys.generations_many(
            [(k.namespace, k.kind, k.owner, k.owner_legacy_base) for k in key_scopes]
        )
        return [
            k.at(1 if generations is None else generations[0])
            for k, generations in zip(key_scopes, found, strict=True)
        ]

    def live(self, key_scope: KeyScope) -> list[KeyScope]:
        """Every generation that may hold rows: the current one, and the previous one while a
        data key rotation is moving rows."""
        current, previous = self._generations(key_scope)
        scopes = [key_scope.at(current)]
        if previous is not None:
            scopes.append(key_scope.at(previous))
        return scopes

    def _set_generations(self, key_scope: KeyScope, current: int, previous: int | None) -> None:
        self._keys.set_generations(
            key_scope.namespace, key_scope.kind, key_scope.owner, current, previous
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
            self.destroy(key_scope.at(previous).id)
            self._set_generations(key_scope, current, None)

    def destroy_scope(self, key_scope: KeyScope) -> None:
        """Crypto-shred every generation of a key scope (erase) and move it to a new, unused
        generation: a process still holding a cipher of an old one can never seal under an id
        that new rows use."""
        with self._lock:
            current, _ = self._generations(key_scope)
            # Only the keys' own ids: a pre-v2 name might be another owner's key (see
            # ``destroy_legacy``, which takes names read from the owner's own rows).
            ids = [key_scope.at(generation).id for generation in range(1, current + 1)]
            # One commit: a crash between the keys' deletion and the move to a new generation
            # left the current generation without its key, its rows never to open again.
            owner = (key_scope.namespace, key_scope.kind, key_scope.owner, current + 1)
            self._keys.delete(ids, advance=owner)
            self._forget(ids)

    def destroy_legacy(self, names: list[str]) -> None:
        """Crypto-shred keys stored under pre-v2 names, as read from an owner's own legacy rows
        (``codec.legacy_keys``); never a name computed from a key scope."""
        with self._lock:
            self._forget(self._keys.delete(names, legacy_only=True))

    def _forget(self, scope_ids: list[str]) -> None:
        for scope_id in scope_ids:
            self._ciphers.pop(scope_id)

    # --- rotation -----------------------------------------------------------------------------

    def versions_in_use(self) -> dict[int, int]:
        return self._keys.versions_in_use()

    def rotate_master(
        self, *, new_version: bool, on_progress: Callable[[int], None] | None = None
    ) -> int:
        """Rewrap every data key under the current master version (adding one first when asked).

        Each key is rewrapped with compare-and-set, in batches, so readers and writers carry on:
        a data key itself never changes, only the envelope around it. ``on_progress(rewrapped
        so far)`` after each batch.
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
                found = self._keys.not_wrapped_by(current.version, 200)
                if not found:
                    break
                rewrapped += self._keys.rewrap(
                    [
                        (scope_id, old, current.wrapped(self._unwrap(scope_id, old), scope_id))
                        for scope_id, old in found
                    ]
                )
            if on_progress is not None:
                on_progress(rewrapped)
        self._keys.flush()
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
            self._keys.drop_master_check(version)
            self._ring.drop_version(version)

    def destroy_all(self, namespace: str) -> list[str]:
        """Forget every data key of a namespace (used by ``reset``): its rows become noise.
        Each key scope moves to a new generation, so no id is ever reused. Returns the ids of
        the keys destroyed (what was derived from them, such as graph files, goes too)."""
        with self._lock:
            ids = [
                KeyScope(namespace, kind, owner, generation).id  # type: ignore[arg-type]
                for kind, owner, current in self._keys.namespace_generations(namespace)
                for generation in range(1, current + 1)
            ]
            gone = [*ids, *self._keys.delete_namespace(namespace, ids)]
            self._forget(gone)
        return gone

    def drop_legacy_keys(self) -> int:
        """Forget every key still under a pre-v2 name (once no row needs one): each was adopted
        under its new id, or holds no rows."""
        with self._lock:
            gone = self._keys.drop_legacy()
            self._forget(gone)
        return len(gone)

    def has(self, scope_id: str) -> bool:
        return self._keys.wrapped(scope_id) is not None

    def destroy(self, scope_id: str) -> bool:
        """Crypto-shred one key: forget it everywhere this process can reach.

        The key store deletes it (overwriting the freed page where it can), and the cached key
        is dropped. Every copy of the rows it sealed, backups included, is then unreadable.
        """
        with self._lock:
            gone = self._keys.delete([scope_id])
            self._forget([scope_id])
        return bool(gone)
