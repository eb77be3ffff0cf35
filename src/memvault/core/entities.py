"""Entity links: a memory's entities sealed on its row, found again through keyed hashes.

Each memory's entities (``retrieval/entities.py`` by rules; an inferred memory's also from the
LLM's answer) are stored twice, both under the memory's data key, in the transaction that writes
the memory (``core/changes.py``):

- ``entities_box``: the JSON list of ``[key, name]`` pairs, AES-GCM sealed with the row's binding
  and the field name ``entities`` (so it opens only as this row's field, like its text);
- ``terms_entities``: for each key, ``ScopeCipher.token("\\x1fentity\\x1f" + key)`` (the keyed
  hash of the full-text index, domain-separated from word tokens), space-separated. The store's
  ``memory_entities`` table (migrations ``m011_entities`` / ``m007_entities``) maps each hash to
  its memories and follows the row by trigger / foreign key: a delete of the memory by any path
  (delete, delete_all, erase, expiry, reset, a restore dropping rows) takes its entries with it.

Hashes are keyed per data key, so the same name has unrelated hashes in two users' scopes (and in
two key generations of one user: a rotation re-hashes every row, ``core/rekey.py``); every look-up
is also restricted to one namespace and the seed's key scope in SQL and here. No entity name is
stored in the clear, in an index or a log.

Memories written before entities existed have ``entities_box`` NULL: ``rebuild`` (``memvault
entities rebuild``, ``Memory.rebuild_entities``) extracts theirs in batches.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from memvault.clock import now_iso
from memvault.codec import KeyMissing, binding
from memvault.core.engine import Engine
from memvault.errors import IntegrityError, InvalidInput, NotFound
from memvault.retrieval.entities import MAX_ENTITIES, MAX_NAME, Entity, extract, normalize
from memvault.retrieval.expansion import Link, Seed
from memvault.security.crypto import SEAL_VERSION, ScopeCipher
from memvault.storage.rows import MemoryRow
from memvault.validation import Scope, check_count, check_id

__all__ = [
    "FIELD",
    "MAX_LINKS_PER_ENTITY",
    "EntityLink",
    "EntityLinks",
    "entities",
    "entity_hash",
    "entity_names",
    "linked_by_entities",
    "open_entities",
    "rebuild",
    "related",
    "reseal",
    "seal",
    "with_extra",
]

FIELD = "entities"
_DOMAIN = "\x1fentity\x1f"
# An entity that more memories of the scope name than this links too much to say anything
# (the user's own name, "today"): it is left out of the links, which also bounds their cost.
MAX_LINKS_PER_ENTITY = 100
MAX_LIMIT = 1000


def entity_hash(cipher: ScopeCipher, key: str) -> str:
    """The keyed hash that stands for an entity key in the scope's entity index."""
    return cipher.token(_DOMAIN + key)


def with_extra(text: str, extra: Sequence[str] | None = None) -> list[Entity]:
    """The entities of ``text`` by rules, then ``extra`` names (an LLM's), at most
    ``MAX_ENTITIES``, each key once."""
    found = {entity.key: entity for entity in extract(text)}
    for name in extra or ():
        if len(found) >= MAX_ENTITIES:
            break
        cleaned = " ".join(name.split())[:MAX_NAME]
        key = normalize(cleaned)
        try:
            key.encode()  # a lone surrogate from a model's JSON: nothing to hash or seal
            cleaned.encode()
        except UnicodeEncodeError:
            continue
        if key and key not in found:
            found[key] = Entity(key, cleaned)
    return list(found.values())


def seal(cipher: ScopeCipher, row: MemoryRow, found: Sequence[Entity]) -> tuple[bytes, str]:
    """(the sealed ``entities_box`` of ``row``, its entity hashes space-separated)."""
    payload = json.dumps(
        [[e.key, e.name] for e in found], ensure_ascii=False, separators=(",", ":")
    )
    box = cipher.seal(binding(row), FIELD, payload.encode())
    hashes = " ".join(dict.fromkeys(entity_hash(cipher, e.key) for e in found))
    return box, hashes


def open_entities(cipher: ScopeCipher, row: MemoryRow) -> list[Entity]:
    """The entities sealed on ``row`` (none when never extracted)."""
    if row.entities_box is None:
        return []
    # Entities are never sealed in the pre-v2 format (``rebuild`` skips legacy rows).
    pairs = json.loads(cipher.open(binding(row), FIELD, row.entities_box, SEAL_VERSION))
    if not isinstance(pairs, list):
        raise IntegrityError(f"entities of {row.id} are not a list")
    return [Entity(str(key), str(name)) for key, name in pairs]


def reseal(old: ScopeCipher, new: ScopeCipher, row: MemoryRow) -> str:
    """Move ``row``'s entities from ``old`` to ``new`` (key rotation): the box sealed again
    (``row.entities_box`` set; ``row.scope_id`` must already be the new one's) and the hashes
    computed under the new key, returned. Nothing to move: ``""``."""
    if row.entities_box is None:
        return ""
    found = open_entities(old, row)
    row.entities_box, hashes = seal(new, row, found)
    return hashes


