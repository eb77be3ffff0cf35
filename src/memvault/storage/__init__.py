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


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    open_data: Callable[[StoreConfig, MetaDecryptor], DataStore]
    open_keys: Callable[[StoreConfig], KeyStore]


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
    )


def _sqlite_keys(config: StoreConfig) -> KeyStore:
    from memvault.storage.sqlite import SQLiteKeyStore

    if config.keys_database_url:
        raise InvalidConfig(
            "MEMVAULT_KEYS_DATABASE_URL is for a Postgres store; the SQLite store keeps its keys"
            " in keys.db in the home directory"
        )
    return SQLiteKeyStore(config.home)


register_backend("sqlite", Backend("sqlite", _sqlite_data, _sqlite_keys))


def _postgres_data(config: StoreConfig, decrypt: MetaDecryptor) -> DataStore:
    from memvault.storage.postgres import PostgresStore

    assert config.database_url is not None  # selected by its scheme
    return PostgresStore(
        config.database_url,
        decrypt_metadata=decrypt,
        max_filter_seconds=config.max_filter_seconds,
        pool_max=config.pool_size,
    )


def _postgres_keys(config: StoreConfig) -> KeyStore:
    from memvault.storage.postgres import PostgresKeyStore

    url = config.keys_database_url or config.database_url
    assert url is not None
    return PostgresKeyStore(url)


register_backend("postgresql", Backend("postgresql", _postgres_data, _postgres_keys))
