"""A large scope's HNSW graph kept sealed on disk between runs (issue 16, cold start).

A restart loads the sealed graph instead of building it; the file holds no plaintext; a tampered,
swapped or stale file is not used (the graph is built again); erase and key rotation delete it,
and an old copy does not open under the new key.
"""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

from memvault import Memory
from memvault.retrieval import ann, vector_index
from memvault.retrieval.graph_files import FORMAT
from memvault.validation import Scope
from tests.polling import wait_for

pytestmark = pytest.mark.skipif(not ann.available(), reason="the ann extra (usearch) is missing")

THRESHOLD = 40
CANARY = "canary zebra quartz 7731 lives at the lighthouse"
QUESTION = "note about topic 3"


def _texts(user: str) -> list[dict[str, object]]:
    texts = [f"note {i} about topic {i % 9} and colour {i % 5}" for i in range(59)] + [CANARY]
    return [{"messages": text, "user_id": user} for text in texts]


def _open(home: Path, **options: str) -> Memory:
    return Memory(str(home), embedder="hash", ann_threshold=THRESHOLD, **options)


def _graphs(home: Path) -> list[Path]:
    return sorted((home / "ann").glob("*.graph"))


def _search(m: Memory, user: str = "alice") -> list[str]:
    hits = m.search(QUESTION, user_id=user, mode="vector", top_k=5)["results"]
    return [hit["id"] for hit in hits]


def _built_and_saved(m: Memory, user: str = "alice", saved: int = 1) -> list[str]:
    """Search (which starts the background build), wait until the graph is saved."""
    _search(m, user)
    wait_for(lambda: m.engine.cache.stats()["saved"] == saved, 60, "the graph saved")
    return _search(m, user)


def _scope(user: str) -> Scope:
    return Scope(user_id=user, agent_id=None, run_id=None)