@dataclass(frozen=True, slots=True)
class EntityLink:
    """A memory reached from seeds through shared entities.

    ``score``: the sum, over the entity hashes it shares with the seeds, of
    ``1 / log2(1 + n)`` where ``n`` is how many memories of the scope name that entity (a rare
    entity links strongly, a common one weakly). ``shared``: those hashes."""

    memory_id: str
    score: float
    shared: tuple[str, ...]


def _weight(count: int) -> float:
    return 1.0 / math.log2(1 + max(count, 1))


def _admits(scope: Scope | None, user: str | None, agent: str | None, run: str | None) -> bool:
    if scope is None:
        return True
    return all(
        wanted is None or wanted == held
        for wanted, held in ((scope.user_id, user), (scope.agent_id, agent), (scope.run_id, run))
    )


def linked_by_entities(
    engine: Engine,
    scope: Scope | None,
    memory_ids: Sequence[str],
    limit: int = 10,
    *,
    max_per_entity: int = MAX_LINKS_PER_ENTITY,
) -> list[EntityLink]:
    """The memories that share entities with ``memory_ids`` (the seeds: e.g. a search's first
    hits), best first (ties: the older first), at most ``limit``; the seeds themselves are left
    out.

    For search expansion: a link stays inside each seed's key scope (the index is read by the
    seed's scope id and hashes, which differ per key), inside the engine's namespace, among live
    memories (not expired), and among memories ``scope`` admits (its set ids must match, as a
    search's scope does; None: no owner filter beyond the key scope). Entities named by more
    than ``max_per_entity`` live memories of their scope are skipped (an expired memory, until
    purged, neither counts nor links). Seeds that do not exist, or that have no entities, add
    nothing. Nothing is decrypted: one read of the seeds' rows, two of the entity index (less
    the expired entries), then the owners of the best candidates (about
    ``2 x limit`` rows, more only when ``scope`` filters many out).
    """
    if not memory_ids or limit <= 0:
        return []
    store, namespace = engine.store, engine.namespace
    seeds = store.entity_terms(namespace, list(dict.fromkeys(memory_ids)))
    wanted: dict[str, str] = {}  # hash -> the key scope its seed is sealed under
    for _rowid, scope_id, hashes in seeds.values():
        for value in hashes.split():
            wanted.setdefault(value, scope_id)
    if not wanted:
        return []
    scope_ids = sorted(set(wanted.values()))
    now = now_iso()
    counts = store.entity_frequencies(scope_ids, list(wanted), now)
    weights = {}
    for value, scope_id in wanted.items():
        count = counts.get((scope_id, value), 0)
        if 0 < count <= max_per_entity:
            weights[value] = _weight(count)
    if not weights:
        return []
    seed_rows = {rowid for rowid, _scope, _hashes in seeds.values()}
    scores: dict[int, float] = {}
    shared: dict[int, list[str]] = {}
    for scope_id, value, rowid in store.entity_postings(scope_ids, list(weights)):
        if rowid in seed_rows or wanted.get(value) != scope_id:
            continue
        scores[rowid] = scores.get(rowid, 0.0) + weights[value]
        shared.setdefault(rowid, []).append(value)
    ranked = sorted(scores, key=lambda rowid: (-scores[rowid], rowid))
    links: list[EntityLink] = []
    step = max(2 * limit, 32)
    for start in range(0, len(ranked), step):
        chunk = ranked[start : start + step]
        rows = {row.rowid: row for row in store.link_rows(namespace, chunk, now)}
        for rowid in chunk:
            row = rows.get(rowid)  # None: expired, or deleted meanwhile
            if row is None or not _admits(scope, row.user_id, row.agent_id, row.run_id):
                continue
            links.append(
                EntityLink(row.memory_id, round(scores[rowid], 6), tuple(sorted(shared[rowid])))
            )
            if len(links) == limit:
                return links
    return links


def entity_names(engine: Engine, memory_ids: Sequence[str]) -> dict[str, str]:
    """Entity hash -> name, for the entities of ``memory_ids`` (e.g. the seeds of
    ``linked_by_entities``, to say in ``explain`` which names linked a memory): their rows are
    read and their sealed names opened (one decryption per memory). Unknown ids add nothing."""
    names: dict[str, str] = {}
    rows = engine.store.get_many(engine.namespace, list(dict.fromkeys(memory_ids)))
    for row in rows.values():
        cipher = engine.codec.reader(row.scope_id, row.id)
        for entity in open_entities(cipher, row):
            names.setdefault(entity_hash(cipher, entity.key), entity.name)
    return names


