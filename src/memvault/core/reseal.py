"""Moving rows of older versions to the current seal format, online, in batches.

Before format 2 a row's fields were bound to ``"memvault/v1|<scope>|<row id>|<field>"`` only, and
the key scope was a joined string (``"default/user:alice#g2"``) that another owner's id could
spell. A legacy row is resealed under its owner's ``KeyScope`` id with the owner columns bound
(``crypto.Binding``). The data key stays the same: ``KeyRing.cipher_for`` adopts the key stored
under the old name the row names (same bytes, re-wrapped under the new id), so dedup hashes and
full-text tokens stay valid and the FTS index is not touched. Adoption is driven by rows only
(here, and for a writer by ``codec.legacy_keys``): an old name computed from a key scope alone
might be another owner's key (the user ``alice#g2`` spells ``alice``'s second generation).

Which key generation a legacy row used is found by computing the old name of each live generation
of the owner given by the row's columns and comparing it with the row's ``scope_id``: nothing is
parsed out of the old string. A row that matches none (or whose old key is gone, or that fails
authentication) is left as it is and counted as ``unreadable``.

Each batch is one transaction, so other processes read and write between batches; reads follow
each row's ``seal_version`` meanwhile. ``Memory`` runs this on open; once no legacy row remains,
the keys under old names are forgotten and ``store_meta.seal_format`` records ``2`` so later
opens skip the scan.
"""

from __future__ import annotations

from collections.abc import Callable

from memvault.codec import binding
from memvault.core.engine import Engine
from memvault.errors import IntegrityError
from memvault.security.crypto import SEAL_VERSION, ScopeCipher
from memvault.security.keyscope import API_KEYS, AUDIT, KeyScope
from memvault.storage.base import WriteTx
from memvault.storage.rows import HistoryRow, MemoryRow
from memvault.validation import Scope

__all__ = ["reseal_legacy", "reseal_row"]

_FIELDS = ("text", "metadata", "vector", "context")
_DONE_KEY = "seal_format"


def _keys(engine: Engine, row: MemoryRow | HistoryRow) -> tuple[ScopeCipher, ScopeCipher]:
    """(the legacy row's key under its old name, the same key under its ``KeyScope`` id)."""
    keyring = engine.keyring
    owner = KeyScope.of(row.namespace, Scope(row.user_id, row.agent_id, row.run_id))
    for generation in keyring.live(owner):
        if generation.legacy_id == row.scope_id:
            old = keyring.cipher(row.scope_id)
            if old is None:
                break
            new = keyring.cipher_for(generation, adopt=row.scope_id)
            if new.data_key != old.data_key:  # cipher_for adopts the old key: cannot differ
                raise IntegrityError(f"the key of {row.id} changed while resealing")
            return old, new
    raise IntegrityError(f"{row.id} names no key its owner had")


def reseal_row(tx: WriteTx, engine: Engine, row: MemoryRow) -> MemoryRow:
    """``row`` in the current format (rewritten inside ``tx`` if it was older)."""
    if row.seal_version == SEAL_VERSION:
        return row
    old, new = _keys(engine, row)
    plain = {f: old.open(binding(row), f, getattr(row, f"{f}_box"), 1) for f in _FIELDS}
    previous = row.scope_id
    row.scope_id, row.seal_version = new.scope_id, SEAL_VERSION
    boxes = {f: new.seal(binding(row), f, plain[f]) for f in _FIELDS}
    row.text_box, row.metadata_box = boxes["text"], boxes["metadata"]
    row.vector_box, row.context_box = boxes["vector"], boxes["context"]
    tx.rewrite(row, None)  # the same key bytes: dedup hash and index terms stay valid
    for scope_id in (previous, row.scope_id):  # both indexes change: no cache may stay current
        tx.bump_version(scope_id)
    engine.cache.drop(previous)
    engine.cache.drop(row.scope_id)
    return row


def _reseal_event(tx: WriteTx, engine: Engine, event: HistoryRow) -> None:
    old, new = _keys(engine, event)
    names = ("history_old", "history_new", "history_meta")
    texts = [
        None if box is None else old.open(binding(event), name, box, 1)
        for name, box in zip(names, (event.old_box, event.new_box, event.meta_box), strict=True)
    ]
    event.scope_id, event.seal_version = new.scope_id, SEAL_VERSION
    boxes = [
        None if t is None else new.seal(binding(event), n, t)
        for n, t in zip(names, texts, strict=True)
    ]
    event.old_box, event.new_box, event.meta_box = boxes
    tx.rewrite_event(event)


def reseal_legacy(
    engine: Engine,
    *,
    batch: int = 200,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Reseal every legacy memory and history event; returns the counts."""
    store = engine.store
    done = {"memories": 0, "events": 0, "unreadable": 0}
    if store.get_meta(_DONE_KEY) == str(SEAL_VERSION):
        return done
    after_row, after_event = -1, ""
    for table in ("memories", "history"):
        while True:
            with store.transaction() as tx:
                found: list[MemoryRow] | list[HistoryRow]
                if table == "memories":
                    found = tx.legacy_rows(after_row, batch)
                else:
                    found = tx.legacy_events(after_event, batch)
                for record in found:
                    try:
                        if isinstance(record, MemoryRow):
                            after_row = record.rowid or after_row
                            reseal_row(tx, engine, record)
                        else:
                            after_event = record.id
                            _reseal_event(tx, engine, record)
                    except IntegrityError:
                        done["unreadable"] += 1
                        continue
                    done["memories" if table == "memories" else "events"] += 1
            if on_progress is not None:
                on_progress(done["memories"], done["events"])
            if len(found) < batch:
                break
    if done["unreadable"] == 0:
        # The system keys (API key pepper, audit chain) keep their bytes under their new ids.
        engine.keyring.cipher_for(API_KEYS)
        engine.keyring.cipher_for(AUDIT)
        engine.keyring.drop_legacy_keys()
        store.set_meta_once(_DONE_KEY, str(SEAL_VERSION))
    store.forget_decrypted()
    return done
