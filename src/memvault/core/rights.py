"""A user's rights over their data: erase (crypto-shredding), export, and expiry purging.

Erase destroys the user's data key *first*: from that moment every copy of their rows (database
backups, WAL files, replicas) is unreadable, whatever happens next. The rows, index entries,
history and queued jobs are then deleted in one transaction, with ``secure_delete`` overwriting
the freed pages, and both WAL files are checkpointed and truncated.

The key store and the data are two databases, so no commit covers both steps: a process killed
between them leaves rows sealed under a destroyed key. ``finish_cut_erasures`` deletes such rows
(a read that meets one calls it): the erase was never answered, and it ends as if it had been.
Only rows of a *past* generation of their owner's key qualify, a generation an erase or the end of
a rotation moved past; a key missing for any other reason (a tampered ``scope_id``, a key store
from another backup) stays an integrity error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from memvault.clock import now_iso
from memvault.codec import KeyMissing, legacy_keys
from memvault.core import changes, entities, webhooks
from memvault.core.engine import Engine
from memvault.errors import NotFound
from memvault.security.keyscope import KeyScope
from memvault.validation import Scope, check_id

__all__ = [
    "delete_scopes",
    "erase_user",
    "export_user",
    "finish_cut_erasures",
    "keyless_scopes",
    "purge_expired",
    "require_user",
]

EXPORT_FORMAT = "memvault-export/1"


def require_user(engine: Engine, user_id: str) -> None:
    """``NotFound`` for a user this namespace never had: no memory, no history, no data key."""
    owner = engine.key_scope(Scope(user_id=user_id))
    memories, events = engine.store.user_rows(engine.namespace, user_id)
    # Only asks whether a key exists (the old name may be another owner's: nothing is done
    # with it; erase destroys old names only as the user's own rows name them).
    keys = [name for k in engine.keyring.live(owner) for name in (k.id, k.legacy_id)]
    if not memories and not events and not any(engine.keyring.has(name) for name in keys):
        raise NotFound(f"no user {user_id} in namespace {engine.namespace}")


def erase_user(engine: Engine, user_id: str) -> dict[str, Any]:
    user_id = check_id("user_id", user_id)
    store, keyring = engine.store, engine.keyring
    owner = engine.key_scope(Scope(user_id=user_id))
    require_user(engine, user_id)
    # The owner's lock first, so no add for this user can commit between the two steps: a
    # writer reads the key generation under the same lock, and sees the new one once this
    # commits.
    with store.transaction() as tx:
        engine.lock_owners(tx, [owner])
        # The pre-v2 names of the user's keys, as the user's own legacy rows name them (a name
        # computed from the key scope may be another user's key: ``alice#g2`` vs ``alice``),
        # less any that another owner's legacy rows name too (one key shared by the old format).
        legacy = legacy_keys(tx, keyring, owner, shared=tx)
        scopes = [k.id for k in keyring.live(owner)] + list(legacy.values())
        keyring.destroy_scope(owner)  # every generation, and on to a new, never used one
        keyring.destroy_legacy(list(legacy.values()))
        deleted, deleted_events = tx.delete_user(engine.namespace, user_id)
        # Queued jobs too: sealed with the key just destroyed, and deleted with the rest.
        jobs_deleted = tx.delete_jobs(engine.namespace, user_id)
        # The user.erased event, committed with the erase (and no text of theirs left waiting).
        webhooks.record_erase(engine, tx, user_id)
        # Versions only grow: a cache elsewhere of these scopes sees that it is stale.
        tx.bump_versions(sorted(set(scopes)))
    store.after_erase()
    for scope_id in scopes:
        engine.cache.drop(scope_id)
    store.forget_decrypted()
    return {
        "user_id": user_id,
        "namespace": engine.namespace,
        "memories_deleted": deleted,
        "history_deleted": deleted_events,
        "jobs_deleted": jobs_deleted,
        "data_key_destroyed": True,
    }


def finish_cut_erasures(engine: Engine) -> int:
    """Delete the rows, history and jobs sealed under keys an erase destroyed before it was cut
    off (see the module docstring); returns how many key scopes it cleared."""
    _, missing = keyless_scopes(engine)
    shredded = [scope_id for scope_id in missing if _past_generation(engine, scope_id)]
    delete_scopes(engine, shredded)
    return len(shredded)


def keyless_scopes(engine: Engine) -> tuple[list[str], list[str]]:
    """Every key scope id that rows (memories, history, jobs) are sealed under, and those of
    them whose data key the key store no longer holds; both sorted."""
    in_use = sorted(engine.store.scope_ids_in_use())
    return in_use, sorted(set(in_use) - engine.keyring.store.present(in_use))


def delete_scopes(engine: Engine, scope_ids: list[str]) -> dict[str, int]:
    """Delete every row, history event and job sealed under ``scope_ids`` in one transaction,
    bump their versions and drop what this process holds of them; the counts deleted."""
    counts = {"memories": 0, "history_events": 0, "jobs": 0}
    if not scope_ids:
        return counts
    store = engine.store
    with store.transaction() as tx:
        for scope_id in scope_ids:
            memories, events, jobs = tx.delete_scope_rows(scope_id)
            counts["memories"] += memories
            counts["history_events"] += events
            counts["jobs"] += jobs
        tx.bump_versions(scope_ids)  # versions only grow: no cache keeps the old rows
    store.after_erase()
    for scope_id in scope_ids:
        engine.cache.drop(scope_id)
    store.forget_decrypted()
    return counts


def _past_generation(engine: Engine, scope_id: str) -> bool:
    """Whether ``scope_id`` names a generation older than its owner's current one."""
    try:
        namespace, kind, owner, generation = json.loads(scope_id)
        key_scope = KeyScope(namespace, kind, owner, generation)
    except (ValueError, TypeError):  # a pre-v2 name, or not a key scope id at all
        return False
    if not isinstance(generation, int) or key_scope.id != scope_id:
        return False
    return engine.keyring.current(key_scope).generation > generation