def related(engine: Engine, memory_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """The memories sharing entities with ``memory_id``, best first: each as ``get`` shows it,
    plus ``score`` (the share of the memory's entity weight they share, in [0, 1]) and
    ``entities`` (the shared names, as the memory writes them, in its order). Raises
    ``NotFound`` for a memory this namespace does not hold (or that expired)."""
    memory_id = check_id("memory_id", memory_id)
    limit = check_count("limit", limit, MAX_LIMIT)
    now = now_iso()
    row = engine.store.get(engine.namespace, memory_id, now)
    if row is None:
        raise NotFound(f"no memory {memory_id} in namespace {engine.namespace}")
    cipher = engine.codec.reader(row.scope_id, row.id)
    names = {entity_hash(cipher, e.key): e.name for e in open_entities(cipher, row)}
    links = linked_by_entities(engine, None, [memory_id], limit)
    if not links:
        return []
    counts = engine.store.entity_frequencies([row.scope_id], list(names), now)
    total = sum(_weight(counts.get((row.scope_id, h), 1)) for h in names) or 1.0
    rows = engine.store.get_many(engine.namespace, [link.memory_id for link in links])
    results = []
    for link in links:
        found = rows.get(link.memory_id)
        if found is None:  # deleted meanwhile
            continue
        item = engine.codec.public(found)
        item["score"] = round(min(1.0, link.score / total), 6)
        shared = set(link.shared)  # in the order the memory names them
        item["entities"] = [name for value, name in names.items() if value in shared]
        results.append(item)
    return results


def entities(engine: Engine, scope: Scope, limit: int = 100) -> list[dict[str, Any]]:
    """The entities of a scope's live memories, the most named first: ``{"name", "memories"}``
    (``name`` as one of the memories writes it)."""
    limit = check_count("limit", limit, MAX_LIMIT)
    counted = engine.store.entity_counts(engine.namespace, scope, now_iso(), limit)
    rows = engine.store.get_many(engine.namespace, list({rep for *_, rep in counted}))
    names: dict[tuple[str, str], Entity] = {}
    for row in rows.values():
        cipher = engine.codec.reader(row.scope_id, row.id)
        for entity in open_entities(cipher, row):
            names[(row.scope_id, entity_hash(cipher, entity.key))] = entity
    merged: dict[str, dict[str, Any]] = {}  # by key: two key generations (a rotation) add up
    for scope_id, value, count, _rep in counted:
        named = names.get((scope_id, value))
        if named is None:  # its memory changed since the count
            continue
        entry = merged.setdefault(named.key, {"name": named.name, "memories": 0})
        entry["memories"] += count
    ordered = sorted(merged.values(), key=lambda e: (-e["memories"], e["name"]))
    return ordered[:limit]


def rebuild(
    engine: Engine,
    *,
    batch: int = 200,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Extract the entities of every memory of the namespace that has none recorded (written
    before entities existed), a batch per transaction; ``on_progress(done so far)``.

    Rows whose key is gone meanwhile (an erase) are skipped. Safe to run while others write:
    a row rewritten meanwhile by a rotation is either read after it (and sealed under the new
    key) or has its entities cleared by it, and then comes up in the next run."""
    batch = check_count("batch", batch, 10_000)
    if on_progress is not None and not callable(on_progress):
        raise InvalidInput("on_progress must be a function or None")
    done = skipped = 0
    after = -1
    while True:
        with engine.store.transaction() as tx:
            found = tx.rows_without_entities(engine.namespace, after, batch)
            for row in found:
                after = max(after, row.rowid or after)
                if row.seal_version != SEAL_VERSION:  # resealed on open; never mixed formats
                    skipped += 1
                    continue
                try:
                    cipher = engine.codec.reader(row.scope_id, row.id)
                    text = engine.codec.open_text(row)
                except KeyMissing:
                    skipped += 1
                    continue
                row.entities_box, hashes = seal(cipher, row, extract(text))
                tx.set_entities(row, hashes)
                done += 1
        if on_progress is not None:
            on_progress(done)
        if len(found) < batch:
            break
    return {"memories": done, "skipped": skipped}


ENTITY_LINKS = "entities"
# An entity link's score in (0, 1]: its weight (the sum of 1 / log2(1 + n) over the shared
# entities, n memories naming each) capped at 1, times this share: a memory sharing one entity
# with a single other memory (weight 0.63) scores about as high as the nearest conversation
# neighbour (0.5), one sharing a name that 30 memories use (0.2) much lower.
ENTITY_LINK_SHARE = 0.8


class EntityLinks:
    """Search expansion's entity source (``retrieval.expansion.LinkSource``): for each seed,
    the memories of its scope that name the same entities, strongest first. The searcher masks
    what it returns with the search's owners, expiry and filter; this source also stays inside
    each seed's key scope and ``scope``'s owners (``linked_by_entities``)."""

    name = ENTITY_LINKS

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def links(self, scope: Scope, seeds: Sequence[Seed], per_seed: int) -> list[Link]:
        found: list[Link] = []
        for seed in seeds:
            for link in linked_by_entities(self._engine, scope, [seed.memory_id], per_seed):
                shared = len(link.shared)
                found.append(
                    Link(
                        link.memory_id,
                        seed.memory_id,
                        min(1.0, link.score) * ENTITY_LINK_SHARE,
                        ENTITY_LINKS,
                        f"names {shared} of the same entit{'y' if shared == 1 else 'ies'}",
                    )
                )
        return found
