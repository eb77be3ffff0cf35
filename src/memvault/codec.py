"""Sealing memories into rows and opening rows into the dicts the API returns.

Every secret field (text, metadata, vector, context, history texts) goes through a
``ScopeCipher`` here and nowhere else, with the row's namespace, owner columns, id and the field
name bound as associated data (``crypto.Binding``). Writers get their key with ``writer`` (the
current generation, read fresh inside the write transaction); readers open a row with the key its
``scope_id`` names, never creating one, and with the associated-data format its ``seal_version``
says.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from memvault.clock import to_epoch
from memvault.embedding.base import Vectors
from memvault.errors import IntegrityError
from memvault.retrieval.text import words
from memvault.retrieval.vector_index import VectorEntry
from memvault.security.crypto import Binding, ScopeCipher
from memvault.security.keyring import KeyRing
from memvault.security.keyscope import KeyScope
from memvault.storage.rows import HistoryRow, MemoryRow, VectorRow
from memvault.validation import Scope

__all__ = ["Codec", "KeyMissing", "Plain", "binding"]


@dataclass(slots=True)
class Plain:
    """A memory's secret fields in the clear."""

    text: str
    metadata: dict[str, Any]


def binding(row: MemoryRow | HistoryRow) -> Binding:
    """What a row's sealed fields are bound to: its namespace, owner columns and id."""
    return Binding(row.namespace, row.user_id, row.agent_id, row.run_id, row.id)


class LegacyNames(Protocol):
    """Where legacy key names are read: the store, or a write transaction (``WriteTx``)."""

    def legacy_key_names(self, namespace: str, kind: str, owner: str) -> set[str]: ...


class SharedNames(LegacyNames, Protocol):
    def legacy_name_shared(self, name: str, namespace: str, kind: str, owner: str) -> bool: ...


def legacy_keys(
    reader: LegacyNames, keyring: KeyRing, owner: KeyScope, *, shared: SharedNames | None = None
) -> dict[KeyScope, str]:
    """The pre-v2 key names that ``owner``'s own legacy rows (memories and history, seal
    version 1) name, by the live generation each one is.

    Driven by rows, as ``reseal`` reads them: a name counts only when a row *of this owner*
    (its namespace and owner columns) names it and it is the old name of one of the owner's live
    generations. Nothing is looked up by a name computed from a key scope alone, which another
    owner can spell (user ``alice#g2`` vs generation 2 of ``alice``). ``shared`` (a write
    transaction, for erase): leave out a name that legacy rows of any other owner also name (the
    old format shared that key between them; destroying it would destroy the other owner's data).
    """
    if owner.kind == "system":
        return {}
    names = reader.legacy_key_names(owner.namespace, owner.kind, owner.owner)
    found: dict[KeyScope, str] = {}
    for generation in keyring.live(owner):
        name = generation.legacy_id  # compared with names rows hold, as reseal._keys does
        if name not in names:
            continue
        if shared is not None and shared.legacy_name_shared(
            name, owner.namespace, owner.kind, owner.owner
        ):
            continue
        found[generation] = name
    return found


class KeyMissing(IntegrityError):
    """A row names a data key that is not stored (same code on the wire: ``integrity_error``).

    A tampered ``scope_id``; or, for a moment, a key that an erase or the end of a rotation
    destroyed (here or on another node) after the row was read and before that change's rows
    were deleted or moved. ``Memory``'s reads try again a moment later and raise it only when it
    persists."""