def export_user(engine: Engine, user_id: str) -> Iterator[dict[str, Any]]:
    """JSON lines: a header, then each memory with its history, then history of deleted ones.

    An unknown user raises ``NotFound`` here, before the first line, so a server can still
    answer 404 instead of an empty stream.
    """
    user_id = check_id("user_id", user_id)
    try:
        history = _histories(engine, user_id)
    except KeyMissing:  # an erase cut off by a crash: end it, then read
        if not finish_cut_erasures(engine):
            raise
        history = _histories(engine, user_id)
    memories, events = engine.store.user_rows(engine.namespace, user_id)
    if not memories and not events:
        raise NotFound(f"no user {user_id} in namespace {engine.namespace}")
    return _export_lines(engine, user_id, history)


def _histories(engine: Engine, user_id: str) -> dict[str, list[dict[str, Any]]]:
    history: dict[str, list[dict[str, Any]]] = {}
    for event in engine.store.history_of_user(engine.namespace, user_id):
        history.setdefault(event.memory_id, []).append(engine.codec.public_history(event))
    return history


def _export_lines(
    engine: Engine, user_id: str, history: dict[str, list[dict[str, Any]]]
) -> Iterator[dict[str, Any]]:
    store, codec = engine.store, engine.codec
    yield {
        "type": "export",
        "format": EXPORT_FORMAT,
        "namespace": engine.namespace,
        "user_id": user_id,
        "exported_at": now_iso(),
    }
    offset, page = 0, 500
    while True:
        rows = store.list_rows(
            engine.namespace,
            Scope(user_id=user_id),
            None,
            now=None,
            limit=page,
            offset=offset,
            newest_first=False,
        )
        for row in rows:
            item = codec.public(row)
            found = entities.open_entities(codec.reader(row.scope_id, row.id), row)
            item["entities"] = [entity.name for entity in found]
            yield {"type": "memory", **item, "history": history.pop(row.id, [])}
        if len(rows) < page:
            break
        offset += page
    for memory_id, events_of_deleted in history.items():
        yield {"type": "history", "memory_id": memory_id, "events": events_of_deleted}


def purge_expired(
    engine: Engine, batch: int = 500, on_progress: Callable[[int], None] | None = None
) -> int:
    """Delete expired memories of every namespace, each with a DELETE event; returns how many,
    and tells ``on_progress(purged so far)`` after each batch (``memvault gc`` draws it)."""

    def delete(namespace: str, memory_id: str) -> bool:
        """Whether the memory was still there (another process may have purged it first)."""
        done = changes.apply(engine.view(namespace), [changes.Delete(memory_id, missing_ok=True)])
        return bool(done[0]["event"] == "DELETE")

    total = 0
    while True:
        rows = engine.store.expired(now_iso(), batch)
        if not rows:
            return total
        for row in rows:
            total += delete(row.namespace, row.id)
        if on_progress is not None:
            on_progress(total)
