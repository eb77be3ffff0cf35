"""Entity links on every backend: what is stored, who sees it, and every path that must take it
away or carry it over (delete, delete_all, update, expiry, erase, reset, key rotation, rebuild)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from memvault import Memory, MissingScope, NotFound
from memvault.core import entities as core_entities
from memvault.core.entities import entity_hash, linked_by_entities
from memvault.validation import Scope


def _add(mem: Memory, text: str, **scope: str) -> str:
    return str(mem.add(text, **scope)["results"][0]["id"])


# Every key scope a memory was seen under: ``_indexed`` looks in all of them, so an entry left
# behind under an erased or rotated key would be found.
_SEEN_SCOPES: set[str] = set()


def _hashes(mem: Memory, memory_id: str) -> list[str]:
    held = mem.engine.store.entity_terms(mem.namespace, [memory_id])
    if memory_id not in held:
        return []
    _rowid, scope_id, hashes = held[memory_id]
    _SEEN_SCOPES.add(scope_id)
    return hashes.split()


def _indexed(mem: Memory, hashes: list[str]) -> dict[tuple[str, str], int]:
    """What the store's entity index holds under ``hashes``, expired memories included."""
    return mem.engine.store.entity_frequencies(sorted(_SEEN_SCOPES), hashes)


@pytest.fixture
def lisbon(mem: Memory) -> dict[str, str]:
    return {
        "moved": _add(mem, "Alice moved to Lisbon in May 2023.", user_id="alice"),
        "tram": _add(mem, "Alice loves the Lisbon trams.", user_id="alice"),
        "porto": _add(mem, "Alice visited Porto with Bob.", user_id="alice"),
        "coffee": _add(mem, "I had a coffee.", user_id="alice"),
        "bob": _add(mem, "Bob lives in Lisbon too.", user_id="bob"),
    }


def test_entities_are_listed_with_counts(mem: Memory, lisbon: dict[str, str]) -> None:
    found = mem.entities(user_id="alice")["results"]
    assert found[:2] == [{"name": "Alice", "memories": 3}, {"name": "Lisbon", "memories": 2}]
    assert {"name": "May 2023", "memories": 1} in found
    assert mem.entities(user_id="alice", limit=1)["results"] == found[:1]
    assert mem.entities(user_id="bob")["results"] == [
        {"name": "Bob", "memories": 1},
        {"name": "Lisbon", "memories": 1},
    ]
    with pytest.raises(MissingScope):
        mem.entities()


def test_related_memories_share_entities_scored_and_named(
    mem: Memory, lisbon: dict[str, str]
) -> None:
    found = mem.related(lisbon["moved"])["results"]
    assert [r["id"] for r in found] == [lisbon["tram"], lisbon["porto"]]
    assert found[0]["entities"] == ["Alice", "Lisbon"]  # in the memory's order
    assert found[1]["entities"] == ["Alice"]
    assert 1 >= found[0]["score"] > found[1]["score"] > 0
    assert found[0]["memory"] == "Alice loves the Lisbon trams."
    assert mem.related(lisbon["moved"], limit=1)["results"] == found[:1]
    assert mem.related(lisbon["coffee"])["results"] == []
    with pytest.raises(NotFound):
        mem.related("01900000-0000-7000-8000-000000000000")


def test_another_user_never_sees_entities_or_related_memories(
    mem: Memory, lisbon: dict[str, str]
) -> None:
    """Bob's memory names Lisbon too: it is never related to Alice's, and the same name has
    unrelated hashes in the two scopes."""
    related = {r["id"] for r in mem.related(lisbon["moved"])["results"]}
    assert lisbon["bob"] not in related
    assert {r["id"] for r in mem.related(lisbon["bob"])["results"]} == set()
    alice_key = mem.engine.codec.reader(
        mem.engine.store.get("default", lisbon["moved"]).scope_id, "a"
    )
    bob_key = mem.engine.codec.reader(mem.engine.store.get("default", lisbon["bob"]).scope_id, "b")
    assert entity_hash(alice_key, "lisbon") != entity_hash(bob_key, "lisbon")
    assert entity_hash(alice_key, "lisbon") in _hashes(mem, lisbon["moved"])
    assert entity_hash(bob_key, "lisbon") in _hashes(mem, lisbon["bob"])
    # Another namespace holds none of it, even for the same ids.
    acme = mem.namespaced("acme")
    with pytest.raises(NotFound):
        acme.related(lisbon["moved"])
    acme_id = _add(acme, "Alice moved to Lisbon in May 2023.", user_id="alice")
    assert acme.related(acme_id)["results"] == []
    assert {r["id"] for r in mem.related(lisbon["moved"])["results"]} == related


