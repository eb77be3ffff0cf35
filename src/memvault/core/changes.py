"""Changes planned first, then applied as one unit: one transaction, one version bump per key
scope, the in-process indexes patched once it committed.

A plan is a list of ``Add``, ``Update`` and ``Delete`` (an add batch, an update, a delete of a
scope, and later one LLM reconciliation). ``apply`` locks the namespace (shared) and every key
owner the plan touches in one sorted order, reads the current key generation under those locks,
writes rows, index entries and history, and bumps each touched scope's version; any error rolls
the whole plan back. When the namespace has a webhook, each event goes into its outbox in the same
transaction (``core/webhooks.py``). It returns one result per change, in order.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from memvault.clock import now_iso, to_epoch, uuid7
from memvault.codec import binding
from memvault.core import entities
from memvault.core.engine import Engine
from memvault.core.reseal import reseal_row
from memvault.core.webhooks import Outbox
from memvault.errors import InvalidInput, NotFound
from memvault.retrieval.text import normalize_for_dedup
from memvault.retrieval.vector_index import VectorEntry
from memvault.security.crypto import ScopeCipher
from memvault.security.keyscope import KeyScope
from memvault.security.poisoning import flag_metadata, reflag_metadata
from memvault.storage.base import WriteTx
from memvault.storage.rows import HistoryRow, IndexTerms, MemoryRow
from memvault.validation import Message, Scope

__all__ = ["Add", "Change", "Delete", "JobGone", "PastEvent", "Update", "apply"]


@dataclass(frozen=True, slots=True)
class PastEvent:
    """A history event an import brings from its source, with the source's time (``clock.iso``
    form): written instead of the ``ADD`` event a new memory gets. ``meta``: sealed beside it
    (shown as the event's ``provenance``), e.g. a state change the event stands for."""

    event: str  # ADD, UPDATE or DELETE
    old: str | None
    new: str | None
    created_at: str
    meta: dict[str, Any] | None = None


@dataclass(slots=True)
class Add:
    """A new memory, validated, with its vector (nothing is written before all are valid)."""

    message: Message
    scope: Scope
    metadata: dict[str, Any]
    memory_type: str
    expires_at: str | None
    importance: float | None
    actor_id: str | None
    redactions: list[str]
    vector: npt.NDArray[np.float32] | None = None
    provenance: dict[str, Any] | None = None  # an inferred change's origin, sealed in history
    # When the memory was observed (an import keeps its source's times; mem0's ``timestamp``):
    # None means now. ISO 8601 in ``clock.iso``'s form.
    created_at: str | None = None
    updated_at: str | None = None
    # An import's: the memory's id (derived from the source's, so a re-run finds it), its
    # history (``past``, instead of one ADD event now), and ``live=False`` for a memory the
    # source had deleted (its history alone is written, no memory). A duplicate of a stored
    # memory (same text and scope) writes no NONE event when ``past`` is set.
    memory_id: str | None = None
    past: tuple[PastEvent, ...] | None = None
    live: bool = True
    # Entity names the LLM gave for an inferred memory, added to those found by rules.
    entities: tuple[str, ...] = ()


@dataclass(slots=True)
class Update:
    """New text (with its vector) and/or new metadata for an existing memory."""

    memory_id: str
    text: str | None = None
    metadata: dict[str, Any] | None = None
    vector: npt.NDArray[np.float32] | None = None
    provenance: dict[str, Any] | None = None
    # Check the resulting text for instructions (``security.poisoning``) and set the metadata's
    # flag to match, in the transaction: new metadata as given plus the flag; with the text
    # alone, the stored metadata kept with its flag recomputed.
    flag: bool = False


@dataclass(slots=True)
class Delete:
    """``missing_ok``: a memory deleted meanwhile by someone else is skipped (event ``NONE``)."""

    memory_id: str
    missing_ok: bool = False
    provenance: dict[str, Any] | None = None


Change = Add | Update | Delete


@dataclass
class _Applied:
    """What one transaction did to each key scope: patched into the caches after commit."""

    added: dict[str, list[VectorEntry]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)
    versions: dict[str, tuple[int, int]] = field(default_factory=dict)


class JobGone(NotFound):
    """The queued job a plan came from was deleted (its user erased) while the plan was made:
    nothing of it is written (same code on the wire: ``not_found``)."""


def apply(
    engine: Engine, changes: list[Change], *, live_job: str | None = None
) -> list[dict[str, Any]]:
    """Apply every change in one transaction; results in the changes' order.

    ``live_job``: the queued job the plan came from. It is looked up under the owners' locks,
    which erase also takes (and erase deletes the user's jobs): a plan whose job is gone was
    made from an erased user's messages and is refused (``JobGone``), so an erase that
    committed while the LLM was thinking cannot be undone by the job's result."""
    existing = _rows_to_change(engine, changes)
    owners = [engine.key_scope(c.scope) for c in changes if isinstance(c, Add)]
    owners += [engine.key_scope(Scope(r.user_id, r.agent_id, r.run_id)) for r in existing]
    done = _Applied()
    results: list[dict[str, Any]] = []
    with engine.store.transaction() as tx:
        engine.lock_owners(tx, owners)
        if live_job is not None and engine.store.get_job(engine.namespace, live_job) is None:
            raise JobGone(f"job {live_job} no longer exists (its user was erased): not applied")
        writer = _Writer(engine, tx, done, Outbox.open(engine, tx))
        if not existing:  # adds only (a batch): one dedup look-up for all of them
            writer.prefetch_duplicates([c for c in changes if isinstance(c, Add)])
        for change in changes:
            if isinstance(change, Add):
                results.append(writer.add(change))
                continue
            writer.flush()  # an update or delete reads rows: the buffered adds go in first
            if isinstance(change, Update):
                results.append(writer.update(change))
            else:
                results.append(writer.delete(change))
        writer.flush()
        writer.outbox.flush(tx)
        done.versions.update(tx.bump_versions(sorted(done.touched)))
    for scope_id, (before, after) in done.versions.items():
        engine.cache.apply(
            scope_id,
            before,
            after,
            added=done.added.get(scope_id, ()),
            removed=done.removed.get(scope_id, ()),
        )
    return results


def _rows_to_change(engine: Engine, changes: list[Change]) -> list[MemoryRow]:
    """The rows updates and deletes name, read before the transaction only to learn their key
    owners (owner columns never change); the transaction reads them again under the locks."""
    ids = [c.memory_id for c in changes if not isinstance(c, Add)]
    found = engine.store.get_many(engine.namespace, ids) if ids else {}
    for change in changes:
        skippable = isinstance(change, Delete) and change.missing_ok
        if isinstance(change, Update | Delete) and change.memory_id not in found and not skippable:
            raise NotFound(f"no memory {change.memory_id} in namespace {engine.namespace}")
    return list(found.values())


def vector_entry(row: MemoryRow, vector: npt.NDArray[np.float32], terms: IndexTerms) -> VectorEntry:
    """What the scope's in-memory index holds of a row just written."""
    return VectorEntry(
        row.id,
        row.user_id,
        row.agent_id,
        row.run_id,
        to_epoch(row.expires_at),
        vector,
        terms.body,
        terms.context,
    )


class _Writer:
    """The changes of one plan inside its transaction."""

    def __init__(self, engine: Engine, tx: WriteTx, done: _Applied, outbox: Outbox) -> None:
        self.engine = engine
        self.tx = tx
        self.done = done
        self.outbox = outbox
        self.keys: dict[Scope, tuple[KeyScope, ScopeCipher]] = {}
        self.recent: dict[Scope, deque[str]] = {}
        self.seen: dict[tuple[Scope, str], str] = {}
        # New rows and history events wait here and go to the store together (``flush``): on
        # Postgres one pipelined round trip instead of two per memory.
        self.new_rows: list[tuple[MemoryRow, IndexTerms]] = []
        self.new_events: list[HistoryRow] = []
        self.known: dict[tuple[str | None, str | None, str | None, str], str] = {}
        self.prefetched = False
        self.hashes: dict[int, str] = {}  # by id() of an Add of this plan (alive as long)

    def prefetch_duplicates(self, adds: list[Add]) -> None:
        """Read what every add needs at once (Postgres: a query each, not one per memory or
        scope): the scopes' key generations, their last texts (the context window) and every
        add's dedup key."""
        scopes = list(dict.fromkeys(change.scope for change in adds))
        missing = [scope for scope in scopes if scope not in self.keys]
        for scope, found in zip(missing, self.engine.writer_keys(missing), strict=True):
            self.keys[scope] = found
        size = self.engine.settings.context_window
        if size:
            unread = [scope for scope in scopes if scope not in self.recent]
            recent = self.tx.recent_rows_many(self.engine.namespace, unread, size)
            for scope, rows in recent.items():
                window = self.recent[scope] = deque(maxlen=size)
                window.extend(self.engine.codec.open_text(row) for row in reversed(rows))
        keys = []
        for change in adds:
            text_hash = self._text_hash(change, self._key(change.scope)[1])
            scope = change.scope
            keys.append((scope.user_id, scope.agent_id, scope.run_id, text_hash))
        self.known = self.tx.find_duplicates(self.engine.namespace, keys)
        self.prefetched = True

    def _text_hash(self, change: Add, cipher: ScopeCipher) -> str:
        """An add's dedup hash, computed once (the look-up ahead and the new row share it)."""
        found = self.hashes.get(id(change))
        if found is None:
            found = self.hashes[id(change)] = cipher.text_hash(
                normalize_for_dedup(change.message.content)
            )
        return found

    def _key(self, scope: Scope) -> tuple[KeyScope, ScopeCipher]:
        # Read once per scope and plan, under the owner's lock that erase and rotation also
        # take: never a key of an erased generation.
        if scope not in self.keys:
            self.keys[scope] = self.engine.writer_key(scope)
        return self.keys[scope]

    def _duplicate(self, change: Add, row: MemoryRow) -> str | None:
        scope = change.scope
        if (scope, row.hash) in self.seen:
            return self.seen[(scope, row.hash)]
        if self.prefetched:
            return self.known.get((scope.user_id, scope.agent_id, scope.run_id, row.hash))
        return self.tx.find_duplicate(row)

    def flush(self) -> None:
        self.tx.insert_many(self.new_rows)
        self.tx.add_history_many(self.new_events)
        self.new_rows.clear()
        self.new_events.clear()

    def _row(self, memory_id: str, *, missing_ok: bool = False) -> MemoryRow | None:
        """The row to change, read under the locks, in the current seal format."""
        row = self.tx.get(self.engine.namespace, memory_id)
        if row is None:  # deleted by someone else since the plan was made
            if missing_ok:
                return None
            raise NotFound(f"no memory {memory_id} in namespace {self.engine.namespace}")
        return reseal_row(self.tx, self.engine, row)

    def add(self, change: Add) -> dict[str, Any]:
        engine = self.engine
        assert change.vector is not None
        key_scope, cipher = self._key(change.scope)
        text = change.message.content
        row = self._new_row(change, key_scope.id, cipher)
        if not change.live:  # a memory the source had deleted: its history alone
            self.new_events.extend(self._past(row, change, cipher))
            return _result(row.id, text, "DELETE", change.redactions)
        duplicate = self._duplicate(change, row)
        if duplicate is not None:
            if change.past is None:
                self.new_events.append(
                    engine.event(row, duplicate, "NONE", None, None, cipher, change.provenance)
                )
            return _result(duplicate, text, "NONE", change.redactions)
        window = self.recent.get(change.scope)
        if window is None:
            window = self.recent[change.scope] = self._recent_texts(change.scope)
        context = " ".join(window)
        row.context_box = cipher.seal(binding(row), "context", context.encode())
        found = entities.with_extra(text, change.entities)
        row.entities_box, entity_hashes = entities.seal(cipher, row, found)
        terms = IndexTerms(
            engine.codec.index_terms(cipher, text),
            engine.codec.index_terms(cipher, context),
            entity_hashes,
        )
        self.new_rows.append((row, terms))
        if change.past is None:
            self.new_events.append(
                engine.event(row, row.id, "ADD", None, text, cipher, change.provenance)
            )
        else:
            self.new_events.extend(self._past(row, change, cipher))
        window.append(text)
        self.outbox.record("memory.added", _owners(row), memory_id=row.id, text=text, cipher=cipher)
        self.seen[(change.scope, row.hash)] = row.id
        self.done.added.setdefault(row.scope_id, []).append(vector_entry(row, change.vector, terms))
        self.done.touched.add(row.scope_id)
        return _result(row.id, text, "ADD", change.redactions)

    def _new_row(self, change: Add, scope_id: str, cipher: ScopeCipher) -> MemoryRow:
        engine = self.engine
        assert change.vector is not None
        text = change.message.content
        now = now_iso()
        row = MemoryRow(
            rowid=None,
            id=change.memory_id or uuid7(),
            namespace=engine.namespace,
            scope_id=scope_id,
            user_id=change.scope.user_id,
            agent_id=change.scope.agent_id,
            run_id=change.scope.run_id,
            actor_id=change.actor_id,
            role=change.message.role,
            memory_type=change.memory_type,
            hash=self._text_hash(change, cipher),
            text_box=b"",
            metadata_box=b"",
            vector_box=b"",
            context_box=b"",
            created_at=change.created_at or now,
            updated_at=change.updated_at or change.created_at or now,
            expires_at=change.expires_at,
            importance=change.importance,
        )
        bound = binding(row)
        row.text_box = cipher.seal(bound, "text", text.encode())
        row.metadata_box = engine.codec.seal_metadata(cipher, bound, change.metadata)
        row.vector_box = engine.codec.seal_vector(cipher, bound, change.vector)
        return row

    def _past(self, row: MemoryRow, change: Add, cipher: ScopeCipher) -> list[HistoryRow]:
        """An imported memory's history events, sealed with its key, at their own times."""
        events = []
        for past in change.past or ():
            event = self.engine.event(
                row, row.id, past.event, past.old, past.new, cipher, past.meta
            )
            event.created_at = past.created_at
            events.append(event)
        return events

    def _recent_texts(self, scope: Scope) -> deque[str]:
        """The texts added last to exactly this scope: the context of the next memory."""
        size = self.engine.settings.context_window
        window: deque[str] = deque(maxlen=size)
        if size:
            rows = self.tx.recent_rows(self.engine.namespace, scope, size)
            window.extend(self.engine.codec.open_text(row) for row in reversed(rows))
        return window

    def update(self, change: Update) -> dict[str, Any]:
        engine, tx = self.engine, self.tx
        row = self._row(change.memory_id)
        assert row is not None
        cipher = engine.codec.reader(row.scope_id, row.id)
        bound = binding(row)
        old_text = engine.codec.open_text(row)
        terms = None
        if change.text is not None and change.vector is not None:
            row.hash = cipher.text_hash(normalize_for_dedup(change.text))
            other = tx.find_duplicate(row)
            if other is not None and other != row.id:
                raise InvalidInput(f"memory {other} of the same scope already holds this text")
            row.text_box = cipher.seal(bound, "text", change.text.encode())
            row.vector_box = engine.codec.seal_vector(cipher, bound, change.vector)
            found = entities.with_extra(change.text)
            row.entities_box, entity_hashes = entities.seal(cipher, row, found)
            terms = IndexTerms(
                engine.codec.index_terms(cipher, change.text),
                engine.codec.index_terms(cipher, engine.codec.open_context(row)),
                entity_hashes,
            )
        new_text = change.text if change.text is not None else old_text
        metadata = change.metadata
        if change.flag:
            if metadata is not None:
                metadata = flag_metadata(metadata, new_text)
            elif change.text is not None:
                stored = json.loads(engine.codec.open_field(row, "metadata", row.metadata_box))
                metadata = reflag_metadata(stored, new_text)
        if metadata is not None:
            row.metadata_box = engine.codec.seal_metadata(cipher, bound, metadata)
        row.updated_at = now_iso()
        tx.rewrite(row, terms)
        tx.add_history(
            engine.event(row, row.id, "UPDATE", old_text, new_text, cipher, change.provenance)
        )
        self.outbox.record(
            "memory.updated", _owners(row), memory_id=row.id, text=new_text, cipher=cipher
        )
        if change.vector is not None and terms is not None:
            self.done.added.setdefault(row.scope_id, []).append(
                vector_entry(row, change.vector, terms)
            )
        self.done.touched.add(row.scope_id)
        result = engine.codec.public(row)
        result["event"] = "UPDATE"
        result["previous_memory"] = old_text
        return result

    def delete(self, change: Delete) -> dict[str, Any]:
        engine = self.engine
        row = self._row(change.memory_id, missing_ok=change.missing_ok)
        if row is None:
            return {"id": change.memory_id, "memory": None, "event": "NONE"}
        cipher = engine.codec.reader(row.scope_id, row.id)
        old = engine.codec.open_text(row)
        self.tx.delete(row)
        self.tx.add_history(
            engine.event(row, row.id, "DELETE", old, None, cipher, change.provenance)
        )
        self.outbox.record("memory.deleted", _owners(row), memory_id=row.id)
        self.done.removed.setdefault(row.scope_id, []).append(row.id)
        self.done.touched.add(row.scope_id)
        return {"id": row.id, "memory": old, "event": "DELETE"}


def _owners(row: MemoryRow) -> tuple[str | None, str | None, str | None]:
    return row.user_id, row.agent_id, row.run_id


def _result(memory_id: str, text: str, event: str, redactions: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {"id": memory_id, "memory": text, "event": event}
    if redactions:
        result["redactions"] = redactions
    return result
