"""What the parts of the core share: settings, the stores, the key ring, the codec, the cache.

An ``Engine`` is seen from one namespace (``view`` gives another one over the same stores). Its
fields are public on purpose: the modules of ``memvault.core`` are its users, and nothing reaches
into another object's private fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from memvault.clock import now_iso, uuid7
from memvault.codec import Codec
from memvault.config import Settings
from memvault.retrieval.vector_index import VectorCache
from memvault.security.crypto import ScopeCipher, canonical
from memvault.security.keyring import KeyRing
from memvault.security.keyscope import KeyScope
from memvault.storage.base import DataStore, WriteTx
from memvault.storage.rows import HistoryRow, MemoryRow
from memvault.validation import Scope

__all__ = ["Engine", "namespace_lock", "owner_lock"]

Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]


def namespace_lock(namespace: str) -> str:
    """The lock name of a namespace (``WriteTx.lock``): writers share it, reset takes it alone."""
    return canonical(["namespace", namespace])


def owner_lock(key_scope: KeyScope) -> str:
    """The lock name of a key owner, whatever the generation: writers, erase and rotation of the
    owner take it alone."""
    return canonical(["owner", key_scope.namespace, key_scope.kind, key_scope.owner])


@dataclass(frozen=True, slots=True)
class Engine:
    settings: Settings
    namespace: str
    store: DataStore
    keyring: KeyRing
    codec: Codec
    cache: VectorCache
    embed: Embed

    def view(self, namespace: str) -> Engine:
        """The same stores and caches, seen from another namespace."""
        return replace(self, namespace=namespace, codec=Codec(self.keyring, namespace, self.store))

    def key_scope(self, scope: Scope) -> KeyScope:
        return self.codec.key_scope(scope)

    def lock_owners(self, tx: WriteTx, owners: Iterable[KeyScope], *, alone: bool = False) -> None:
        """Lock the namespace (shared; ``alone``: exclusive) then each key owner, in one sorted
        order, so two units of work never wait on each other in a cycle."""
        tx.lock(namespace_lock(self.namespace), exclusive=alone)
        tx.lock_all(sorted({owner_lock(owner) for owner in owners}))

    def writer_key(self, scope: Scope) -> tuple[KeyScope, ScopeCipher]:
        """The generation new rows of ``scope`` are sealed with and its cipher. Call it inside
        the write transaction, after ``lock_owners``: erase and rotation change the generation
        under the same lock, so the answer holds until the write commits."""
        key_scope = self.codec.current(scope)
        return key_scope, self.codec.writer(key_scope)

    def writer_keys(self, scopes: Sequence[Scope]) -> list[tuple[KeyScope, ScopeCipher]]:
        """``writer_key`` of each of ``scopes``, their generations read at once (the same rule:
        inside the write transaction, after ``lock_owners``)."""
        return [
            (key_scope, self.codec.writer(key_scope))
            for key_scope in self.codec.current_many(scopes)
        ]

    def event(
        self,
        row: MemoryRow,
        memory_id: str,
        event_name: str,
        old: str | None,
        new: str | None,
        cipher: ScopeCipher,
        meta: Mapping[str, Any] | None = None,
    ) -> HistoryRow:
        """A history event of ``row``, its texts (and ``meta``: an inferred change's provenance)
        sealed with the row's key."""
        event = HistoryRow(
            id=uuid7(),
            memory_id=memory_id,
            namespace=row.namespace,
            scope_id=row.scope_id,
            user_id=row.user_id,
            agent_id=row.agent_id,
            run_id=row.run_id,
            event=event_name,
            old_box=None,
            new_box=None,
            actor_id=row.actor_id,
            role=row.role,
            created_at=now_iso(),
        )
        event.old_box = self.codec.seal_history_text(cipher, event, "history_old", old)
        event.new_box = self.codec.seal_history_text(cipher, event, "history_new", new)
        if meta is not None:
            encoded = json.dumps(meta, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
            event.meta_box = self.codec.seal_history_text(cipher, event, "history_meta", encoded)
        return event