class Codec:
    def __init__(self, keyring: KeyRing, namespace: str, store: LegacyNames | None = None) -> None:
        self._keyring = keyring
        self.namespace = namespace
        self.store = store  # set once the store is open: legacy key names are read from rows

    def key_scope(self, scope: Scope) -> KeyScope:
        return KeyScope.of(self.namespace, scope)

    def current(self, scope: Scope) -> KeyScope:
        """The key generation new rows of ``scope`` are sealed with: read from the key store now,
        so call it inside the write transaction (see ``KeyRing.current``)."""
        return self._keyring.current(self.key_scope(scope))

    def current_many(self, scopes: Sequence[Scope]) -> list[KeyScope]:
        """``current`` of each of ``scopes``, read at once (see ``KeyRing.current_many``)."""
        return self._keyring.current_many([self.key_scope(scope) for scope in scopes])

    def live_scopes(self, scope: Scope) -> list[str]:
        """The ids of the key generations that may hold rows of ``scope``'s key owner."""
        return [k.id for k in self._keyring.live(self.key_scope(scope))]

    def legacy_scopes(self, scope: Scope) -> list[str]:
        """The pre-v2 names of the same keys that this owner's rows not yet resealed use."""
        if self.store is None:
            return []
        return list(legacy_keys(self.store, self._keyring, self.key_scope(scope)).values())

    def writer(self, key_scope: KeyScope) -> ScopeCipher:
        """The key new rows are sealed with; made on first use, adopting the pre-v2 key that
        this owner's own legacy rows of that generation name (if any)."""
        cipher = self._keyring.cipher(key_scope.id)
        if cipher is not None:
            return cipher
        adopt = None
        if self.store is not None:
            adopt = legacy_keys(self.store, self._keyring, key_scope).get(key_scope)
        return self._keyring.cipher_for(key_scope, adopt=adopt)

    def existing_cipher(self, scope_id: str) -> ScopeCipher | None:
        return self._keyring.cipher(scope_id)

    def reader(self, scope_id: str, what: str) -> ScopeCipher:
        """The key a row names; a missing key (destroyed, or a tampered ``scope_id``) is an
        integrity failure, never a reason to make a new key."""
        cipher = self._keyring.cipher(scope_id)
        if cipher is None:
            raise KeyMissing(f"no data key for the scope of {what}")
        return cipher

    # --- sealing ------------------------------------------------------------------------------

    @staticmethod
    def seal_vector(cipher: ScopeCipher, bound: Binding, vector: npt.NDArray[np.float32]) -> bytes:
        return cipher.seal(bound, "vector", np.asarray(vector, dtype="<f4").tobytes())

    @staticmethod
    def seal_metadata(cipher: ScopeCipher, bound: Binding, metadata: dict[str, Any]) -> bytes:
        encoded = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
        return cipher.seal(bound, "metadata", encoded.encode())

    @staticmethod
    def index_terms(cipher: ScopeCipher, text: str) -> str:
        """The text as keyed token hashes, space-separated: what the full-text index holds."""
        return " ".join(cipher.token(word) for word in words(text))

    # --- opening ------------------------------------------------------------------------------

    def open_field(self, row: MemoryRow | HistoryRow, field: str, box: bytes) -> bytes:
        cipher = self.reader(row.scope_id, row.id)
        return cipher.open(binding(row), field, box, row.seal_version)

    def open_text(self, row: MemoryRow) -> str:
        return self.open_field(row, "text", row.text_box).decode()

    def metadata_json(
        self,
        scope_id: str,
        memory_id: str,
        box: bytes,
        namespace: str,
        owners: tuple[str | None, str | None, str | None],
        seal_version: int,
    ) -> str:
        """For the SQL function ``mv_meta``: the row's metadata as JSON text."""
        bound = Binding(namespace, *owners, memory_id)
        cipher = self.reader(scope_id, memory_id)
        return cipher.open(bound, "metadata", box, seal_version).decode()

    def open_context(self, row: MemoryRow) -> str:
        return self.open_field(row, "context", row.context_box).decode()

    def open_vector(self, row: MemoryRow) -> npt.NDArray[np.float32]:
        return np.frombuffer(self.open_field(row, "vector", row.vector_box), dtype="<f4").astype(
            np.float32
        )

    def vector_entry(self, scope_id: str, stored: VectorRow) -> VectorEntry:
        """What the scope's in-process index holds of a ``scope_vectors`` row."""
        bound = Binding(stored.namespace, stored.user_id, stored.agent_id, stored.run_id, stored.id)
        raw = self.reader(scope_id, stored.id).open(
            bound, "vector", bytes(stored.vector_box), stored.seal_version
        )
        return VectorEntry(
            stored.id,
            stored.user_id,
            stored.agent_id,
            stored.run_id,
            to_epoch(stored.expires_at),
            np.frombuffer(raw, dtype="<f4").astype(np.float32),
            stored.body,
            stored.context,
        )

    def vectors(self, scope_id: str, rows: Sequence[VectorRow]) -> dict[str, Vectors]:
        """The decrypted vectors of ``vectors_of`` rows of one key scope (one key look-up)."""
        if not rows:
            return {}
        cipher = self.reader(scope_id, rows[0].id)
        found: dict[str, Vectors] = {}
        for stored in rows:
            bound = Binding(
                stored.namespace, stored.user_id, stored.agent_id, stored.run_id, stored.id
            )
            raw = cipher.open(bound, "vector", bytes(stored.vector_box), stored.seal_version)
            found[stored.id] = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        return found

    def public(self, row: MemoryRow) -> dict[str, Any]:
        """The memory as the API returns it (one key look-up and binding for both fields)."""
        cipher, bound = self.reader(row.scope_id, row.id), binding(row)
        metadata = json.loads(cipher.open(bound, "metadata", row.metadata_box, row.seal_version))
        if not isinstance(metadata, dict):
            raise IntegrityError(f"metadata of {row.id} is not an object")
        return {
            "id": row.id,
            "memory": cipher.open(bound, "text", row.text_box, row.seal_version).decode(),
            "metadata": metadata,
            "user_id": row.user_id,
            "agent_id": row.agent_id,
            "run_id": row.run_id,
            "actor_id": row.actor_id,
            "role": row.role,
            "memory_type": row.memory_type,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "expires_at": row.expires_at,
            "importance": row.importance,
            "access_count": row.access_count,
            "last_accessed_at": row.last_accessed_at,
        }

    # --- history ------------------------------------------------------------------------------

    @staticmethod
    def seal_history_text(
        cipher: ScopeCipher, event: HistoryRow, field: str, text: str | None
    ) -> bytes | None:
        return None if text is None else cipher.seal(binding(event), field, text.encode())

    def public_history(self, event: HistoryRow) -> dict[str, Any]:
        def text(field: str, box: bytes | None) -> str | None:
            return None if box is None else self.open_field(event, field, box).decode()

        public = {
            "id": event.id,
            "memory_id": event.memory_id,
            "event": event.event,
            "old_memory": text("history_old", event.old_box),
            "new_memory": text("history_new", event.new_box),
            "user_id": event.user_id,
            "agent_id": event.agent_id,
            "run_id": event.run_id,
            "actor_id": event.actor_id,
            "role": event.role,
            "created_at": event.created_at,
            "is_deleted": event.event == "DELETE",
        }
        meta = text("history_meta", event.meta_box)
        if meta is not None:  # only inferred changes carry it
            public["provenance"] = json.loads(meta)
        return public
