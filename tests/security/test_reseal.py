"""A store written by the previous version (tests/data/v1-store: joined key names, v1 associated
data) is resealed online and keeps working: memories, history, search, dedup, API keys, audit."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from memvault import HashEmbedder, Memory

V1_STORE = Path(__file__).parent.parent / "data" / "v1-store"

EXPECTED = {
    "alice_tea": "Alice prefers jasmine tea",
    "alice_lyon": "Alice lives in Lyon",
    "alice_run": "Alice runs on Sundays",
    "bob_chess": "Bob likes chess",
    "agent_french": "The planner agent speaks French",
    "run_fast": "Run 7 used the fast path",
}


@pytest.fixture
def v1_home(home: Path) -> tuple[Path, dict[str, str]]:
    shutil.copytree(V1_STORE, home)
    return home, json.loads((home / "expected.json").read_text())


def _legacy_rows(home: Path) -> tuple[int, int, int]:
    db = sqlite3.connect(home / "memvault.db")
    rows = [
        db.execute(f"SELECT count(*) FROM {t} WHERE seal_version = 1").fetchone()[0]
        for t in ("memories", "history")
    ]
    db.close()
    keys = sqlite3.connect(home / "keys.db")
    legacy_keys = keys.execute("SELECT count(*) FROM data_keys WHERE format = 1").fetchone()[0]
    keys.close()
    return rows[0], rows[1], legacy_keys


def _check_everything(m: Memory, ids: dict[str, str]) -> None:
    for name, text in EXPECTED.items():
        assert m.get(ids[name])["memory"] == text, name
    assert m.get(ids["alice_tea"])["metadata"] == {"topic": "drinks"}
    assert [e["event"] for e in m.history(ids["alice_tea"])] == ["ADD", "UPDATE"]
    assert m.history(ids["alice_tea"])[1]["old_memory"] == "Alice prefers green tea"
    assert [e["event"] for e in m.history(ids["alice_deleted"])] == ["ADD", "DELETE"]
    assert len(m.get_all(user_id="alice")["results"]) == 3
    assert (
        m.get_all(user_id="alice", filters={"topic": "home"})["results"][0]["id"]
        == (ids["alice_lyon"])
    )
    for mode in ("hybrid", "vector", "bm25"):
        hits = m.search("jasmine tea", user_id="alice", mode=mode)["results"]  # type: ignore[arg-type]
        assert hits[0]["id"] == ids["alice_tea"], mode
    assert m.search("chess", user_id="bob")["results"][0]["id"] == ids["bob_chess"]
    assert m.search("French", agent_id="planner")["results"][0]["id"] in (
        ids["agent_french"],
        ids["alice_lyon"],
    )
    assert m.search("fast path", run_id="run7")["results"][0]["id"] == ids["run_fast"]
    carol = m.namespaced("acme").get(ids["acme_carol"])
    assert carol is not None and carol["memory"] == "Carol works at Acme"
    assert m.api_keys.authenticate(ids["api_key"]).name == "old"
    # Dedup hashes are unchanged (same data key): the same text is recognised.
    assert (
        m.add("Alice lives in Lyon", user_id="alice", agent_id="planner")["results"][0]["event"]
        == "NONE"
    )


def test_reads_work_for_both_formats_during_the_migration(
    v1_home: tuple[Path, dict[str, str]],
) -> None:
    home, ids = v1_home
    with Memory(home, embedder=HashEmbedder(), reseal_on_open=False) as m:
        _check_everything(m, ids)  # every row still v1 (but the one update/delete may touch)
        progress: list[tuple[int, int]] = []

        def between_batches(memories: int, events: int) -> None:
            progress.append((memories, events))
            _check_everything(m, ids)  # a mix of formats, read between batches

        report = m.reseal_legacy(batch=2, on_progress=between_batches)
        assert report["unreadable"] == 0 and report["memories"] >= 6 and report["events"] >= 8
        assert len(progress) >= 4
        _check_everything(m, ids)
    assert _legacy_rows(home) == (0, 0, 0)


def test_opening_an_old_store_reseals_it_and_keeps_keys_and_audit(
    v1_home: tuple[Path, dict[str, str]],
) -> None:
    home, ids = v1_home
    db = sqlite3.connect(home / "memvault.db")  # as the old version left it: no seal_version
    assert db.execute("SELECT count(*) FROM memories WHERE scope_id LIKE 'default/%'").fetchone()[0]
    db.close()
    with Memory(home, embedder=HashEmbedder()) as m:
        assert _legacy_rows(home) == (0, 0, 0)
        _check_everything(m, ids)
        assert m.audit.verify().ok
        assert m.reseal_legacy() == {"memories": 0, "events": 0, "unreadable": 0}
    with Memory(home, embedder=HashEmbedder()) as again:  # a later process: the same answers
        _check_everything(again, ids)
        # and a rotation and an erase on resealed rows behave
        again.rotate_user_key("alice")
        assert again.get(ids["alice_run"])["memory"] == "Alice runs on Sundays"
        again.erase_user("bob")
        assert again.get(ids["bob_chess"]) is None
    db = sqlite3.connect(home / "memvault.db")
    scope_ids = {r[0] for r in db.execute("SELECT scope_id FROM memories")}
    db.close()
    assert all(s.startswith("[") for s in scope_ids)


def test_an_old_store_gets_its_entities_with_rebuild(v1_home: tuple[Path, dict[str, str]]) -> None:
    """Rows written before entity links have none until ``rebuild_entities`` (``memvault
    entities rebuild``) extracts them, sealed under each row's own key; links then follow
    rotation and erase like any other row's."""
    home, ids = v1_home
    with Memory(home, embedder=HashEmbedder()) as m:
        assert m.entities(user_id="alice")["results"] == []
        assert m.related(ids["alice_tea"])["results"] == []
        done = m.rebuild_entities()
        assert done["memories"] >= len(EXPECTED) and done["skipped"] == 0
        names = {e["name"]: e["memories"] for e in m.entities(user_id="alice")["results"]}
        assert names["Alice"] == 3 and names["Lyon"] == 1
        linked = {r["id"] for r in m.related(ids["alice_tea"])["results"]}
        assert linked == {ids["alice_lyon"], ids["alice_run"]}
        assert m.rebuild_entities()["memories"] == 0
        m.rotate_user_key("alice")
        assert {r["id"] for r in m.related(ids["alice_tea"])["results"]} == linked
        assert m.entities(agent_id="planner")["results"]  # the agent's own key scope
