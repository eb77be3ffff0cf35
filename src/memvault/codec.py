"""Sealing memories into rows and opening rows into the dicts the API returns.

Every secret field (text, metadata, vector, context, history texts) goes through the scope's
``ScopeCipher`` here and nowhere else, with the row id and field name bound as associated data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from memvault.clock import to_epoch
from memvault.errors import IntegrityError
from memvault.retrieval.text import words
from memvault.retrieval.vector_index import VectorEntry
from memvault.security.crypto import ScopeCipher
from memvault.security.keyring import KeyRing
from memvault.storage.sqlite import HistoryRow, MemoryRow

__all__ = ["Codec", "Plain"]


@dataclass(slots=True)
class Plain:
    """A memory's secret fields in the clear."""

    text: str
    metadata: dict[str, Any]


class Codec:
    def __init__(self, keyring: KeyRing, namespace: str) -> None:
        self._keyring = keyring
        self.namespace = namespace

    def scope_id(self, key_scope: str) -> str:
        """The key scope new rows are sealed with (the current generation of its data key)."""
        return self._keyring.current_scope(self.base_scope(key_scope))

    def base_scope(self, key_scope: str) -> str:
        return f"{self.namespace}/{key_scope}"

    def live_scopes(self, key_scope: str) -> list[str]:
        return self._keyring.live_scopes(self.base_scope(key_scope))

    def cipher(self, scope_id: str) -> ScopeCipher:
        cipher = self._keyring.cipher(scope_id)
        assert cipher is not None
        return cipher

    def existing_cipher(self, scope_id: str) -> ScopeCipher | None:
        return self._keyring.cipher(scope_id, create=False)

    # --- sealing ------------------------------------------------------------------------------

    @staticmethod
    def seal_vector(cipher: ScopeCipher, memory_id: str, vector: npt.NDArray[np.float32]) -> bytes:
        return cipher.seal(memory_id, "vector", np.asarray(vector, dtype="<f4").tobytes())

    @staticmethod
    def seal_metadata(cipher: ScopeCipher, memory_id: str, metadata: dict[str, Any]) -> bytes:
        encoded = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
        return cipher.seal(memory_id, "metadata", encoded.encode())

    @staticmethod
    def index_terms(cipher: ScopeCipher, text: str) -> str:
        """The text as keyed token hashes, space-separated: what the full-text index holds."""
        return " ".join(cipher.token(word) for word in words(text))

    # --- opening ------------------------------------------------------------------------------

    def open_text(self, row: MemoryRow) -> str:
        return self.cipher(row.scope_id).open(row.id, "text", row.text_box).decode()

    def open_metadata(self, scope_id: str, memory_id: str, box: bytes) -> dict[str, Any]:
        value = json.loads(self.cipher(scope_id).open(memory_id, "metadata", box))
        if not isinstance(value, dict):
            raise IntegrityError(f"metadata of {memory_id} is not an object")
        return value

    def metadata_json(self, scope_id: str, memory_id: str, box: bytes) -> str:
        """For the SQL function ``mv_meta``: the row's metadata as JSON text."""
        cipher = self._keyring.cipher(scope_id, create=False)
        if cipher is None:
            raise IntegrityError(f"no data key for the scope of {memory_id}")
        return cipher.open(memory_id, "metadata", box).decode()

    def open_context(self, row: MemoryRow) -> str:
        return self.cipher(row.scope_id).open(row.id, "context", row.context_box).decode()

    def open_vector(self, scope_id: str, memory_id: str, box: bytes) -> npt.NDArray[np.float32]:
        raw = self.cipher(scope_id).open(memory_id, "vector", box)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)

    def vector_entry(self, scope_id: str, stored: Any) -> VectorEntry:
        """From a ``scope_vectors`` row: id, user_id, agent_id, run_id, expires_at, vector_box,
        body, context."""
        return VectorEntry(
            stored["id"],
            stored["user_id"],
            stored["agent_id"],
            stored["run_id"],
            to_epoch(stored["expires_at"]),
            self.open_vector(scope_id, stored["id"], stored["vector_box"]),
            stored["body"],
            stored["context"],
        )

    def public(self, row: MemoryRow) -> dict[str, Any]:
        """The memory as the API returns it."""
        return {
            "id": row.id,
            "memory": self.open_text(row),
            "metadata": self.open_metadata(row.scope_id, row.id, row.metadata_box),
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

    def seal_history_text(
        self, cipher: ScopeCipher, event_id: str, field: str, text: str | None
    ) -> bytes | None:
        return None if text is None else cipher.seal(event_id, field, text.encode())

    def public_history(self, event: HistoryRow) -> dict[str, Any]:
        cipher = self.cipher(event.scope_id)

        def text(field: str, box: bytes | None) -> str | None:
            return None if box is None else cipher.open(event.id, field, box).decode()

        return {
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
