"""A thief holding the Postgres data directory (heap files, indexes, WAL) finds no plaintext: no
text, metadata, keyword or vector of a memory, in any file the server wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg

from memvault import HashEmbedder, Memory

CANARY = "zanzibarquokka"  # one word, so the keyword index would hold it if it held words
META_CANARY = "xylophonewombat"


def _files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def test_no_plaintext_in_any_postgres_file(home: Path, pg_url: str) -> None:
    embedder = HashEmbedder()
    text = f"alice keeps her {CANARY} in the garden shed"
    with Memory(home, embedder=embedder, database_url=pg_url) as m:
        first = m.add(text, user_id="alice", metadata={"secret_word": META_CANARY})
        # Capitalised, it is also an entity: its name and key are sealed, its hash keyed.
        m.add(f"second note about {CANARY.title()}", user_id="alice")
        assert m.entities(user_id="alice")["results"] == [{"name": CANARY.title(), "memories": 1}]
        memory_id = first["results"][0]["id"]
        m.update(memory_id, f"alice moved her {CANARY} to the attic")
        assert m.search(CANARY, user_id="alice", mode="bm25")["results"]
        assert m.get_all(user_id="alice", filters={"secret_word": META_CANARY})["results"]
    floats = embedder.embed_batch([text])[0].astype("<f4")
    start = int(np.flatnonzero(floats)[0])  # a sparse vector: 8 floats from its first non-zero
    vector = floats[start : start + 8].tobytes()
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("CHECKPOINT")  # every page of the heap and indexes on disk now
        data_directory = Path(str(admin.execute("SHOW data_directory").fetchone()[0]))
    needles = {
        "text": CANARY.encode(),
        "metadata": META_CANARY.encode(),
        "text (UTF-16)": CANARY.encode("utf-16-le"),
        "entity name": CANARY.title().encode(),
        "vector": vector,
    }
    scanned, owner_seen = 0, False
    for path in _files(data_directory):
        try:
            content = path.read_bytes()
        except OSError:
            continue
        scanned += len(content)
        owner_seen = owner_seen or b"alice" in content
        for what, needle in needles.items():
            assert needle not in content, f"{what} in plaintext in {path}"
    assert scanned > 1_000_000  # the heap, the WAL and the catalog were read
    # The control: owner ids are plain columns by design (every read filters on them in SQL),
    # so the scan does find what is there.
    assert owner_seen


def _tables(url: str) -> dict[str, set[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema LIKE 'memvault%'"
        ).fetchall()
    found: dict[str, set[str]] = {}
    for schema, table in rows:
        found.setdefault(str(schema), set()).add(str(table))
    return found


def test_keys_live_apart_from_the_data(home: Path, pg_url: str) -> None:
    """A dump of the data schema (or database) holds no key: keys have a schema of their own,
    or a database of their own with MEMVAULT_KEYS_DATABASE_URL."""
    from tests.pg import fresh_database_url

    with Memory(home, embedder=HashEmbedder(), database_url=pg_url) as m:
        m.add("a fact", user_id="alice")
    tables = _tables(pg_url)
    assert "data_keys" in tables["memvault_keys"] and "memories" in tables["memvault"]
    assert not tables["memvault"] & {"data_keys", "master_checks", "key_generations"}
    assert not tables["memvault_keys"] & {"memories", "history", "api_keys", "audit_log"}

    data_url, keys_url = fresh_database_url(), fresh_database_url()
    other_home = home.parent / "other-home"
    with Memory(
        other_home, embedder=HashEmbedder(), database_url=data_url, keys_database_url=keys_url
    ) as m:
        memory_id = m.add("another fact", user_id="bob")["results"][0]["id"]
    assert set(_tables(data_url)) == {"memvault"}
    assert set(_tables(keys_url)) == {"memvault_keys"}
    with Memory(
        other_home, embedder=HashEmbedder(), database_url=data_url, keys_database_url=keys_url
    ) as m:
        assert m.get(memory_id)["memory"] == "another fact"