def _with_version(data: bytes, version: bytes) -> bytes:
    """A file whose plain version header is replaced (anyone can edit it: it is bound too)."""
    head = len(FORMAT)
    return data[:head] + version + data[head + 8 :]


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_restart_loads_sealed_graph_without_building_and_file_has_no_plaintext(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    """The graph files live beside the store in the node's home: the same on Postgres."""
    options = {"database_url": request.getfixturevalue("pg_url")} if store == "postgres" else {}
    with _open(tmp_path, **options) as m:
        added = m.add_many(_texts("alice"))["results"]
        before = _built_and_saved(m)
        assert m.engine.cache.stats()["built"] == 1
        canary = m.embedder.embed_batch([CANARY])[0].astype(np.float32)
    (path,) = _graphs(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert "alice" not in path.name
    data = path.read_bytes()
    for needle in (
        CANARY.encode(),
        b"lighthouse",
        b"alice",
        canary.tobytes(),
        canary[:8].tobytes(),
        np.round(canary * 127).astype(np.int8)[:16].tobytes(),
    ):
        assert needle not in data
    # The graph's own bytes are sealed: no library header, no memory id. (Needles of 7 bytes
    # or more: a random ciphertext of this size holds a given 3-byte string about 3% of runs.)
    assert b"USearch" not in data and b"usearch" not in data
    assert not any(item["id"].encode() in data for item in added)

    with _open(tmp_path, **options) as m:
        _search(m)
        wait_for(lambda: m.engine.cache.stats()["loaded"] == 1, 60, "the graph loaded")
        assert _search(m) == before
        assert m.engine.cache.stats() == {
            "built": 0,
            "loaded": 1,
            "caught_up": 0,
            "stale": 0,
            "refused": 0,
            "saved": 0,
        }


def test_tampered_or_swapped_file_is_refused_and_rebuilt(tmp_path: Path) -> None:
    with _open(tmp_path) as m:
        m.add_many(_texts("alice"))
        _built_and_saved(m)
    (alice,) = _graphs(tmp_path)
    with _open(tmp_path) as m:
        m.add_many(_texts("bob"))
        _built_and_saved(m, "bob")
    (bob,) = set(_graphs(tmp_path)) - {alice}
    original = alice.read_bytes()

    # Bob's file (same format, and the same version if the counters agree) in Alice's place.
    alice.write_bytes(_with_version(bob.read_bytes(), original[len(FORMAT) : len(FORMAT) + 8]))
    # And one flipped byte of Alice's own box.
    flipped = bytearray(original)
    flipped[-20] ^= 0x01
    for forged in (alice.read_bytes(), bytes(flipped)):
        alice.write_bytes(forged)
        with _open(tmp_path) as m:
            _search(m)
            wait_for(lambda m=m: m.engine.cache.stats()["saved"] == 1, 60, "the graph rebuilt")
            stats = m.engine.cache.stats()
            assert (stats["refused"], stats["built"], stats["loaded"]) == (1, 1, 0)
        assert alice.read_bytes() not in (forged, original)  # written anew


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_file_behind_later_writes_is_caught_up_and_sealed_again(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    """A file written before some writes is not trusted as it is: the rows added, updated or
    deleted since are patched in from the store, and the file is written anew."""
    options = {"database_url": request.getfixturevalue("pg_url")} if store == "postgres" else {}
    with _open(tmp_path, **options) as m:
        m.add_many(_texts("alice"))
        _built_and_saved(m)
    (path,) = _graphs(tmp_path)
    written = path.read_bytes()
    with _open(tmp_path, **options) as m:  # writes after the graph was saved (cache not loaded)
        added = m.add("note about topic 3", user_id="alice")["results"][0]["id"]
        rows = m.get_all(user_id="alice", top_k=100)["results"]
        m.delete(next(hit["id"] for hit in rows if hit["memory"].startswith("note 3 ")))
        # An update gives a row a new vector: the graph's old int8 vector must not answer.
        updated = next(hit["id"] for hit in rows if hit["memory"].startswith("note 8 "))
        m.update(updated, text=QUESTION + " and topic 3 again")
        version = m.engine.store.scope_version(m.engine.codec.live_scopes(_scope("alice"))[0])
    with _open(tmp_path, **options) as m:
        found = _search(m)
        wait_for(lambda: m.engine.cache.stats()["saved"] == 1, 60, "the graph sealed again")
        stats = m.engine.cache.stats()
        assert (stats["caught_up"], stats["built"], stats["loaded"], stats["stale"]) == (1, 0, 0, 0)
        (index,) = m._cache._entries.values()
        assert index.uses_graph and index.compact and index.graph is not None
        assert index.graph.size == 60  # 60 loaded, one added, one deleted
        assert index.graph.removed >= 2  # the deleted row and the updated row's old vector
        assert set(found[:2]) == {added, updated} and _search(m) == found
    assert path.read_bytes() != written
    assert int.from_bytes(path.read_bytes()[len(FORMAT) : len(FORMAT) + 8], "big") == version
    with _open(tmp_path, **options) as m:  # the file written anew is current: loaded as it is
        assert _search(m) == found
        wait_for(lambda: m.engine.cache.builds == 1, 60, "the graph loaded")
        assert m.engine.cache.stats()["loaded"] == 1


def test_file_behind_by_most_rows_is_stale_and_rebuilt(tmp_path: Path) -> None:
    with _open(tmp_path) as m:
        m.add_many(_texts("alice"))
        _built_and_saved(m)
    with _open(tmp_path) as m:  # most rows deleted and others added since the file
        for hit in m.get_all(user_id="alice", top_k=100)["results"][:40]:
            m.delete(hit["id"])
        m.add_many(
            [
                {"messages": f"fresh memo {i} about topic {i % 9}", "user_id": "alice"}
                for i in range(30)
            ]
        )
    with _open(tmp_path) as m:
        found = _search(m)
        wait_for(lambda: m.engine.cache.stats()["saved"] == 1, 60, "the graph rebuilt")
        stats = m.engine.cache.stats()
        assert (stats["stale"], stats["built"], stats["loaded"], stats["caught_up"]) == (1, 1, 0, 0)
        assert _search(m) == found


def test_truncated_empty_or_unreadable_file_is_refused_and_rebuilt(tmp_path: Path) -> None:
    with _open(tmp_path) as m:
        m.add_many(_texts("alice"))
        before = _built_and_saved(m)
    (path,) = _graphs(tmp_path)
    whole = path.read_bytes()
    for broken in (whole[: len(whole) // 2], whole[:-1], whole[: len(FORMAT) + 3], b""):
        path.write_bytes(broken)
        with _open(tmp_path) as m:
            assert _search(m) == before
            wait_for(lambda m=m: m.engine.cache.stats()["saved"] == 1, 60, "the graph rebuilt")
            stats = m.engine.cache.stats()
            assert (stats["refused"], stats["built"], stats["loaded"]) == (1, 1, 0)
            assert _search(m) == before
        assert path.read_bytes() != broken  # written anew, whole
    # A directory where the file should be: not read, not trusted; the search still answers.
    path.unlink()
    path.mkdir()
    with _open(tmp_path) as m:
        assert _search(m) == before
        wait_for(lambda: m.engine.cache.builds == 1, 60, "the background job")
        stats = m.engine.cache.stats()
        assert (stats["refused"], stats["loaded"]) == (1, 0)
        assert _search(m) == before


def test_graph_patched_by_many_writes_is_sealed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vector_index, "RESEAL_CHANGES", 5)
    with _open(tmp_path) as m:
        m.add_many(_texts("alice"))
        _built_and_saved(m)
        (path,) = _graphs(tmp_path)
        first = path.read_bytes()
        m.add_many([{"messages": f"memo {i} on topic 3", "user_id": "alice"} for i in range(4)])
        _search(m)
        assert m.engine.cache.stats()["saved"] == 1 and path.read_bytes() == first  # 4 < 5
        m.add("one more memo on topic 3", user_id="alice")
        wait_for(lambda: m.engine.cache.stats()["saved"] == 2, 60, "the graph sealed again")
        found = _search(m)
    assert path.read_bytes() != first
    with _open(tmp_path) as m:
        assert _search(m) == found
        wait_for(lambda: m.engine.cache.builds == 1, 60, "the graph loaded")
        stats = m.engine.cache.stats()
        assert (stats["loaded"], stats["caught_up"], stats["built"]) == (1, 0, 0)


def test_erase_deletes_the_graph_and_an_old_copy_does_not_open(tmp_path: Path) -> None:
    with _open(tmp_path) as m:
        m.add_many(_texts("alice"))
        _built_and_saved(m)
        (path,) = _graphs(tmp_path)
        old = path.read_bytes()
        m.erase_user("alice")
        assert _graphs(tmp_path) == []
        m.add_many(_texts("alice"))  # a new key for the same user
        _built_and_saved(m, saved=2)
    (current,) = _graphs(tmp_path)
    version = current.read_bytes()[len(FORMAT) : len(FORMAT) + 8]
    current.write_bytes(_with_version(old, version))
    with _open(tmp_path) as m:
        _search(m)
        wait_for(lambda: m.engine.cache.stats()["saved"] == 1, 60, "the graph rebuilt")
        stats = m.engine.cache.stats()
        assert (stats["refused"], stats["loaded"]) == (1, 0)


def test_key_rotation_deletes_the_graph_and_an_old_copy_does_not_open(tmp_path: Path) -> None:
    with _open(tmp_path) as m:
        m.add_many(_texts("alice"))
        before = _built_and_saved(m)
        (path,) = _graphs(tmp_path)
        old = path.read_bytes()
        m.rotate_user_key("alice")
        assert _graphs(tmp_path) == []
        assert _built_and_saved(m, saved=2) == before
    (current,) = _graphs(tmp_path)
    assert current != path  # the new key generation is another scope
    version = current.read_bytes()[len(FORMAT) : len(FORMAT) + 8]
    current.write_bytes(_with_version(old, version))
    with _open(tmp_path) as m:
        assert _search(m) == before
        wait_for(lambda: m.engine.cache.stats()["saved"] == 1, 60, "the graph rebuilt")
        stats = m.engine.cache.stats()
        assert (stats["refused"], stats["loaded"]) == (1, 0)


def test_reset_deletes_the_namespaces_graph_files(tmp_path: Path) -> None:
    with _open(tmp_path) as m:
        m.add_many(_texts("alice"))
        _built_and_saved(m)
        other = m.namespaced("tenant-two")
        other.add_many(_texts("bob"))
        _search(other, "bob")
        wait_for(lambda: m.engine.cache.stats()["saved"] == 2, 60, "both graphs saved")
        assert len(_graphs(tmp_path)) == 2
        m.reset()
        assert len(_graphs(tmp_path)) == 1  # the other namespace's graph stays
        assert len(_search(other, "bob")) == 5


def test_write_while_the_file_loads_reads_it_again_instead_of_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _open(tmp_path) as m:
        m.add_many(_texts("alice"))
        _built_and_saved(m)
    with _open(tmp_path) as m:
        files = m._cache._files
        assert files is not None
        real = files.load
        calls: list[int] = []

        def load(*args: object) -> object:
            found = real(*args)  # type: ignore[arg-type]
            calls.append(1)
            if len(calls) == 1:  # a write lands while the file is being read
                m.add("a memo written during the load about topic 3", user_id="alice")
            return found

        monkeypatch.setattr(files, "load", load)
        _search(m)
        wait_for(lambda: m._cache.builds == 1, 60, "the background job")
        stats = m.engine.cache.stats()
        assert len(calls) == 2 and stats["built"] == 0
        assert stats["loaded"] + stats["caught_up"] == 2
        (index,) = m._cache._entries.values()
        assert index.uses_graph and index.graph is not None and index.graph.size == 61