def test_linked_by_entities_for_search_expansion(mem: Memory, lisbon: dict[str, str]) -> None:
    engine = mem.engine
    links = linked_by_entities(engine, Scope(user_id="alice"), [lisbon["moved"]], 10)
    assert [link.memory_id for link in links] == [lisbon["tram"], lisbon["porto"]]
    assert set(links[1].shared) < set(links[0].shared)
    # Seeds are left out; the scope filters owners; an unknown seed adds nothing.
    links = linked_by_entities(engine, None, [lisbon["moved"], lisbon["tram"], "nope"], 10)
    assert [link.memory_id for link in links] == [lisbon["porto"]]
    assert linked_by_entities(engine, Scope(user_id="bob"), [lisbon["moved"]], 10) == []
    agent = _add(mem, "Alice met Carla in Lisbon.", user_id="alice", agent_id="travel")
    scoped = linked_by_entities(engine, Scope("alice", "travel"), [lisbon["moved"]], 10)
    assert [link.memory_id for link in scoped] == [agent]
    # explain: the names behind the shared hashes, opened from the seeds.
    names = core_entities.entity_names(engine, [lisbon["moved"], "nope"])
    assert [names[h] for h in links[0].shared] == ["Alice"]  # porto shares "Alice" only
    # An entity more memories name than max_per_entity links nothing.
    assert linked_by_entities(engine, None, [lisbon["moved"]], 10, max_per_entity=2) == []
    assert linked_by_entities(engine, None, [], 10) == []


def test_update_delete_and_delete_all_take_their_entities_along(
    mem: Memory, lisbon: dict[str, str]
) -> None:
    before = _hashes(mem, lisbon["tram"])
    mem.update(lisbon["tram"], "Alice rides trams in Porto now.")
    assert {r["name"] for r in mem.entities(user_id="alice")["results"]} >= {"Porto"}
    assert mem.related(lisbon["porto"])["results"][0]["id"] == lisbon["tram"]
    assert set(_hashes(mem, lisbon["tram"])) != set(before)
    mem.update(lisbon["tram"], metadata={"kind": "travel"})  # metadata alone keeps them
    assert mem.related(lisbon["porto"])["results"][0]["id"] == lisbon["tram"]
    gone = _hashes(mem, lisbon["moved"])
    mem.delete(lisbon["moved"])
    counts = _indexed(mem, gone)
    assert sum(counts.values()) == 2  # "alice" still in two memories; "may 2023" etc. gone
    assert lisbon["moved"] not in {r["id"] for r in mem.related(lisbon["tram"])["results"]}
    all_hashes = [h for m in lisbon.values() for h in _hashes(mem, m)]
    mem.delete_all(user_id="alice")
    assert mem.entities(user_id="alice")["results"] == []
    assert set(_indexed(mem, all_hashes).values()) == {1}  # bob's Bob and Lisbon only


