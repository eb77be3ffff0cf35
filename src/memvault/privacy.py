"""A user's rights over their data: erase (crypto-shredding), export, and expiry purging.

Erase destroys the user's data key *first*: from that moment every copy of their rows (database
backups, WAL files, replicas) is unreadable, whatever happens next. The rows, index entries and
history are then deleted in one transaction, with ``secure_delete`` overwriting the freed pages,
and both WAL files are checkpointed and truncated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from memvault.clock import now_iso
from memvault.codec import OnConnection, legacy_keys
from memvault.errors import NotFound
from memvault.validation import Scope, check_id

if TYPE_CHECKING:
    from memvault.memory import Memory

__all__ = ["erase_user", "export_user", "purge_expired", "require_user"]

EXPORT_FORMAT = "memvault-export/1"


def require_user(memory: Memory, user_id: str) -> None:
    """``NotFound`` for a user this namespace never had: no memory, no history, no data key."""
    owner = memory._codec.key_scope(Scope(user_id=user_id))
    memories, events = memory._store.user_rows(memory.namespace, user_id)
    # Only asks whether a key exists (the old name may be another owner's: nothing is done
    # with it; erase destroys old names only as the user's own rows name them).
    keys = [name for k in memory._keyring.live(owner) for name in (k.id, k.legacy_id)]
    if not memories and not events and not any(memory._keyring.has(name) for name in keys):
        raise NotFound(f"no user {user_id} in namespace {memory.namespace}")


def erase_user(memory: Memory, user_id: str) -> dict[str, Any]:
    user_id = check_id("user_id", user_id)
    store, keyring, codec = memory._store, memory._keyring, memory._codec
    owner = codec.key_scope(Scope(user_id=user_id))
    require_user(memory, user_id)
    # The write lock first, so no add for this user can commit between the two steps: a writer
    # reads the key generation under the same lock, and sees the new one once this commits.
    with store.transaction() as db:
        # The pre-v2 names of the user's keys, as the user's own legacy rows name them (a name
        # computed from the key scope may be another user's key: ``alice#g2`` vs ``alice``),
        # less any that another owner's legacy rows name too (one key shared by the old format).
        legacy = legacy_keys(OnConnection(db), keyring, owner, exclusive=True)
        scopes = [k.id for k in keyring.live(owner)] + list(legacy.values())
        keyring.destroy_scope(owner)  # every generation, and on to a new, never used one
        keyring.destroy_legacy(list(legacy.values()))
        deleted, deleted_events = store.delete_user(db, memory.namespace, user_id)
        for scope_id in scopes:
            # Versions only grow: a cache elsewhere of these scopes sees that it is stale.
            store.bump_version(db, scope_id)
    store.checkpoint()
    for scope_id in scopes:
        memory._cache.drop(scope_id)
    store.forget_decrypted()
    return {
        "user_id": user_id,
        "namespace": memory.namespace,
        "memories_deleted": deleted,
        "history_deleted": deleted_events,
        "data_key_destroyed": True,
    }


def export_user(memory: Memory, user_id: str) -> Iterator[dict[str, Any]]:
    """JSON lines: a header, then each memory with its history, then history of deleted ones.

    An unknown user raises ``NotFound`` here, before the first line, so a server can still
    answer 404 instead of an empty stream.
    """
    user_id = check_id("user_id", user_id)
    memories, events = memory._store.user_rows(memory.namespace, user_id)
    if not memories and not events:
        raise NotFound(f"no user {user_id} in namespace {memory.namespace}")
    return _export_lines(memory, user_id)


def _export_lines(memory: Memory, user_id: str) -> Iterator[dict[str, Any]]:
    store, codec = memory._store, memory._codec
    history: dict[str, list[dict[str, Any]]] = {}
    for event in store.history_of_user(memory.namespace, user_id):
        history.setdefault(event.memory_id, []).append(codec.public_history(event))
    yield {
        "type": "export",
        "format": EXPORT_FORMAT,
        "namespace": memory.namespace,
        "user_id": user_id,
        "exported_at": now_iso(),
    }
    offset, page = 0, 500
    while True:
        rows = store.list_rows(
            memory.namespace,
            Scope(user_id=user_id),
            None,
            now=None,
            limit=page,
            offset=offset,
            newest_first=False,
        )
        for row in rows:
            item = codec.public(row)
            yield {"type": "memory", **item, "history": history.pop(row.id, [])}
        if len(rows) < page:
            break
        offset += page
    for memory_id, events_of_deleted in history.items():
        yield {"type": "history", "memory_id": memory_id, "events": events_of_deleted}


def purge_expired(memory: Memory, batch: int = 500) -> int:
    """Delete expired memories of every namespace (each with a DELETE event); returns how many."""
    total = 0
    while True:
        rows = memory._store.expired(now_iso(), batch)
        if not rows:
            return total
        for row in rows:
            try:
                memory.namespaced(row.namespace).delete(row.id)
            except NotFound:  # deleted by someone else meanwhile
                continue
            total += 1
