"""The embedded backend: ``memvault.db`` (data) and ``keys.db`` (keys) in the home directory."""

from memvault.storage.sqlite.keys import KEYS_DB_NAME, SQLiteKeyStore
from memvault.storage.sqlite.store import DB_NAME, SQLiteStore

__all__ = ["DB_NAME", "KEYS_DB_NAME", "SQLiteKeyStore", "SQLiteStore"]
