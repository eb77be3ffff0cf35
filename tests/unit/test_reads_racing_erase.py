"""A read that takes rows just before an erase commits (on this node or another) and their data
key just after answers as if it had started after the erase, instead of failing with
``integrity_error`` ("no data key for the scope of ..."): erase destroys the key first, then
deletes the rows, and rows and keys are read in separate transactions. A key that stays missing
(a tampered ``scope_id``) still fails closed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memvault import HashEmbedder, Memory, Settings
from memvault.errors import IntegrityError
from memvault.validation import Scope

SECRET = "carol keeps the spare key under the third flowerpot"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, home: Path) -> Iterator[Memory]:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        settings = Settings.load(home=home, embedder="hash", database_url=url)
        memory = Memory(settings=settings, embedder=HashEmbedder())
    else:
        memory = Memory(home, embedder=HashEmbedder())
    with memory:
        yield memory


# The store read each path makes first, and the read itself.
READS: dict[str, tuple[str, Callable[[Memory, str], Any]]] = {
    "get": ("get", lambda m, memory_id: m.get(memory_id)),
    "get_all": ("list_rows", lambda m, _: m.get_all(user_id="carol")["results"]),
    "get_page": ("page_rows", lambda m, _: m.get_page(user_id="carol")[0]),
    "search": ("get_many", lambda m, _: m.search("flowerpot", user_id="carol")["results"]),
    "history": ("history", lambda m, memory_id: m.history(memory_id)),
}


@pytest.mark.parametrize("path", sorted(READS))
def test_a_read_racing_an_erase_answers_as_after_it(
    store: Memory, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory_id = store.add(SECRET, user_id="carol")["results"][0]["id"]
    store.add("dan's note", user_id="dan")
    assert READS[path][1](store, memory_id)  # warm: the key is cached, the index loaded
    method, read = READS[path]
    real = getattr(store._store, method)
    erased: list[dict[str, Any]] = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        if not erased:  # the erase commits between the row read and the key read
            erased.append(store.erase_user("carol"))
        return found

    monkeypatch.setattr(store._store, method, racing)
    answer = read(store, memory_id)
    assert erased and erased[0]["data_key_destroyed"]
    assert not answer  # None, [] : the memory is gone, as after the erase
    assert SECRET not in repr(answer)
    assert store.get_all(user_id="dan")["results"][0]["memory"] == "dan's note"


def test_a_key_that_stays_missing_still_fails_closed(store: Memory) -> None:
    memory_id = store.add(SECRET, user_id="carol")["results"][0]["id"]
    # The row names a key that is gone for good (as a tampered scope_id would).
    owner = store._engine.key_scope(Scope(user_id="carol"))
    store._engine.keyring.destroy(store._engine.keyring.current(owner).id)
    with pytest.raises(IntegrityError):
        store.get(memory_id)
    with pytest.raises(IntegrityError):
        store.get_all(user_id="carol")