def test_expired_memories_are_not_linked_and_purge_removes_their_entries(
    mem: Memory, lisbon: dict[str, str]
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    stale = mem.add("Alice swam in Lisbon.", user_id="alice", expiration_date=past)
    stale_id = stale["results"][0]["id"]
    assert stale_id not in {r["id"] for r in mem.related(lisbon["moved"])["results"]}
    assert {"name": "Lisbon", "memories": 2} in mem.entities(user_id="alice")["results"]
    hashes = _hashes(mem, stale_id)
    assert sum(_indexed(mem, hashes).values()) > 0
    assert mem.purge_expired() == 1
    assert _hashes(mem, stale_id) == []
    before = sum(_indexed(mem, hashes).values())
    assert before == sum(
        _indexed(mem, [h for h in hashes if h in _hashes(mem, lisbon["moved"])]).values()
    )


def test_erase_and_reset_remove_every_entity_entry(mem: Memory, lisbon: dict[str, str]) -> None:
    alice = [h for key in ("moved", "tram", "porto") for h in _hashes(mem, lisbon[key])]
    bob = _hashes(mem, lisbon["bob"])
    mem.erase_user("alice")
    assert _indexed(mem, alice) == {}
    assert sum(_indexed(mem, bob).values()) == 2
    mem.reset()
    assert _indexed(mem, bob) == {}


def test_export_lists_each_memorys_entities(mem: Memory, lisbon: dict[str, str]) -> None:
    lines = [line for line in mem.export_user("alice") if line["type"] == "memory"]
    by_id = {line["id"]: line["entities"] for line in lines}
    assert set(by_id[lisbon["moved"]]) == {"Alice", "Lisbon", "May 2023", "2023"}
    assert by_id[lisbon["coffee"]] == []


def test_rotation_re_hashes_and_keeps_links_working(mem: Memory, lisbon: dict[str, str]) -> None:
    old = _hashes(mem, lisbon["moved"])
    listed = mem.entities(user_id="alice")["results"]
    related = mem.related(lisbon["moved"])["results"]
    mem.rotate_user_key("alice")
    assert _indexed(mem, old) == {}  # nothing left under the old key's hashes
    new = _hashes(mem, lisbon["moved"])
    assert new and not set(new) & set(old)
    assert mem.entities(user_id="alice")["results"] == listed
    assert [
        (r["id"], r["entities"], r["score"]) for r in mem.related(lisbon["moved"])["results"]
    ] == [(r["id"], r["entities"], r["score"]) for r in related]
    # Bob's scope was not touched.
    assert mem.related(lisbon["bob"])["results"] == []


def test_rebuild_extracts_entities_of_memories_written_before_them(
    open_memory: Callable[..., Memory],
) -> None:
    mem = open_memory()
    ids = [_add(mem, f"Alice went to Lisbon on day {n}.", user_id="alice") for n in range(5)]
    # As a store migrated from an older version holds them: no entities recorded.
    with mem.engine.store.transaction() as tx:
        for memory_id in ids:
            row = tx.get(mem.namespace, memory_id)
            assert row is not None
            row.entities_box = None
            tx.set_entities(row, "")
    assert mem.entities(user_id="alice")["results"] == []
    assert mem.related(ids[0])["results"] == []
    assert mem.engine.store.count_without_entities(mem.namespace) == 5
    seen: list[int] = []
    done = mem.rebuild_entities(batch=2, on_progress=seen.append)
    assert done == {"namespace": "default", "memories": 5, "skipped": 0}
    assert seen[-1] == 5 and len(seen) >= 3
    assert mem.entities(user_id="alice")["results"] == [
        {"name": "Alice", "memories": 5},
        {"name": "Lisbon", "memories": 5},
    ]
    assert len(mem.related(ids[0])["results"]) == 4
    assert mem.rebuild_entities()["memories"] == 0  # nothing left to do
    assert mem.engine.store.count_without_entities(mem.namespace) == 0


def test_entity_names_are_sealed_with_the_row(mem: Memory, lisbon: dict[str, str]) -> None:
    """The names open only as this row's ``entities`` field under its key."""
    row = mem.engine.store.get("default", lisbon["moved"])
    other = mem.engine.store.get("default", lisbon["tram"])
    assert row is not None and other is not None and row.entities_box is not None
    assert b"Lisbon" not in row.entities_box and b"lisbon" not in row.entities_box
    cipher = mem.engine.codec.reader(row.scope_id, row.id)
    assert {e.key for e in core_entities.open_entities(cipher, row)} >= {"alice", "lisbon"}
    other.entities_box = row.entities_box  # moved onto another row: refused
    with pytest.raises(Exception, match="entities"):
        core_entities.open_entities(cipher, other)


def test_expired_memories_weigh_nothing_in_links(mem: Memory, lisbon: dict[str, str]) -> None:
    """An expired memory is gone for every read: it neither lowers an entity's weight (the
    related scores) nor pushes an entity over the link cap, until purge takes it away."""
    before = mem.related(lisbon["moved"])["results"]
    seeds = [lisbon["moved"]]
    linked = linked_by_entities(mem.engine, None, seeds, 10, max_per_entity=2)
    assert lisbon["tram"] in {link.memory_id for link in linked}
    past = datetime.now(UTC) - timedelta(seconds=1)
    for n in range(3):
        mem.add(f"Alice swam in Lisbon, lap {n}.", user_id="alice", expiration_date=past)
    assert mem.related(lisbon["moved"])["results"] == before
    assert linked_by_entities(mem.engine, None, seeds, 10, max_per_entity=2) == linked


def test_another_process_rotating_then_erasing_is_seen_at_once(
    open_memory: Callable[..., Memory],
) -> None:
    """Entity answers come from the store each time: after another process (another ``Memory``
    on the same store) rotates alice's key, this one's links and names are the same; after it
    erases her, this one lists no entity of hers and finds none of her memories."""
    here, there = open_memory(), open_memory()
    moved = _add(here, "Alice moved to Lisbon in May 2023.", user_id="alice")
    tram = _add(here, "Alice loves the Lisbon trams.", user_id="alice")
    listed = here.entities(user_id="alice")["results"]
    assert [r["id"] for r in here.related(moved)["results"]] == [tram]
    there.rotate_user_key("alice")
    assert here.entities(user_id="alice")["results"] == listed
    assert [r["id"] for r in here.related(moved)["results"]] == [tram]
    there.erase_user("alice")
    assert here.entities(user_id="alice")["results"] == []
    with pytest.raises(NotFound):
        here.related(moved)
