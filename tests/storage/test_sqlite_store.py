"""The SQLite backend's own promises beyond the contract suite: driver text never leaves it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from memvault import HashEmbedder, Memory, StorageBusy, StorageError
from memvault.storage.rows import ApiKeyRow
from memvault.storage.sqlite.errors import translate

CANARY = "canary-4c1f-row-value"


def test_driver_text_never_reaches_the_caller(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        store = m._store
        row = ApiKeyRow(CANARY, "default", "read", None, None, "h", "t", None, None, None)
        assert store.insert_api_key(row, max_live=None, now="t")
        with pytest.raises(StorageError) as refused:
            store.insert_api_key(row, max_live=None, now="t")  # the same primary key again
    assert refused.value.code == "storage_error"
    assert CANARY not in str(refused.value) and "api_keys" not in str(refused.value)
    assert "SQLITE_CONSTRAINT" in str(refused.value)


def test_busy_and_full_are_retryable() -> None:
    for name in ("SQLITE_BUSY", "SQLITE_BUSY_SNAPSHOT", "SQLITE_LOCKED", "SQLITE_FULL"):
        error = sqlite3.OperationalError(f"{CANARY} {name}")
        error.sqlite_errorname = name
        translated = translate(error, "a write")
        assert isinstance(translated, StorageBusy) and translated.http_status == 503
        assert CANARY not in translated.message
    other = sqlite3.IntegrityError(CANARY)
    other.sqlite_errorname = "SQLITE_CONSTRAINT_UNIQUE"
    assert type(translate(other, "a write")) is StorageError
