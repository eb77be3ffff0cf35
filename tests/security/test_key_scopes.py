"""Key scope ids are unambiguous by construction (finding 2): no user id can name another's key."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from memvault import HashEmbedder, Memory
from memvault.security.crypto import Binding, ScopeCipher
from memvault.security.keyscope import API_KEYS, AUDIT, KeyScope
from memvault.validation import Scope
from tests.server.conftest import RunningServer

# Owner ids built from the characters that made the old joined names ambiguous.
_tricky = st.text(
    alphabet=st.sampled_from(["#", "/", ":", "g", "2", '"', "\\", "[", ",", "a", "é", "\u2028"]),
    max_size=8,
) | st.text(max_size=8)
_scopes = st.builds(
    KeyScope,
    namespace=_tricky,
    kind=st.sampled_from(["user", "agent", "run", "system"]),
    owner=_tricky,
    generation=st.integers(min_value=1, max_value=12),
)


@given(_scopes, _scopes)
def test_distinct_key_scopes_never_share_an_id(a: KeyScope, b: KeyScope) -> None:
    assert (a.id == b.id) == (a == b)
    assert a.id.isascii()


@given(_scopes)
def test_an_id_is_the_canonical_json_of_its_parts(scope: KeyScope) -> None:
    assert json.loads(scope.id) == [scope.namespace, scope.kind, scope.owner, scope.generation]


def test_the_old_collision_is_two_ids_now() -> None:
    alice_g2 = KeyScope("default", "user", "alice", 2)
    impostor = KeyScope.of("default", Scope(user_id="alice#g2"))
    assert alice_g2.legacy_id == impostor.legacy_id  # what the old format did
    assert alice_g2.id != impostor.id
    assert API_KEYS.id != AUDIT.id and API_KEYS.legacy_id == "_system/api-keys"


def test_erasing_user_alice_g2_leaves_rotated_alice_readable(home: Path) -> None:
    """The reported attack: rotate alice, then the user ``alice#g2`` erases itself."""
    with Memory(home, embedder=HashEmbedder()) as m:
        ids = [m.add(f"alice fact {i}", user_id="alice")["results"][0]["id"] for i in range(3)]
        m.rotate_user_key("alice")  # alice's rows now under generation 2
        impostor = m.add("impostor fact", user_id="alice#g2")["results"][0]["id"]
        report = m.erase_user("alice#g2")
        assert report["memories_deleted"] == 1 and m.get(impostor) is None
        assert [m.get(i)["memory"] for i in ids] == [f"alice fact {i}" for i in range(3)]
        hits = m.search("alice fact 1", user_id="alice", top_k=3)["results"]
        assert hits and hits[0]["memory"] == "alice fact 1"
        assert len(m.get_all(user_id="alice")["results"]) == 3
    with Memory(home, embedder=HashEmbedder()) as fresh:  # and from a new process's view
        assert [fresh.get(i)["memory"] for i in ids] == [f"alice fact {i}" for i in range(3)]


def test_erase_through_a_key_bound_to_the_impostor_spares_alice(server: RunningServer) -> None:
    """Same scenario through the API: an API key bound to ``alice#g2`` erases its own user."""
    import httpx

    base, memory, admin = server.base_url, server.memory, server.admin_key
    alice = memory.add("alice keeps bees", user_id="alice")["results"][0]["id"]
    memory.rotate_user_key("alice")
    bound = memory.api_keys.create("default", "write", user_id="alice#g2").key
    headers = {"Authorization": f"Bearer {bound}"}
    added = httpx.post(
        f"{base}/v1/memories/",
        json={"messages": "impostor text", "user_id": "alice#g2"},
        headers=headers,
    )
    assert added.status_code == 200, added.text
    erased = httpx.delete(f"{base}/v1/users/alice%23g2/", headers=headers)
    assert erased.status_code == 200, erased.text
    assert erased.json()["memories_deleted"] == 1
    listed = httpx.post(
        f"{base}/v1/memories/list/",
        json={"user_id": "alice"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert listed.status_code == 200, listed.text
    assert memory.get(alice)["memory"] == "alice keeps bees"


def test_users_with_look_alike_ids_have_separate_keys(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        m.add("x", user_id="alice")
        m.rotate_user_key("alice")
        m.add("same words here", user_id="alice")
        m.add("same words here", user_id="alice#g2")
    db = sqlite3.connect(home / "memvault.db")
    rows = db.execute(
        "SELECT user_id, scope_id, hash FROM memories WHERE hash IN"
        " (SELECT hash FROM memories GROUP BY hash HAVING count(*) > 1)"
    ).fetchall()
    db.close()
    assert rows == []  # different dedup keys: the same text hashes differently


_maybe = st.none() | _tricky
_bindings = st.builds(Binding, _tricky, _maybe, _maybe, _maybe, _tricky)


@given(_tricky, _bindings, _tricky, _tricky, _bindings, _tricky)
def test_associated_data_is_injective(
    key_a: str, a: Binding, field_a: str, key_b: str, b: Binding, field_b: str
) -> None:
    """Two different (key id, namespace, owners, row, field) never share associated data, and a
    missing owner (None) differs from any string, "null" included."""
    ad_a = ScopeCipher(key_a, bytes(32))._associated(a, field_a, 2)
    ad_b = ScopeCipher(key_b, bytes(32))._associated(b, field_b, 2)
    assert (ad_a == ad_b) == ((key_a, a, field_a) == (key_b, b, field_b))
