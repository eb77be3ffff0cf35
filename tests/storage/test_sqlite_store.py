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


def test_writers_of_one_process_queue_on_a_lock_and_give_up_as_busy(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer waits for another thread's transaction on the store's lock (not SQLite's
    sleeping busy handler); past the wait it is refused as retryable, having written nothing."""
    import threading

    with Memory(home, embedder=HashEmbedder()) as m:
        store = m._store
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with store.transaction():
                holding.set()
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        assert holding.wait(30)
        monkeypatch.setattr(store, "_busy_timeout", 0.05)
        with pytest.raises(StorageBusy):
            m.add("refused while another write holds the store", user_id="u")
        monkeypatch.setattr(store, "_busy_timeout", 30.0)
        added: list[dict[str, object]] = []
        waiter = threading.Thread(
            target=lambda: added.append(m.add("queued behind the holder", user_id="u"))
        )
        waiter.start()
        release.set()  # the waiting add goes as soon as the holder commits
        holder.join(30)
        waiter.join(30)
        assert [r["memory"] for r in m.get_all(user_id="u")["results"]] == [
            "queued behind the holder"
        ]
        assert len(added) == 1


def test_closing_never_closes_a_connection_another_thread_is_using(home: Path) -> None:
    """A Memory closed while another thread (a job worker past its grace) is inside a query
    must not close that connection under it (CI crashed with SIGSEGV once): the thread finishes
    its query, and its next call finds the store closed."""
    import threading

    m = Memory(home, embedder=HashEmbedder())
    m.add("one memory", user_id="u")
    store = m._store
    holding, release = threading.Event(), threading.Event()
    seen: list[object] = []

    def worker() -> None:
        db = store._db()  # this thread's connection, as a query in progress holds it
        holding.set()
        release.wait(30)
        seen.append(db.execute("SELECT count(*) FROM memories").fetchone()[0])
        try:
            store.get_meta("embedding_model")
        except StorageError as exc:
            seen.append(exc.code)

    thread = threading.Thread(target=worker)
    thread.start()
    assert holding.wait(30)
    m.close()
    release.set()
    thread.join(30)
    assert seen == [1, "storage_error"]
