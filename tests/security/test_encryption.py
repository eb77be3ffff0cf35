"""Encryption at rest: the database and its WAL hold no text, no words, no raw vectors."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest

from memvault import HashEmbedder, IntegrityError, Memory, WrongMasterKey
from memvault.retrieval.text import words

CANARY = "Zebulon Quackenbush hides the vault combination under marigolds"
META_CANARY = "xylophonist-thunderclap"


def raw_bytes(home: Path) -> bytes:
    blobs = b""
    for path in sorted(home.iterdir()):
        if path.name.startswith("memvault.db"):
            blobs += path.read_bytes()
    return blobs


def test_canary_text_words_metadata_and_vector_never_hit_the_disk(home: Path) -> None:
    embedder = HashEmbedder()
    with Memory(home, embedder=embedder) as m:
        memory_id = m.add(CANARY, user_id="alice", metadata={"note": META_CANARY})["results"][0][
            "id"
        ]
        m.update(memory_id, CANARY + " and the garage")
        m.add("a follow-up so the canary is in someone's context window", user_id="alice")
        assert m.search("marigolds", user_id="alice")["results"]
        # The name is an entity too: sealed on the row, in the index only as a keyed hash.
        assert {"name": "Zebulon Quackenbush", "memories": 1} in m.entities(user_id="alice")[
            "results"
        ]
        # Read the files while the WAL still holds the pages: both files must be clean.
        assert (home / "memvault.db-wal").stat().st_size > 0
        data = raw_bytes(home)
    lowered = data.lower()
    assert CANARY.encode() not in data
    assert b"zebulon quackenbush" not in lowered
    for word in set(CANARY.lower().split()) | set(words(CANARY)) | {META_CANARY}:
        if len(word) >= 5:
            assert word.encode() not in lowered, word
    vector = embedder.embed_batch([CANARY])[0]
    assert vector.astype("<f4").tobytes() not in data
    assert vector.astype("<f4").tobytes()[:64] not in data
    assert vector.astype("<f8").tobytes()[:64] not in data


def test_files_are_private(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        m.add("private", user_id="u")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for path in home.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_wrong_master_key_is_refused_and_touches_nothing(home: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    with Memory(home, embedder=HashEmbedder(), master_key=key) as m:
        m.add("sealed with the first key", user_id="u")
    before = {p.name: p.read_bytes() for p in home.iterdir() if not p.name.endswith("-shm")}
    other = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(WrongMasterKey) as caught:
        Memory(home, embedder=HashEmbedder(), master_key=other)
    assert other not in str(caught.value) and key not in str(caught.value)
    with pytest.raises(WrongMasterKey):
        Memory(home, embedder=HashEmbedder())  # no key at all: no key file is made for an old store
    assert not (home / "master.key").exists()
    after = {p.name: p.read_bytes() for p in home.iterdir() if not p.name.endswith("-shm")}
    assert after == before
    with Memory(home, embedder=HashEmbedder(), master_key=key) as m:
        assert m.get_all(user_id="u")["results"][0]["memory"] == "sealed with the first key"


def test_a_ciphertext_moved_to_another_row_fails_loudly(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        first = m.add("first memory", user_id="u")["results"][0]["id"]
        second = m.add("second memory", user_id="u")["results"][0]["id"]
    db = sqlite3.connect(home / "memvault.db")
    db.execute(
        "UPDATE memories SET text_box = (SELECT text_box FROM memories WHERE id = ?) WHERE id = ?",
        (first, second),
    )
    db.commit()
    db.close()
    with Memory(home, embedder=HashEmbedder()) as m:
        assert m.get(first)["memory"] == "first memory"
        with pytest.raises(IntegrityError):
            m.get(second)


def test_a_flipped_bit_in_metadata_is_an_integrity_error_even_inside_a_filter(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        memory_id = m.add("tagged", user_id="u", metadata={"tag": "a"})["results"][0]["id"]
    db = sqlite3.connect(home / "memvault.db")
    box = bytearray(
        db.execute("SELECT metadata_box FROM memories WHERE id = ?", (memory_id,)).fetchone()[0]
    )
    box[-1] ^= 1
    db.execute("UPDATE memories SET metadata_box = ? WHERE id = ?", (bytes(box), memory_id))
    db.commit()
    db.close()
    with Memory(home, embedder=HashEmbedder()) as m:
        with pytest.raises(IntegrityError):
            m.get_all(user_id="u", filters={"tag": "a"})


def test_each_user_has_their_own_data_key(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        m.add("same words here", user_id="alice")
        m.add("same words here", user_id="bob")
    db = sqlite3.connect(home / "memvault.db")
    bodies = [row[0] for row in db.execute("SELECT body FROM memories_fts")]
    hashes = [row[0] for row in db.execute("SELECT hash FROM memories")]
    keys = (
        sqlite3.connect(home / "keys.db")
        .execute(
            "SELECT scope_id FROM data_keys WHERE scope_id NOT LIKE '[\"\\_system\",%' ESCAPE '\\'"
        )
        .fetchall()
    )
    assert len(set(bodies)) == 2 and len(set(hashes)) == 2
    assert sorted(k[0] for k in keys) == [
        '["default","user","alice",1]',
        '["default","user","bob",1]',
    ]
    assert np.all([not any(w in b for w in ("same", "words")) for b in bodies])
