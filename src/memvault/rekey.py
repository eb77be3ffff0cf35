"""Rotating one user's data key: every row re-encrypted under a new key, in batches, online.

The new key becomes the scope's current generation first, so new memories use it at once; rows
then move over a batch (one transaction) at a time, each re-sealed field by field, with its dedup
hash and full-text tokens recomputed under the new key. Searches read both generations meanwhile.
When no row is left under the old key, the old key is destroyed.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from memvault.codec import binding
from memvault.privacy import require_user
from memvault.retrieval.text import normalize_for_dedup
from memvault.security.crypto import ScopeCipher
from memvault.storage.sqlite import HistoryRow, MemoryRow
from memvault.validation import Scope, check_id

if TYPE_CHECKING:
    from memvault.memory import Memory

__all__ = ["rotate_user_key"]

_FIELDS = ("text", "metadata", "vector", "context")


def rotate_user_key(memory: Memory, user_id: str, batch: int = 200) -> dict[str, Any]:
    user_id = check_id("user_id", user_id)
    require_user(memory, user_id)  # rotating nobody would make a key for nobody
    memory.reseal_legacy()  # rows of an older version first: they name their key the old way
    store, keyring, codec = memory._store, memory._keyring, memory._codec
    owner = codec.key_scope(Scope(user_id=user_id))
    # Under the write lock: a writer reads the generation under it too, so once this commits no
    # row of the old generation can be added any more.
    # The new key is made under the same lock, so an erase cannot slip in between and leave a
    # key behind for a generation it already destroyed.
    with store.transaction():
        old_scope, new_scope = keyring.start_generation(owner)
        old = keyring.cipher(old_scope.id)
        new = keyring.cipher_for(new_scope) if old is not None else None
    moved = rekeyed_events = 0
    if old is not None and new is not None:
        while True:
            with store.transaction() as db:
                done = _move_rows(db, memory, user_id, old, new, batch)
                events = _move_history(db, memory.namespace, user_id, old, new, batch)
                for scope_id in (old.scope_id, new.scope_id):
                    store.bump_version(db, scope_id)
            memory._cache.drop(old.scope_id)
            memory._cache.drop(new.scope_id)
            moved += done
            rekeyed_events += events
            if done == 0 and events == 0:
                break
    keyring.finish_generation(owner)
    store.checkpoint()
    return {
        "user_id": user_id,
        "namespace": memory.namespace,
        "memories_rekeyed": moved,
        "history_rekeyed": rekeyed_events,
        "key_scope": new_scope.id,
    }


def _move_rows(
    db: sqlite3.Connection,
    memory: Memory,
    user_id: str,
    old: ScopeCipher,
    new: ScopeCipher,
    batch: int,
) -> int:
    store, codec = memory._store, memory._codec
    found = db.execute(
        "SELECT rowid, id, namespace, scope_id, user_id, agent_id, run_id, actor_id, role,"
        " memory_type, hash, text_box, metadata_box, vector_box, context_box, created_at,"
        " updated_at, expires_at, importance, access_count, last_accessed_at, seal_version"
        " FROM memories WHERE namespace = ? AND user_id = ? AND scope_id = ? LIMIT ?",
        (memory.namespace, user_id, old.scope_id, batch),
    ).fetchall()
    rows = [MemoryRow(**dict(record)) for record in found]  # the store's rows are sqlite3.Row
    for row in rows:
        plain = {f: old.open(binding(row), f, getattr(row, f"{f}_box")) for f in _FIELDS}
        text, context = plain["text"].decode(), plain["context"].decode()
        row.scope_id = new.scope_id
        row.hash = new.text_hash(normalize_for_dedup(text))
        if store.find_duplicate(db, row) not in (None, row.id):
            # The same text was added under the new key meanwhile: keep that one.
            assert row.rowid is not None
            store.delete(db, row.rowid)
            continue
        boxes = {f: new.seal(binding(row), f, plain[f]) for f in _FIELDS}
        db.execute(
            "UPDATE memories SET scope_id = ?, hash = ?, text_box = ?, metadata_box = ?,"
            " vector_box = ?, context_box = ? WHERE rowid = ?",
            (
                row.scope_id,
                row.hash,
                boxes["text"],
                boxes["metadata"],
                boxes["vector"],
                boxes["context"],
                row.rowid,
            ),
        )
        db.execute("DELETE FROM memories_fts WHERE rowid = ?", (row.rowid,))
        db.execute(
            "INSERT INTO memories_fts (rowid, body, context) VALUES (?, ?, ?)",
            (row.rowid, codec.index_terms(new, text), codec.index_terms(new, context)),
        )
    return len(rows)


def _move_history(
    db: sqlite3.Connection,
    namespace: str,
    user_id: str,
    old: ScopeCipher,
    new: ScopeCipher,
    batch: int,
) -> int:
    found = db.execute(
        "SELECT id, memory_id, namespace, scope_id, user_id, agent_id, run_id, event, old_box,"
        " new_box, actor_id, role, created_at, seal_version FROM history WHERE namespace = ?"
        " AND user_id = ? AND scope_id = ? LIMIT ?",
        (namespace, user_id, old.scope_id, batch),
    ).fetchall()
    for record in found:
        event = HistoryRow(**dict(record))
        bound = binding(event)  # the binding has no key id: the same for both keys
        sealed = [
            None if box is None else new.seal(bound, field, old.open(bound, field, box))
            for field, box in (("history_old", event.old_box), ("history_new", event.new_box))
        ]
        db.execute(
            "UPDATE history SET scope_id = ?, old_box = ?, new_box = ? WHERE id = ?",
            (new.scope_id, sealed[0], sealed[1], event.id),
        )
    return len(found)
