"""``memvault backup`` / ``memvault restore``: online snapshots of the data and of the keys, apart.

A **data backup** is a directory with the data store's snapshot (SQLite: ``memvault.db``; Postgres:
``memvault.dump``) and ``manifest.json``. The snapshot is the store's own ciphertext, so it is as
encrypted as the store and holds no key. A **keys backup** is another directory with the key
store's snapshot (``keys.db`` / ``memvault_keys.dump``), the home's ``master.key`` when the master
key is a file (not when it comes from ``MEMVAULT_MASTER_KEY``), and its own manifest. They are
never in one directory: a thief of the data backups alone reads nothing, and an erase, which
destroys the user's data key in the live key store, shreds the user in every older data backup.

Each manifest names its kind, the backend, the time, the schema (the migrations applied in the
snapshot), the row count of every table in the snapshot and the SHA-256 of every file. Files are
written 0600 in a 0700 directory; the manifest is written last, so a directory without one is an
interrupted backup. An existing backup is replaced only with ``force``.

``restore`` checks everything before it writes anything: every file against the manifest (a file
the manifest does not name is refused too), the backend, a schema no newer than this memvault's,
a target store that is empty (or ``force``), a key store to open the rows with. It then puts the
keys back (when a keys backup is given) and the data, and opens the store with the key store it now
has. **Rows sealed under a data key that key store no longer holds** (their user was erased, their
namespace reset, or their key rotated after the backup) cannot be read by anyone: restore deletes
them (memories, index entries, history, jobs), bumps their scopes' versions and reports how many,
so an erase stays final across a restore. Last, a sample of memories is opened with the key
store, and the restore is audited (as each backup is, in the live log).

Run restore with every process of the store stopped (servers, MCP, scripts).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from memvault import __version__
from memvault.clock import now_iso
from memvault.config import Settings
from memvault.core.rights import delete_scopes, keyless_scopes
from memvault.errors import IntegrityError, InvalidConfig, InvalidInput, StorageError
from memvault.memory import Memory
from memvault.security.audit import AuditEntry
from memvault.security.crypto import derive_key
from memvault.security.keyring import KEY_FILE_NAME, MasterKey, MasterRing
from memvault.storage import Backend, StoreConfig, backend_for
from memvault.storage.base import DATA_TABLES
from memvault.storage.files import create_private_file, ensure_private_dir, open_private
from memvault.storage.rows import Snapshot

__all__ = ["MANIFEST_NAME", "backup", "read_manifest", "restore"]

MANIFEST_NAME = "manifest.json"
FORMAT = "memvault-backup/1"
SAMPLE_SIZE = 50
# A manifest names a few files and tables: anything larger is not one of ours (and is not read).
MAX_MANIFEST_BYTES = 1 << 20
_SIGNING_PURPOSE = "memvault/v1/backup-manifest"
# Every file a backup directory may hold: what --force may replace, and nothing else.
_OURS = frozenset(
    {
        MANIFEST_NAME,
        "memvault.db",
        "keys.db",
        KEY_FILE_NAME,
        "memvault.dump",
        "memvault_keys.dump",
    }
)
# What makes a target store "not empty": any of these rows would be lost by a restore.
_LIVE_TABLES = ("memories", "history", "api_keys", "audit_log")


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def _config(settings: Settings) -> StoreConfig:
    return StoreConfig(
        home=ensure_private_dir(Path(settings.home).expanduser()),
        database_url=_secret(settings.database_url),
        keys_database_url=_secret(settings.keys_database_url),
        synchronous=settings.synchronous,
        max_filter_seconds=settings.max_filter_seconds,
        pool_size=2,
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _signature(master: MasterKey, manifest: dict[str, Any]) -> str:
    """HMAC-SHA256 of the manifest (all of it but the signature) under a key derived from one
    master key version. The SHA-256s alone prove nothing against whoever can write the backup
    directory (they can hash their own files); the signature ties the files to the master key,
    so a restore never writes a snapshot someone without it altered (planted triggers, raised
    key roles, moved rows, a Postgres dump's SQL)."""
    signed = {name: value for name, value in manifest.items() if name != "signature"}
    body = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    key = derive_key(master.raw, _SIGNING_PURPOSE)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def _sign(manifest: dict[str, Any], ring: MasterRing) -> None:
    manifest["master_key_version"] = ring.current_version
    manifest["signature"] = _signature(ring.current, manifest)


def _check_signature(manifest: dict[str, Any], ring: MasterRing, directory: Path) -> None:
    version = manifest.get("master_key_version")
    signature = manifest.get("signature")
    master = ring.keys.get(version) if isinstance(version, int) else None
    if (
        master is None
        or not isinstance(signature, str)
        or not hmac.compare_digest(signature, _signature(master, manifest))
    ):
        raise IntegrityError(
            f"{directory / MANIFEST_NAME} is not signed by this store's master key: the backup"
            " was altered, or it belongs to another store (give its keys backup with --keys, or"
            " its MEMVAULT_MASTER_KEY, including the version it was taken under)"
        )


# --- backup ----------------------------------------------------------------------------------


def _prepare(directory: Path, force: bool) -> Path:
    """An empty 0700 directory; an existing backup in it is removed only with ``force``."""
    directory = directory.expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise InvalidInput(f"{directory} is not a directory")
    ensure_private_dir(directory)
    present = sorted(entry.name for entry in directory.iterdir())
    if present and not force:
        raise InvalidInput(
            f"{directory} is not empty (it holds {', '.join(present[:5])}): choose a new"
            " directory, or pass --force to replace the backup in it"
        )
    foreign = [name for name in present if name not in _OURS]
    if foreign:
        raise InvalidInput(
            f"{directory} holds files that are not a memvault backup ({', '.join(foreign[:5])}):"
            " choose another directory"
        )
    # The manifest first: from here on the directory no longer claims to be a complete backup.
    for name in sorted(present, key=lambda n: n != MANIFEST_NAME):
        (directory / name).unlink()
    return directory


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    temporary = directory / f"{MANIFEST_NAME}.new"
    temporary.unlink(missing_ok=True)
    create_private_file(temporary, json.dumps(manifest, indent=2, sort_keys=True).encode())
    os.replace(temporary, directory / MANIFEST_NAME)


def _manifest(
    kind: str, backend: Backend, snapshot: Snapshot, directory: Path, files: tuple[str, ...]
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "kind": kind,
        "backend": backend.name,
        "created_at": now_iso(),
        "memvault_version": __version__,
        "schema_version": snapshot.migrations[-1] if snapshot.migrations else "",
        "migrations": list(snapshot.migrations),
        "tables": dict(snapshot.tables),
        "files": {
            name: {"sha256": _sha256(directory / name), "bytes": (directory / name).stat().st_size}
            for name in files
        },
    }


def _apart(data_dir: Path, keys_dir: Path) -> None:
    data_dir, keys_dir = data_dir.expanduser().resolve(), keys_dir.expanduser().resolve()
    if data_dir == keys_dir or data_dir in keys_dir.parents or keys_dir in data_dir.parents:
        raise InvalidInput(
            "keep the keys backup apart from the data backup: another directory, neither inside"
            " the other (ideally another disk, host or account)"
        )


def _backup_data(memory: Memory, out: Path, force: bool) -> dict[str, Any]:
    directory = _prepare(out, force)
    backend = backend_for(_secret(memory.settings.database_url))
    snapshot = memory.engine.store.snapshot(directory)
    manifest = _manifest("data", backend, snapshot, directory, snapshot.files)
    _sign(manifest, memory.engine.keyring.master)
    _write_manifest(directory, manifest)
    return {"directory": str(directory), **manifest}


def _backup_keys(memory: Memory, out: Path, force: bool) -> dict[str, Any]:
    directory = _prepare(out, force)
    backend = backend_for(_secret(memory.settings.database_url))
    snapshot = memory.engine.keyring.store.snapshot(directory)
    files = snapshot.files
    key_file = memory.engine.keyring.master.path
    if memory.settings.master_key is None and key_file is not None:
        create_private_file(directory / KEY_FILE_NAME, key_file.read_bytes())
        files = (*files, KEY_FILE_NAME)
    manifest = _manifest("keys", backend, snapshot, directory, files)
    manifest["master_key_file"] = KEY_FILE_NAME in files
    _sign(manifest, memory.engine.keyring.master)
    _write_manifest(directory, manifest)
    return {"directory": str(directory), **manifest}


def backup(
    memory: Memory,
    out: Path | None,
    *,
    keys_out: Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Snapshot the data store into ``out`` and/or the key store into ``keys_out``, while
    writers go on; returns the manifest of each (None for the one not taken).

    The data first: every key a row of that snapshot needs exists by the time the keys are
    copied (a key is made before the rows it seals), save those erased in between.
    """
    if out is None and keys_out is None:
        raise InvalidInput("nothing to back up: give a directory for the data or the keys")
    if out is not None and keys_out is not None:
        _apart(out, keys_out)
    data = _backup_data(memory, out, force) if out is not None else None
    keys = _backup_keys(memory, keys_out, force) if keys_out is not None else None
    kinds = " and ".join(kind for kind, done in (("data", data), ("keys", keys)) if done)
    memory.audit.append([AuditEntry(action=f"backup {kinds}", outcome="ok", source="backup")])
    return {"data": data, "keys": keys}


# --- restore ---------------------------------------------------------------------------------


def read_manifest(directory: Path, kind: str) -> dict[str, Any]:
    """The manifest of a backup directory, with every file in it checked against its SHA-256
    (its signature is checked by ``restore``, which knows the master key)."""
    directory = directory.expanduser().resolve()
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise InvalidInput(
            f"{directory} has no {MANIFEST_NAME}: not a memvault backup, or an interrupted one"
        )
    _no_link(path)
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise IntegrityError(f"{path} is too large to be a memvault manifest")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if manifest["format"] != FORMAT or not isinstance(files, dict) or not files:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise InvalidInput(f"{path} is not a {FORMAT} manifest") from None
    if manifest.get("kind") != kind:
        hint = " (pass a keys backup as --keys)" if manifest.get("kind") == "keys" else ""
        raise InvalidInput(f"{directory} is a {manifest.get('kind')} backup, not {kind}{hint}")
    listed = set(files)
    if any(Path(name).name != name or name.startswith(".") for name in listed):
        raise IntegrityError(f"{path} names a file outside its directory")
    extra = sorted(e.name for e in directory.iterdir() if e.name not in listed | {MANIFEST_NAME})
    if extra:
        raise IntegrityError(f"{directory} holds files its manifest does not name: {extra[:5]}")
    for name, entry in sorted(files.items()):
        file = directory / name
        _no_link(file)
        if not file.is_file():
            raise IntegrityError(f"{file} is missing: the backup is incomplete")
        if _sha256(file) != entry.get("sha256"):
            raise IntegrityError(
                f"{file} does not match the SHA-256 in its manifest: the backup was altered or"
                " damaged, and is refused"
            )
    return dict(manifest)


def _no_link(path: Path) -> None:
    """A link in a backup would make restore read a file outside it, checked or not."""
    if path.is_symlink():
        raise IntegrityError(f"{path} is a symbolic link: a backup holds regular files only")


def _master_ring(settings: Settings, keys_dir: Path | None) -> MasterRing:
    """The master key a restore checks signatures with, and opens the store with: the one set
    in ``MEMVAULT_MASTER_KEY``, else the keys backup's key file, else the target home's."""
    secret = _secret(settings.master_key)
    if secret is not None:
        return MasterRing.from_env(secret)
    home = Path(settings.home).expanduser()
    for path in (keys_dir / KEY_FILE_NAME if keys_dir is not None else None, home / KEY_FILE_NAME):
        if path is not None and path.is_file():
            return MasterRing.from_file(path)
    raise InvalidInput(
        "no master key to check and open the backup with: give the keys backup too (--keys DIR),"
        " set MEMVAULT_MASTER_KEY, or restore into the home whose key store goes with this data"
    )


def _check_schema(manifest: dict[str, Any], known: tuple[str, ...]) -> None:
    newer = [name for name in manifest.get("migrations", []) if name not in known]
    if newer:
        raise InvalidInput(
            f"the backup's schema is newer than this memvault's ({', '.join(newer)}): restore it"
            " with the memvault version that wrote it (or a later one)"
        )


def _no_decryption(*_args: Any) -> str:
    raise StorageError("a store opened for a restore decrypts nothing")


def _check_data_target(backend: Backend, config: StoreConfig, force: bool) -> tuple[str, ...]:
    """Refuse a target store that holds rows (unless ``force``); the migrations it knows."""
    store = backend.open_data(config, _no_decryption)
    try:
        known = store.status().migrations
        held = {table: store.count_rows(table) for table in _LIVE_TABLES}
    finally:
        store.close()
    if any(held.values()) and not force:
        raise InvalidInput(
            f"the target store is not empty ({held['memories']} memories): restore into an empty"
            " home or database, or pass --force to replace it"
        )
    return known


def _place_master_key(config: StoreConfig, settings: Settings, keys_dir: Path, force: bool) -> None:
    backed_up = keys_dir / KEY_FILE_NAME
    if settings.master_key is not None:
        return  # MEMVAULT_MASTER_KEY names the key; opening the store checks it fits
    there = config.home / KEY_FILE_NAME
    if not backed_up.exists():
        if not there.exists():
            raise InvalidConfig(
                "the keys backup holds no master key (it came from MEMVAULT_MASTER_KEY): set"
                " MEMVAULT_MASTER_KEY to that key before restoring"
            )
        return
    if there.exists():
        if there.read_bytes() == backed_up.read_bytes():
            return
        if not force:
            raise InvalidConfig(
                f"{there} holds another master key: restore into a new home, or pass --force"
            )
        temporary = there.with_suffix(".restored")
        temporary.unlink(missing_ok=True)
        create_private_file(temporary, backed_up.read_bytes())
        os.replace(temporary, there)
        return
    create_private_file(there, backed_up.read_bytes())


def _check_keys_target(backend: Backend, config: StoreConfig) -> None:
    """A data backup alone needs the target's key store: refuse one that holds no key at all."""
    keys = backend.open_keys(config)
    try:
        held = keys.count_rows("data_keys")
    finally:
        keys.close()
    if not held:
        raise InvalidInput(
            "the target has no data key to open the backup with: give the keys backup too"
            " (--keys DIR), or restore into the home whose key store goes with this data"
        )


def _shred_unreadable(memory: Memory) -> dict[str, int]:
    """Delete the rows whose data key the key store no longer holds (see the module docstring)."""
    in_use, gone = keyless_scopes(memory.engine)
    if in_use and len(gone) == len(in_use):
        # Not one row opens: this is another store's key store, not erasures since the backup.
        raise InvalidConfig(
            "the key store holds none of the data keys of the restored rows: it belongs to"
            " another store. Nothing was deleted; restore again with --force and the keys backup"
            " that goes with this data (--keys DIR)"
        )
    return {"key_scopes": len(gone), **delete_scopes(memory.engine, gone)}


def _verify_sample(memory: Memory) -> int:
    """Open the first memories (text and metadata), expired ones too: a wrong key raises."""
    engine = memory.engine
    rows, _ = engine.store.export_batch("memories", None, SAMPLE_SIZE)
    for exported in rows:
        namespace = str(exported["namespace"])
        row = engine.store.get(namespace, str(exported["id"]))
        if row is None:
            raise StorageError(f"memory {exported['id']} vanished from the restored store")
        engine.view(namespace).codec.public(row)
    return len(rows)


def _staged(directory: Path, manifest: dict[str, Any], staging: Path) -> Path:
    """Private copies of a backup's files, each checked against its SHA-256 as it is copied
    (links refused). Restore reads only these: a file swapped in the backup directory after
    the checks (whoever can write it, while restore runs) is never what is restored."""
    copies = ensure_private_dir(staging / str(manifest["kind"]))
    for name, entry in sorted(manifest["files"].items()):
        digest = hashlib.sha256()
        try:
            source = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            raise IntegrityError(f"{directory / name} is not a regular file") from None
        with os.fdopen(source, "rb") as reader, open_private(copies / name, "xb") as copy:
            for chunk in iter(lambda: reader.read(1 << 20), b""):
                digest.update(chunk)
                copy.write(chunk)
        if digest.hexdigest() != entry.get("sha256"):
            raise IntegrityError(
                f"{directory / name} does not match the SHA-256 in its manifest: the backup was"
                " altered or damaged, and is refused"
            )
    return copies


def restore(
    settings: Settings,
    data_dir: Path,
    *,
    keys_dir: Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Put a data backup (and, when given, its keys backup) back into the store ``settings``
    select; returns what was restored and what was shredded.

    The files are first copied to a private temporary directory (``TMPDIR``: it needs room for
    the backup), checked there, and restored from there."""
    data_dir = data_dir.expanduser().resolve()
    keys_dir = keys_dir.expanduser().resolve() if keys_dir is not None else None
    manifest = read_manifest(data_dir, "data")
    keys_manifest = read_manifest(keys_dir, "keys") if keys_dir is not None else None
    if keys_dir is not None:
        _apart(data_dir, keys_dir)
    with tempfile.TemporaryDirectory(prefix="memvault-restore-") as staging:
        data_copy = _staged(data_dir, manifest, Path(staging))
        keys_copy = None
        if keys_dir is not None and keys_manifest is not None:
            keys_copy = _staged(keys_dir, keys_manifest, Path(staging))
        ring = _master_ring(settings, keys_copy)
        _check_signature(manifest, ring, data_dir)
        if keys_manifest is not None and keys_dir is not None:
            _check_signature(keys_manifest, ring, keys_dir)
        done = _restore_checked(settings, manifest, keys_manifest, data_copy, keys_copy, force)
    return {
        "restored_from": str(data_dir),
        "keys_from": str(keys_dir) if keys_dir is not None else None,
        **done,
    }


def _restore_checked(
    settings: Settings,
    manifest: dict[str, Any],
    keys_manifest: dict[str, Any] | None,
    data_copy: Path,
    keys_copy: Path | None,
    force: bool,
) -> dict[str, Any]:
    """``restore`` once the backup's files are checked copies of a signed manifest."""
    config = _config(settings)
    backend = backend_for(config.database_url)
    for found in (manifest, keys_manifest):
        if found is not None and found["backend"] != backend.name:
            raise InvalidInput(
                f"the backup is of a {found['backend']} store and the target is {backend.name}:"
                " restore into the same kind of store, then use memvault migrate"
            )
    known = _check_data_target(backend, config, force)
    _check_schema(manifest, known)
    if keys_copy is None:
        _check_keys_target(backend, config)
    else:
        # The target's data store is empty (or --force): its key store opens nothing worth
        # keeping. (Over a live store, an older key store brings back users erased since.)
        _place_master_key(config, settings, keys_copy, force)
        backend.restore_keys(config, keys_copy)
    backend.restore_data(config, data_copy)
    opened = settings.model_copy(update={"reseal_on_open": False})
    with Memory(settings=opened) as memory:
        shredded = _shred_unreadable(memory)
        verified = _verify_sample(memory)
        # The restored log ends where the backup was taken; the chain goes on from its head.
        memory.audit.append([AuditEntry(action="restore", outcome="ok", source="restore")])
        store = memory.engine.store
        tables = {table: store.count_rows(table) for table in DATA_TABLES}
    return {
        "backup_created_at": manifest["created_at"],
        "schema_version": manifest["schema_version"],
        "tables": tables,
        "shredded": shredded,
        "verified_memories": verified,
    }
