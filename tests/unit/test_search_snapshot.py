"""A search over several key scopes answers from one moment: when a scope's version moves while
it runs (a key rotation moving rows from one generation to the next between the reads of the
two indexes), it runs again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from memvault import HashEmbedder, Memory
from memvault.retrieval import hybrid


def test_a_search_whose_scopes_moved_meanwhile_runs_again(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        for user in ("u1", "u2"):
            m.add(f"the agent helped {user} with taxes", user_id=user, agent_id="helper")
        searcher = m._get_searcher()
        store = m.engine.store
        real_version = store.scope_version
        passes: list[dict[str, int]] = []
        real_once = searcher._search_once

        def once(*args: Any, **kwargs: Any) -> tuple[list[Any], dict[str, int]]:
            hits, versions = real_once(*args, **kwargs)
            passes.append(versions)
            return hits, versions

        moved = {"left": 1}

        def version(scope_id: str) -> int:
            # The check after the first pass sees one scope's version moved (as a rotation's
            # batch commit would make it); later reads see it settled.
            if len(passes) == 1 and moved["left"]:
                moved["left"] -= 1
                return real_version(scope_id) + 1
            return real_version(scope_id)

        monkeypatch.setattr(searcher, "_search_once", once)
        monkeypatch.setattr(store, "scope_version", version)
        hits = m.search("taxes", agent_id="helper", top_k=5)["results"]
        assert {hit["user_id"] for hit in hits} == {"u1", "u2"}
        assert len(passes) == 2 and len(passes[0]) == 2  # two key scopes, searched twice

        passes.clear()
        m.search("taxes", user_id="u1", top_k=5)  # one key scope: nothing to check
        assert len(passes) == 1


def test_a_search_that_never_settles_stops_after_its_tries(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        for user in ("u1", "u2"):
            m.add(f"the agent helped {user} with taxes", user_id=user, agent_id="helper")
        store = m.engine.store
        real_version = store.scope_version
        calls = {"n": 0}

        def always_moving(scope_id: str) -> int:
            calls["n"] += 1
            return real_version(scope_id) + calls["n"]

        monkeypatch.setattr(store, "scope_version", always_moving)
        hits = m.search("taxes", agent_id="helper", top_k=5)["results"]
        assert len(hits) == 2  # still answers, from its last pass
        # each pass reads each of the 2 versions once, then checks them once
        assert calls["n"] <= hybrid.SNAPSHOT_TRIES * 2 * 2 + 2
