"""Key rotation: one user's data key (every row re-encrypted under a new key, in batches,
online), and the master key (every data key rewrapped, ``rotate_master_key``).

The new key becomes the scope's current generation first, so new memories and queued jobs use it
at once; rows then move over a batch (one transaction) at a time, each re-sealed field by field,
with its dedup hash, full-text tokens and entity hashes recomputed under the new key. History
events and the user's jobs (their request and result, in any state: queued, running, done,
dead) move in the same transactions. Searches read both generations meanwhile. When no row is
left under the old key, the old key is destroyed.

A job whose worker is running it while it moves: the worker opens the request as the job is
stored when the key it claimed is gone, and seals the result under the key the job holds when
it completes (``JobStore.complete`` refuses a result sealed for a key scope the job no longer
has; see ``core/jobs.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memvault.codec import binding
from memvault.core import entities, jobs
from memvault.core.engine import Engine
from memvault.core.reseal import reseal_legacy
from memvault.core.rights import require_user
from memvault.retrieval.text import normalize_for_dedup
from memvault.security.crypto import ScopeCipher
from memvault.security.keyring import KeyRing
from memvault.storage.base import WriteTx
from memvault.storage.rows import IndexTerms
from memvault.validation import Scope, check_id

__all__ = ["rotate_master_key", "rotate_user_key"]

_FIELDS = ("text", "metadata", "vector", "context")


def rotate_user_key(
    engine: Engine,
    user_id: str,
    batch: int = 200,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Move the user's rows and events to a new key; ``on_progress(memories, events)`` (moved so
    far) after each batch."""
    user_id = check_id("user_id", user_id)
    require_user(engine, user_id)  # rotating nobody would make a key for nobody
    reseal_legacy(engine)  # rows of an older version first: they name their key the old way
    store, keyring = engine.store, engine.keyring
    owner = engine.key_scope(Scope(user_id=user_id))
    # Under the owner's lock: a writer reads the generation under it too, so once this commits
    # no row of the old generation can be added any more. The new key is made under the same
    # lock, so an erase cannot slip in between and leave a key behind for a generation it
    # already destroyed.
    with store.transaction() as tx:
        engine.lock_owners(tx, [owner])
        old_scope, new_scope = keyring.start_generation(owner)
        old = keyring.cipher(old_scope.id)
        new = keyring.cipher_for(new_scope) if old is not None else None
    moved = rekeyed_events = rekeyed_jobs = 0
    if old is not None and new is not None:
        while True:
            with store.transaction() as tx:
                engine.lock_owners(tx, [owner])
                done = _move_rows(tx, engine, user_id, old, new, batch)
                events = _move_history(tx, engine.namespace, user_id, old, new, batch)
                queued = _move_jobs(tx, engine.namespace, user_id, old, new, batch)
                for scope_id in (old.scope_id, new.scope_id):
                    tx.bump_version(scope_id)
            engine.cache.drop(old.scope_id)
            engine.cache.drop(new.scope_id)
            moved += done
            rekeyed_events += events
            rekeyed_jobs += queued
            if on_progress is not None:
                on_progress(moved, rekeyed_events)
            if done == 0 and events == 0 and queued == 0:
                break
    keyring.finish_generation(owner)
    store.after_erase()
    return {
        "user_id": user_id,
        "namespace": engine.namespace,
        "memories_rekeyed": moved,
        "history_rekeyed": rekeyed_events,
        "jobs_rekeyed": rekeyed_jobs,
        "key_scope": new_scope.id,
    }


def _move_rows(
    tx: WriteTx,
    engine: Engine,
    user_id: str,
    old: ScopeCipher,
    new: ScopeCipher,
    batch: int,
) -> int:
    rows = tx.rows_under_key(engine.namespace, user_id, old.scope_id, batch)
    for row in rows:
        plain = {f: old.open(binding(row), f, getattr(row, f"{f}_box")) for f in _FIELDS}
        text, context = plain["text"].decode(), plain["context"].decode()
        row.scope_id = new.scope_id
        row.hash = new.text_hash(normalize_for_dedup(text))
        if tx.find_duplicate(row) not in (None, row.id):
            # The same text was added under the new key meanwhile: keep that one.
            tx.delete(row)
            continue
        boxes = {f: new.seal(binding(row), f, plain[f]) for f in _FIELDS}
        row.text_box, row.metadata_box = boxes["text"], boxes["metadata"]
        row.vector_box, row.context_box = boxes["vector"], boxes["context"]
        terms = IndexTerms(
            engine.codec.index_terms(new, text),
            engine.codec.index_terms(new, context),
            entities.reseal(old, new, row),  # sealed again, hashed again under the new key
        )
        tx.rewrite(row, terms)
    return len(rows)


def _move_history(
    tx: WriteTx,
    namespace: str,
    user_id: str,
    old: ScopeCipher,
    new: ScopeCipher,
    batch: int,
) -> int:
    found = tx.events_under_key(namespace, user_id, old.scope_id, batch)
    for event in found:
        bound = binding(event)  # the binding has no key id: the same for both keys
        event.old_box, event.new_box, event.meta_box = (
            None if box is None else new.seal(bound, field, old.open(bound, field, box))
            for field, box in (
                ("history_old", event.old_box),
                ("history_new", event.new_box),
                ("history_meta", event.meta_box),
            )
        )
        event.scope_id = new.scope_id
        tx.rewrite_event(event)
    return len(found)


def _move_jobs(
    tx: WriteTx,
    namespace: str,
    user_id: str,
    old: ScopeCipher,
    new: ScopeCipher,
    batch: int,
) -> int:
    found = tx.jobs_under_key(namespace, user_id, old.scope_id, batch)
    for job in found:
        jobs.reseal(job, old, new)
        tx.rewrite_job(job)
    return len(found)


def rotate_master_key(
    keyring: KeyRing, *, retire_old: bool = False, on_progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """``Memory.rotate_master_key``; ``on_progress(rewrapped so far)`` after each batch of data
    keys (``memvault keys rotate-master`` draws it)."""
    file_based = keyring.master.path is not None
    rewrapped = keyring.rotate_master(new_version=file_based, on_progress=on_progress)
    retired = []
    if retire_old:
        for version in sorted(keyring.master.keys):
            if version != keyring.master.current_version:
                keyring.retire_master(version)
                retired.append(version)
    return {
        "current_version": keyring.master.current_version,
        "rewrapped": rewrapped,
        "retired": retired,
        "versions_in_use": keyring.versions_in_use(),
    }
