"""Where memories live: the storage seam (``base``), its row types (``rows``) and the backends.

A backend is registered by the URL scheme that selects it, as embedders are by name: ``sqlite``
(the default: no URL, files in the home) and ``postgresql`` (``MEMVAULT_DATABASE_URL``). A backend
module is imported only when a store of its kind is opened, so the embedded default never loads
a Postgres driver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from memvault.errors import InvalidConfig
from memvault.storage.base import DataStore, KeyStore, MetaDecryptor

__all__ = ["BACKENDS", "Backend", "StoreConfig", "backend_for", "register_backend"]


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """What a backend needs to open its stores (from ``Settings``)."""

    home: Path
    database_url: str | None
    keys_database_url: str | None
    synchronous: str
    max_filter_seconds: float
    pool_size: int
    # SQLite only: how long a write waits for another process's write lock before storage_busy.
    busy_timeout_seconds: float = 30.0
    # Postgres only: how long a request waits for a pooled connection before storage_busy.
    pool_timeout_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class Backend:
    """A backend's entry points. ``restore_data`` / ``restore_keys`` put the snapshot files of a
    backup directory (``Snapshotting.snapshot``) in place of the store's data or keys; they run
    with no store of that kind open (``core/backup.py``)."""

    name: str
    open_data: Callable[[StoreConfig, MetaDecryptor], DataStore]
    open_keys: Callable[[StoreConfig], KeyStore]
    restore_data: Callable[[StoreConfig, Path], None]
    restore_keys: Callable[[StoreConfig, Path], None]


BACKENDS: dict[str, Backend] = {}


def register_backend(scheme: str, backend: Backend) -> None:
    BACKENDS[scheme] = backend


def backend_for(url: str | None) -> Backend:
    """The backend a database URL names (no URL: the embedded SQLite store)."""
    scheme = "sqlite" if not url else urlsplit(url).scheme.lower()
    if scheme == "postgres":
        scheme = "postgresql"
    backend = BACKENDS.get(scheme)
    if backend is None:
        known = ", ".join(f"{name}://" for name in sorted(BACKENDS))
        raise InvalidConfig(
            f"MEMVAULT_DATABASE_URL has an unknown scheme {scheme!r}: use one of {known}"
            " (or leave it unset for SQLite in the home directory)"
        )
    return backend


def _sqlite_data(config: StoreConfig, decrypt: MetaDecryptor) -> DataStore:
    from memvault.storage.sqlite import SQLiteStore

    return SQLiteStore(
        config.home,
        synchronous=config.synchronous,
        decrypt_metadata=decrypt,
        max_filter_seconds=config.max_filter_seconds,
        busy_timeout_seconds=config.busy_timeout_seconds,
    )


def _sqlite_keys(config: StoreConfig) -> KeyStore:
    from memvault.storage.sqlite import SQLiteKeyStore

    if config.keys_database_url:
        raise InvalidConfig(
            "MEMVAULT_KEYS_DATABASE_URL is for a Postgres store; the SQLite store keeps its keys"
            " in keys.db in the home directory"
        )
    return SQLiteKeyStore(config.home, busy_timeout_seconds=config.busy_timeout_seconds)


def _sqlite_restore_data(config: StoreConfig, directory: Path) -> None:
    from memvault.storage.sqlite import DB_NAME
    from memvault.storage.sqlite.backup import restore_file

    restore_file(directory / DB_NAME, config.home / DB_NAME, synchronous=config.synchronous)


def _sqlite_restore_keys(config: StoreConfig, directory: Path) -> None:
    from memvault.storage.sqlite import KEYS_DB_NAME
    from memvault.storage.sqlite.backup import restore_file

    restore_file(directory / KEYS_DB_NAME, config.home / KEYS_DB_NAME, synchronous="FULL")


register_backend(
    "sqlite",
    Backend("sqlite", _sqlite_data, _sqlite_keys, _sqlite_restore_data, _sqlite_restore_keys),
)


def _postgres_data(config: StoreConfig, decrypt: MetaDecryptor) -> DataStore:
    from memvault.storage.postgres import PostgresStore

    assert config.database_url is not None  # selected by its scheme
    return PostgresStore(
        config.database_url,
        decrypt_metadata=decrypt,
        max_filter_seconds=config.max_filter_seconds,
        pool_max=config.pool_size,
        pool_timeout_seconds=config.pool_timeout_seconds,
    )


def _postgres_keys(config: StoreConfig) -> KeyStore:
    from memvault.storage.postgres import PostgresKeyStore

    url = config.keys_database_url or config.database_url
    assert url is not None
    return PostgresKeyStore(url, pool_timeout_seconds=config.pool_timeout_seconds)


def _postgres_restore_data(config: StoreConfig, directory: Path) -> None:
    from memvault.storage.postgres.backup import DATA_DUMP, restore_schema
    from memvault.storage.postgres.store import DATA_SCHEMA

    assert config.database_url is not None
    restore_schema(config.database_url, DATA_SCHEMA, directory / DATA_DUMP)


def _postgres_restore_keys(config: StoreConfig, directory: Path) -> None:
    from memvault.storage.postgres.backup import KEYS_DUMP, restore_schema
    from memvault.storage.postgres.keys import KEYS_SCHEMA

    url = config.keys_database_url or config.database_url
    assert url is not None
    restore_schema(url, KEYS_SCHEMA, directory / KEYS_DUMP)


register_backend(
    "postgresql",
    Backend(
        "postgresql",
        _postgres_data,
        _postgres_keys,
        _postgres_restore_data,
        _postgres_restore_keys,
    ),
)
