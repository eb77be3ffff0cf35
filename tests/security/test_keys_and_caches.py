"""Keys and in-process caches: legacy key names come from rows only, caches follow the key store
and stay within byte budgets, and cached query vectors are per caller."""

from __future__ import annotations

from pathlib import Path

from memvault import HashEmbedder, Memory
from memvault.lru import ByteLRU, memoize
from memvault.retrieval import text
from memvault.security.keyscope import KeyScope
from tests.security.test_review2 import CountingEmbedder, _legacy_store_where_alice_was_rotated

LEGACY = "default/user:alice#g2"


def test_the_lru_holds_its_byte_budget_and_skips_oversized_entries() -> None:
    cache: ByteLRU[str, str] = ByteLRU(max_bytes=1000, max_entries=100, size=lambda k, v: len(v))
    for i in range(10):
        cache.put(f"k{i}", "x" * 300)
    info = cache.cache_info()
    assert info.bytes <= 1000 and info.currsize == 3
    assert cache.get("k9") is not None and cache.get("k0") is None
    cache.put("huge", "x" * 5000)
    assert cache.get("huge") is None and cache.cache_info().bytes <= 1000


def test_memoize_bounds_entries_too() -> None:
    calls: list[str] = []

    def double(value: str) -> str:
        calls.append(value)
        return value * 2

    cached = memoize(double, max_bytes=10**6, max_entries=2)
    for value in ("a", "b", "a", "c", "a"):
        assert cached(value) == value * 2
    assert calls == ["a", "b", "c"]
    assert cached.cache_info().currsize == 2


def test_a_long_word_is_stemmed_but_not_cached() -> None:
    text._stem.cache_clear()
    word = "b" * 5000
    assert text.words(word) == [word]
    assert text._stem.cache_info().currsize == 0


def test_erase_destroys_the_legacy_key_its_own_rows_name(home: Path) -> None:
    _legacy_store_where_alice_was_rotated(home)
    with Memory(home, embedder=HashEmbedder(), reseal_on_open=False) as m:
        assert m._keyring.has(LEGACY)
        m.erase_user("alice")
        assert not m._keyring.has(LEGACY)


def test_a_write_before_reseal_adopts_the_key_the_owners_rows_name(home: Path) -> None:
    alice = _legacy_store_where_alice_was_rotated(home)
    with Memory(home, embedder=HashEmbedder(), reseal_on_open=False) as m:
        m.add("alice also keeps goats", user_id="alice")
        old = m._keyring.cipher(LEGACY)
        new = m._keyring.cipher(KeyScope("default", "user", "alice", 2).id)
        assert old is not None and new is not None and old.data_key == new.data_key
        assert m.reseal_legacy()["unreadable"] == 0
        assert m.get(alice)["memory"] == "alice keeps bees"


def test_an_erase_elsewhere_drops_the_vector_index_and_decrypted_metadata_here(
    home: Path,
) -> None:
    with Memory(home, embedder=HashEmbedder()) as server:
        server.add("alice keeps bees", user_id="alice", metadata={"topic": "hobby"})
        server.add("bob keeps cats", user_id="bob")
        server.search("bees", user_id="alice")
        server.get_all(user_id="alice", filters={"topic": "hobby"})
        key_id = KeyScope("default", "user", "alice").id
        assert server._store._decrypt_metadata.cache_info().currsize > 0
        with Memory(home, embedder=HashEmbedder()) as cli:
            cli.erase_user("alice")
        server.search("cats", user_id="bob")
        assert server._store._decrypt_metadata.cache_info().currsize == 0
        assert key_id not in server._cache._entries


def test_the_same_caller_repeating_a_query_is_served_from_the_cache(home: Path) -> None:
    embedder = CountingEmbedder()
    with Memory(home, embedder=embedder) as m:
        m.add("x", user_id="alice")
        embedder.seen.clear()
        m.search("bees", user_id="alice")
        m.search("bees", user_id="alice")
        m.search("bees", user_id="bob")
    assert embedder.seen.count("bees") == 2
