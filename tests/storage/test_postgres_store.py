"""The Postgres backend against its protocols, with hand-made sealed rows (random bytes).

The store never decrypts but metadata, through the callback; here a row's ``metadata_box`` is its
metadata JSON in UTF-8, and the callback returns it decoded.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from memvault.errors import FilterTooExpensive, MemvaultError, StorageError
from memvault.filters import COLUMNS, matches, parse_filter
from memvault.storage.base import DataStore, KeyStore
from memvault.storage.postgres import PostgresKeyStore, PostgresStore
from memvault.storage.postgres.errors import StorageBusy, translate
from memvault.storage.postgres.migrations import MIGRATIONS
from memvault.storage.rows import (
    RULE_DEFAULTS,
    ApiKeyRow,
    AuditRow,
    HistoryRow,
    IndexTerms,
    MemoryRow,
    VectorRow,
    WrappedKey,
)
from memvault.validation import Scope

NS = "acme"
NOW = "2026-06-01T00:00:00+00:00"
PAST = "2026-01-01T00:00:00+00:00"
FUTURE = "2027-01-01T00:00:00+00:00"


def _decrypt(
    scope_id: str,
    memory_id: str,
    box: bytes,
    namespace: str,
    owners: tuple[str | None, str | None, str | None],
    seal_version: int,
) -> str:
    return box.decode()


_counter = iter(range(1, 10**9))


def make_row(
    scope: Scope,
    *,
    namespace: str = NS,
    scope_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    expires_at: str | None = None,
    seal_version: int = 2,
    **columns: Any,
) -> MemoryRow:
    n = next(_counter)
    values: dict[str, Any] = {
        "rowid": None,
        "id": columns.pop("id", f"m{n:06d}"),
        "namespace": namespace,
        "scope_id": scope_id or f"k:{scope.user_id or scope.agent_id or scope.run_id}",
        "user_id": scope.user_id,
        "agent_id": scope.agent_id,
        "run_id": scope.run_id,
        "actor_id": None,
        "role": None,
        "memory_type": "semantic",
        "hash": uuid.uuid4().hex,
        "text_box": os.urandom(40),
        "metadata_box": json.dumps(metadata or {}).encode(),
        "vector_box": os.urandom(64),
        "context_box": os.urandom(16),
        "created_at": f"2026-05-01T00:00:{n % 60:02d}+00:00",
        "updated_at": f"2026-05-01T00:00:{n % 60:02d}+00:00",
        "expires_at": expires_at,
        "importance": None,
        "seal_version": seal_version,
    }
    values.update(columns)
    return MemoryRow(**values)


def make_event(row: MemoryRow, event: str, **columns: Any) -> HistoryRow:
    values: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "memory_id": row.id,
        "namespace": row.namespace,
        "scope_id": row.scope_id,
        "user_id": row.user_id,
        "agent_id": row.agent_id,
        "run_id": row.run_id,
        "event": event,
        "old_box": None,
        "new_box": os.urandom(20),
        "actor_id": None,
        "role": None,
        "created_at": NOW,
        "seal_version": row.seal_version,
    }
    values.update(columns)
    return HistoryRow(**values)


TERMS = IndexTerms("aa bb", "cc")


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_url, decrypt_metadata=_decrypt, pool_max=4)
    yield s
    s.close()


@pytest.fixture
def keys(pg_url: str) -> Iterator[PostgresKeyStore]:
    k = PostgresKeyStore(pg_url)
    yield k
    k.close()


def insert(store: PostgresStore, *rows: MemoryRow) -> None:
    with store.transaction() as tx:
        for row in rows:
            tx.insert(row, TERMS)


def test_protocols(store: PostgresStore, keys: PostgresKeyStore) -> None:
    data: DataStore = store
    key_store: KeyStore = keys
    assert data.backend == "postgres" and key_store.changes() > 0


# --- memories ---------------------------------------------------------------------------------


def test_insert_get_rewrite_delete(store: PostgresStore) -> None:
    row = make_row(Scope("alice"), metadata={"a": 1})
    insert(store, row)
    assert row.rowid is not None
    got = store.get(NS, row.id)
    assert got == row
    assert store.get("other", row.id) is None
    assert store.get_many(NS, [row.id, "nope"]) == {row.id: row}
    assert store.get_many(NS, []) == {}

    row.scope_id, row.seal_version, row.hash = "k:new", 2, "h2"
    row.text_box, row.metadata_box = b"t2", b"{}"
    row.vector_box, row.context_box, row.updated_at = b"v2", b"c2", NOW
    with store.transaction() as tx:
        locked = tx.get(NS, row.id)
        assert locked is not None and locked.hash != "h2"
        tx.rewrite(row, IndexTerms("new", "terms"))
    assert store.get(NS, row.id) == row
    vectors: list[VectorRow] = []
    store.scope_vectors("k:new", vectors.extend)
    assert [(v.body, v.context, v.vector_box) for v in vectors] == [("new", "terms", b"v2")]
    with store.transaction() as tx:
        tx.rewrite(row, None)  # the index entry stays
    vectors.clear()
    store.scope_vectors("k:new", vectors.extend)
    assert vectors[0].body == "new"

    store.touch(NS, [row.id], NOW)
    touched = store.get(NS, row.id)
    assert touched is not None and touched.access_count == 1 and touched.last_accessed_at == NOW

    with store.transaction() as tx:
        tx.delete(row)
    assert store.get(NS, row.id) is None


def test_a_failing_transaction_leaves_nothing(store: PostgresStore) -> None:
    row = make_row(Scope("alice"))
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.insert(row, TERMS)
        tx.bump_version(row.scope_id)
        raise RuntimeError("boom")
    assert store.get(NS, row.id) is None
    assert store.scope_version(row.scope_id) == 0


def test_history_is_ordered_per_memory(store: PostgresStore) -> None:
    a, b = make_row(Scope("alice")), make_row(Scope("alice", "bot"))
    insert(store, a, b)
    # Ids sort against insertion order: history follows insertion, not ids.
    events = [
        make_event(a, "ADD", id="z1"),
        make_event(b, "ADD", id="y1"),
        make_event(a, "UPDATE", id="a2"),
        make_event(a, "DELETE", id="m3"),
    ]
    with store.transaction() as tx:
        for event in events:
            tx.add_history(event)
    assert [e.event for e in store.history(NS, a.id)] == ["ADD", "UPDATE", "DELETE"]
    assert store.history(NS, a.id)[0] == events[0]
    assert store.history("other", a.id) == []
    of_user = store.history_of_user(NS, "alice")
    assert [(e.memory_id, e.id) for e in of_user] == [
        (a.id, "z1"),
        (a.id, "a2"),
        (a.id, "m3"),
        (b.id, "y1"),
    ]
    moved = events[2]
    moved.scope_id, moved.seal_version, moved.old_box, moved.new_box = "k:x", 2, b"o", None
    with store.transaction() as tx:
        tx.rewrite_event(moved)
        assert tx.events_under_key(NS, "alice", "k:x", 10) == [moved]
    assert store.history(NS, a.id)[1] == moved
    assert store.user_rows(NS, "alice") == (2, 4)


def test_dedup_lookup_and_unique_index(store: PostgresStore) -> None:
    row = make_row(Scope(None, "bot"), hash="same")
    insert(store, row)
    with store.transaction() as tx:
        assert tx.find_duplicate(make_row(Scope(None, "bot"), hash="same")) == row.id
        assert tx.find_duplicate(make_row(Scope("u", "bot"), hash="same")) is None
        assert tx.find_duplicate(make_row(Scope(None, "bot", "r"), hash="same")) is None
        assert tx.find_duplicate(make_row(Scope(None, "bot"), hash="other")) is None
        keys = [
            (None, "bot", None, "same"),
            ("u", "bot", None, "same"),
            (None, "bot", "r", "same"),
            (None, "bot", None, "other"),
        ]
        assert tx.find_duplicates(row.namespace, keys) == {keys[0]: row.id}
        assert tx.find_duplicates("another-namespace", keys) == {}
        assert tx.find_duplicates(row.namespace, []) == {}
    with pytest.raises(StorageError) as caught:
        insert(store, make_row(Scope(None, "bot"), hash="same"))
    assert "23505" in str(caught.value)


def test_scope_queries_with_absent_owner_columns(store: PostgresStore) -> None:
    only_user = make_row(Scope("alice"))
    user_agent = make_row(Scope("alice", "bot"))
    only_agent = make_row(Scope(None, "bot"))
    agent_run = make_row(Scope(None, "bot", "r1"))
    other_ns = make_row(Scope("alice"), namespace="other")
    insert(store, only_user, user_agent, only_agent, agent_run, other_ns)

    def ids(rows: list[MemoryRow]) -> list[str]:
        return [r.id for r in rows]

    assert ids(store.list_rows(NS, Scope("alice"), None, now=None, limit=10)) == [
        user_agent.id,
        only_user.id,
    ]
    assert ids(store.list_rows(NS, Scope(None, "bot"), None, now=None, limit=-1)) == [
        agent_run.id,
        only_agent.id,
        user_agent.id,
    ]
    assert ids(
        store.list_rows(NS, Scope(None, "bot"), None, now=None, limit=1, newest_first=False)
    ) == [user_agent.id]
    assert ids(store.list_rows(NS, Scope(None, "bot"), None, now=None, limit=5, offset=2)) == [
        user_agent.id
    ]
    with store.transaction() as tx:
        assert ids(tx.recent_rows(NS, Scope(None, "bot"), 10)) == [only_agent.id]
        assert ids(tx.recent_rows(NS, Scope("alice"), 10)) == [only_user.id]
        assert ids(tx.scope_rows(NS, Scope(None, "bot"), limit=-1)) == [
            agent_run.id,
            only_agent.id,
            user_agent.id,
        ]
        assert ids(tx.scope_rows(NS, Scope(None, "bot"), limit=1)) == [agent_run.id]
    assert sorted(store.scope_ids(NS, Scope(None, "bot"))) == ["k:alice", "k:bot"]
    rows, total = store.page_rows(NS, Scope(None, "bot"), None, now=NOW, limit=2, offset=1)
    assert ids(rows) == [only_agent.id, user_agent.id] and total == 3
    assert store.ids_matching(NS, Scope(None, "bot"), None, None, among=[only_agent.id, "x"]) == {
        only_agent.id
    }


def test_expiry(store: PostgresStore) -> None:
    gone = make_row(Scope("alice"), expires_at=PAST)
    later = make_row(Scope("alice"), expires_at=FUTURE)
    forever = make_row(Scope("alice"))
    older_gone = make_row(Scope("bob"), expires_at="2025-01-01T00:00:00+00:00", namespace="x")
    insert(store, gone, later, forever, older_gone)
    assert store.get(NS, gone.id, NOW) is None
    assert store.get(NS, gone.id) is not None
    assert store.get(NS, later.id, NOW) is not None
    live = store.list_rows(NS, Scope("alice"), None, now=NOW, limit=10)
    assert {r.id for r in live} == {later.id, forever.id}
    assert store.ids_matching(NS, Scope("alice"), None, NOW) == {later.id, forever.id}
    assert [r.id for r in store.expired(NOW, 10)] == [older_gone.id, gone.id]
    assert [r.id for r in store.expired(NOW, 1)] == [older_gone.id]


FILTERS: list[dict[str, Any]] = [
    {"color": "red"},
    {"n": {"gt": 3}},
    {"n": {"in": [1, "2", 5]}},
    {"tags": {"contains": "x"}},
    {"label": {"icontains": "STRASSE"}},
    {"color": {"ne": "red"}},
    {"missing": "*"},
    {"color": "*"},
    {"OR": [{"memory_type": "episodic"}, {"n": {"lte": 1}}]},
    {"NOT": [{"role": "user"}, {"flag": True}]},
    {"AND": [{"agent_id": "bot"}, {"color": {"nin": ["blue"]}}]},
    {"importance": {"gte": 0.5}, "created_at": {"lt": "2026-05-01T00:00:30+00:00"}},
    {"actor_id": {"contains": "act"}},
]


def _random_metadata(rng: random.Random) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if rng.random() < 0.7:
        meta["color"] = rng.choice(["red", "blue", "green", 1])
    if rng.random() < 0.7:
        meta["n"] = rng.choice([0, 1, 2, "2", 3.5, 4, 5, True])
    if rng.random() < 0.5:
        meta["tags"] = rng.sample(["x", "y", "z"], rng.randint(0, 2))
    if rng.random() < 0.4:
        meta["label"] = rng.choice(["Hauptstraße", "main street", "STRASSE 5"])
    if rng.random() < 0.3:
        meta["flag"] = rng.choice([True, False, None])
    return meta


def test_filters_agree_with_the_python_evaluator(store: PostgresStore) -> None:
    rng = random.Random(7)
    rows = []
    for _ in range(80):
        scope = Scope("alice", rng.choice([None, "bot", "helper"]))
        rows.append(
            make_row(
                scope,
                metadata=_random_metadata(rng),
                memory_type=rng.choice(["semantic", "episodic"]),
                role=rng.choice([None, "user", "assistant"]),
                actor_id=rng.choice([None, "actor-1", "someone"]),
                importance=rng.choice([None, 0.1, 0.5, 0.9]),
                expires_at=rng.choice([None, None, PAST, FUTURE]),
            )
        )
    insert(store, *rows)
    scope = Scope("alice")
    for raw in FILTERS:
        node = parse_filter(raw)
        assert node is not None

        def passes(row: MemoryRow, node: Any = node) -> bool:
            record = {c: getattr(row, c) for c in COLUMNS}
            record["metadata"] = json.loads(row.metadata_box)
            return matches(node, record)

        live = [r for r in rows if r.expires_at is None or r.expires_at > NOW]
        want = {r.id for r in live if passes(r)}
        assert store.ids_matching(NS, scope, node, NOW) == want, raw
        among = [r.id for r in rows[::3]]
        assert store.ids_matching(NS, scope, node, NOW, among=among) == want & set(among), raw
        newest = [r.id for r in reversed(live) if passes(r)]
        listed = store.list_rows(NS, scope, node, now=NOW, limit=5, offset=1)
        assert [r.id for r in listed] == newest[1:6], raw
        page, total = store.page_rows(NS, scope, node, now=NOW, limit=4, offset=2)
        assert [r.id for r in page] == newest[2:6] and total == len(newest), raw


def test_the_filter_time_budget(pg_url: str) -> None:
    def slow(*args: Any) -> str:
        time.sleep(0.01)
        return _decrypt(*args)

    store = PostgresStore(pg_url, decrypt_metadata=slow, max_filter_seconds=0.1)
    try:
        insert(store, *(make_row(Scope("alice"), metadata={"n": i}) for i in range(40)))
        node = parse_filter({"n": {"gte": 0}})
        with pytest.raises(FilterTooExpensive, match=r"more than 0\.1 s"):
            store.ids_matching(NS, Scope("alice"), node, None)
        with pytest.raises(FilterTooExpensive):
            store.list_rows(NS, Scope("alice"), node, now=None, limit=100)
        # The cache holds what was decrypted; forgetting it makes the next read pay again.
        store.forget_decrypted()
        assert store.list_rows(
            NS, Scope("alice"), parse_filter({"user_id": "alice"}), now=None, limit=3
        )
    finally:
        store.close()


def test_scope_versions_only_grow(store: PostgresStore) -> None:
    a = make_row(Scope("alice"), scope_id="k:a")
    b = make_row(Scope("bob"), scope_id="k:b")
    other = make_row(Scope("carol"), scope_id="k:c", namespace="other")
    insert(store, a, b, other)
    with store.transaction() as tx:
        assert tx.bump_version("k:a") == (0, 1)
        assert tx.bump_version("k:a") == (1, 2)
        assert tx.bump_version("k:b") == (0, 1)
        assert tx.bump_version("k:c") == (0, 1)
        tx.add_history(make_event(a, "ADD"))
    with store.transaction() as tx:
        assert tx.delete_user(NS, "alice") == (1, 1)
    assert store.scope_version("k:a") == 2  # deleting rows never lowers a version
    assert store.user_rows(NS, "alice") == (0, 0)
    with store.transaction() as tx:
        tx.delete_namespace(NS)
    assert store.scope_version("k:a") == 2  # held no rows any more
    assert store.scope_version("k:b") == 2  # held rows of the namespace: moved on
    assert store.scope_version("k:c") == 1  # another namespace: untouched
    assert store.get(NS, b.id) is None and store.get("other", other.id) is not None
    with store.transaction() as tx:
        assert tx.bump_version("k:b") == (2, 3)  # the row stayed: never back to 1


def test_scope_vectors_come_from_one_snapshot(store: PostgresStore) -> None:
    rows = [make_row(Scope("alice"), scope_id="k:s") for _ in range(3)]
    insert(store, *rows)
    with store.transaction() as tx:
        tx.bump_version("k:s")
    late = make_row(Scope("alice"), scope_id="k:s")
    seen: list[VectorRow] = []

    def consume(chunk: list[VectorRow]) -> None:
        if not seen:  # another writer commits while the snapshot is read
            with store.transaction() as tx:
                tx.insert(late, TERMS)
                tx.bump_version("k:s")
        seen.extend(chunk)

    assert store.scope_vectors("k:s", consume) == 1
    assert [v.id for v in seen] == [r.id for r in rows]
    assert seen[0].vector_box == rows[0].vector_box and seen[0].body == "aa bb"
    seen.clear()
    assert store.scope_vectors("k:s", seen.extend) == 2 and len(seen) == 4
    assert store.scope_vectors("k:none", seen.extend) == 0


def test_locks_serialise_writers(store: PostgresStore) -> None:
    spans: list[tuple[float, float]] = []
    start = threading.Barrier(2)

    def writer(exclusive: bool) -> None:
        start.wait()
        with store.transaction() as tx:
            tx.lock("acme/user/alice", exclusive=exclusive)
            began = time.monotonic()
            time.sleep(0.2)
            spans.append((began, time.monotonic()))

    def run(exclusive: bool) -> list[tuple[float, float]]:
        spans.clear()
        threads = [threading.Thread(target=writer, args=(exclusive,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sorted(spans)

    first, second = run(exclusive=True)
    assert second[0] >= first[1]  # the second waited for the first to commit
    first, second = run(exclusive=False)
    assert second[0] < first[1]  # shared locks do not wait for each other


def test_legacy_rows_events_and_names(store: PostgresStore) -> None:
    old = make_row(Scope("alice"), scope_id="acme/alice", seal_version=1)
    shared = make_row(Scope("alice", "bot"), scope_id="acme/shared", seal_version=1)
    others = make_row(Scope(None, "bot"), scope_id="acme/shared", seal_version=1)
    new = make_row(Scope("alice"))
    insert(store, old, shared, others, new)
    with store.transaction() as tx:
        tx.add_history(make_event(old, "ADD", id="e2"))
        tx.add_history(make_event(new, "ADD", id="e1"))
        assert [r.id for r in tx.legacy_rows(0, 10)] == [old.id, shared.id, others.id]
        assert [r.id for r in tx.legacy_rows(old.rowid or 0, 1)] == [shared.id]
        assert [e.id for e in tx.legacy_events("", 10)] == ["e2"]
        assert tx.legacy_events("e2", 10) == []
        assert tx.legacy_key_names(NS, "user", "alice") == {"acme/alice", "acme/shared"}
        assert tx.legacy_key_names(NS, "agent", "bot") == {"acme/shared"}
        assert tx.legacy_name_shared("acme/shared", NS, "user", "alice")
        assert not tx.legacy_name_shared("acme/alice", NS, "user", "alice")
        assert tx.legacy_name_shared("acme/shared", NS, "agent", "bot")
        assert tx.rows_under_key(NS, "alice", "acme/alice", 10) == [old]
    assert store.legacy_key_names(NS, "run", "r") == set()


def test_meta_settings_and_stats(store: PostgresStore) -> None:
    assert store.get_meta("k") is None
    assert store.set_meta_once("k", "first") == "first"
    assert store.set_meta_once("k", "second") == "first"
    assert store.get_meta("k") == "first"
    assert store.namespace_settings(NS) == RULE_DEFAULTS
    store.set_namespace_settings(NS, {**RULE_DEFAULTS, "secret_policy": "block"})
    told = {**RULE_DEFAULTS, "secret_policy": "allow", "extraction_instructions": "Keep names."}
    store.set_namespace_settings(NS, told)
    assert store.namespace_settings(NS) == told
    insert(store, make_row(Scope("a")), make_row(Scope("b")))
    store.insert_api_key(_api_key("k1", "keys-only"), max_live=None, now=NOW)
    assert store.namespace_stats() == [
        {"name": NS, "memories": 2, "keys": 0},
        {"name": "keys-only", "memories": 0, "keys": 1},
    ]


def test_status(store: PostgresStore, pg_url: str) -> None:
    insert(store, make_row(Scope("a")))
    status = store.status()
    assert status.backend == "postgres"
    assert status.schema_version == MIGRATIONS[-1].__name__ == status.migrations[-1]
    assert status.migrations == tuple(m.__name__ for m in MIGRATIONS)
    assert status.memories == 1 and status.history_events == 0
    assert status.bytes_used is not None and status.bytes_used > 0
    assert "schema memvault" in status.location
    # A second store on the same database finds the schema migrated.
    again = PostgresStore(pg_url, decrypt_metadata=_decrypt)
    try:
        assert again.status().migrations == status.migrations
    finally:
        again.close()


def test_password_is_masked() -> None:
    from memvault.storage.postgres.store import masked_url

    assert masked_url("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert "s3cret" not in masked_url("host=db password=s3cret dbname=x")
    assert "s3cret" not in masked_url("postgresql://db/x?password=s3cret&sslmode=require")


# --- API keys and audit -----------------------------------------------------------------------


def _api_key(key_id: str, namespace: str = NS, **columns: Any) -> ApiKeyRow:
    values: dict[str, Any] = {
        "id": key_id,
        "namespace": namespace,
        "role": "writer",
        "name": None,
        "user_id": None,
        "secret_hash": "h",
        "created_at": NOW,
        "expires_at": None,
        "revoked_at": None,
        "last_used_at": None,
    }
    values.update(columns)
    return ApiKeyRow(**values)


def test_api_key_records(store: PostgresStore) -> None:
    assert store.insert_api_key(_api_key("k1"), max_live=2, now=NOW)
    assert store.insert_api_key(_api_key("k2", expires_at=PAST), max_live=2, now=NOW)
    assert store.insert_api_key(_api_key("k3"), max_live=2, now=NOW)  # k2 expired
    assert not store.insert_api_key(_api_key("k4"), max_live=2, now=NOW)
    assert store.insert_api_key(_api_key("k5", namespace="b"), max_live=2, now=NOW)
    assert store.count_api_keys() == 4
    assert [k.id for k in store.api_keys(NS)] == ["k1", "k2", "k3"]
    assert {k.id for k in store.api_keys(None)} == {"k1", "k2", "k3", "k5"}
    assert store.revoke_api_key("k1", NS, NOW)
    assert store.revoke_api_key("k1", None, FUTURE)  # the first revocation time stays
    assert not store.revoke_api_key("k5", NS, NOW)
    assert not store.revoke_api_key("nope", None, NOW)
    store.touch_api_key("k3", NOW)
    k1, k3 = store.api_key("k1"), store.api_key("k3")
    assert k1 is not None and k1.revoked_at == NOW
    assert k3 is not None and k3.last_used_at == NOW
    assert store.api_key("nope") is None


def test_api_key_limit_holds_under_racing_creators(store: PostgresStore) -> None:
    start = threading.Barrier(4)
    results: list[bool] = []

    def create(i: int) -> None:
        start.wait()
        results.append(store.insert_api_key(_api_key(f"r{i}"), max_live=1, now=NOW))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]


def test_audit_appends_are_atomic(store: PostgresStore) -> None:
    def build(seq: int, last: str) -> list[AuditRow]:
        time.sleep(0.002)  # widen the window between reading the head and writing
        rows = []
        for _ in range(2):
            seq += 1
            digest = uuid.uuid4().hex
            rows.append(AuditRow(seq, NOW, NS, None, "add", None, "[]", None, "ok", last, digest))
            last = digest
        return rows

    def appender() -> None:
        for _ in range(10):
            store.append_audit(build)

    threads = [threading.Thread(target=appender) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    chain = list(store.audit_chain())
    assert [r.seq for r in chain] == list(range(1, 61))
    assert chain[0].prev_hash == ""
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))
    page = store.audit_rows(NS, limit=5, before=10)
    assert [r.seq for r in page] == [9, 8, 7, 6, 5]
    assert store.audit_rows("other", limit=5, before=None) == []


# --- errors -----------------------------------------------------------------------------------


def test_driver_text_never_reaches_the_caller(store: PostgresStore) -> None:
    canary = "canary-7f3a9c"
    insert(store, make_row(Scope("a"), id=canary))
    with pytest.raises(StorageError) as caught:
        insert(store, make_row(Scope("a"), id=canary))
    error = caught.value
    assert canary not in str(error) and canary not in error.message
    assert error.__cause__ is None and error.__suppress_context__
    assert "SQLSTATE 23505" in str(error)


def test_translation() -> None:
    busy = translate(psycopg.errors.SerializationFailure("detail: secret"), "write")
    assert isinstance(busy, StorageBusy) and busy.http_status == 503
    assert isinstance(translate(psycopg.errors.DeadlockDetected("x"), "w"), StorageBusy)
    assert isinstance(translate(psycopg.errors.LockNotAvailable("x"), "w"), StorageBusy)
    assert isinstance(translate(psycopg.errors.TooManyConnections("x"), "w"), StorageBusy)
    assert isinstance(translate(psycopg.OperationalError("secret"), "w"), StorageBusy)
    plain = translate(psycopg.errors.UniqueViolation("Key (id)=(secret)"), "write")
    assert type(plain) is StorageError and "secret" not in str(plain)
    assert isinstance(plain, MemvaultError)


def test_an_unreachable_server_is_busy(tmp_path: Any) -> None:
    with pytest.raises(StorageBusy):
        PostgresStore(
            f"postgresql://postgres@/x?host={tmp_path}&connect_timeout=1",
            decrypt_metadata=_decrypt,
        )


# --- key store --------------------------------------------------------------------------------


def _wait_for(condition: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def test_key_create_keeps_the_first(keys: PostgresKeyStore, pg_url: str) -> None:
    other = PostgresKeyStore(pg_url)
    try:
        start = threading.Barrier(2)
        results: list[WrappedKey] = []

        def create(store: PostgresKeyStore, key: WrappedKey) -> None:
            start.wait()
            results.append(store.create("s1", key, (NS, "user", "alice", 1, None)))

        candidates = [WrappedKey(1, b"A" * 40), WrappedKey(1, b"B" * 40)]
        threads = [
            threading.Thread(target=create, args=(s, k))
            for s, k in zip((keys, other), candidates, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results[0] == results[1] and results[0] in candidates
        assert keys.wrapped("s1") == results[0]
        # The generation recorded first stays too.
        keys.create("s2", WrappedKey(1, b"C"), (NS, "user", "alice", 7, 6))
        assert keys.generations(NS, "user", "alice", "acme/alice") == (1, None)
    finally:
        other.close()


def test_key_generations(keys: PostgresKeyStore, pg_url: str) -> None:
    assert keys.generations(NS, "user", "alice", "acme/alice") is None
    keys.set_generations(NS, "user", "alice", 2, 1)
    assert keys.generations(NS, "user", "alice", "acme/alice") == (2, 1)
    keys.set_generations(NS, "user", "alice", 2, None)
    assert keys.generations(NS, "user", "alice", "acme/alice") == (2, None)
    keys.set_generations(NS, "agent", "bot", 1, None)
    keys.set_generations("other", "user", "alice", 5, None)
    assert keys.namespace_generations(NS) == [("agent", "bot", 1), ("user", "alice", 2)]
    # A pre-v2 record is read when no v2 record exists.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {}.scope_generations VALUES (%s, %s, %s)").format(
                sql.Identifier("memvault_keys")
            ),
            ("acme/bob", 3, 2),
        )
    assert keys.generations(NS, "user", "bob", "acme/bob") == (3, 2)


def _legacy_key(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {}.data_keys VALUES (%s, 1, %s, %s, 1)").format(
                sql.Identifier("memvault_keys")
            ),
            (name, b"legacy", NOW),
        )


def test_key_delete_and_legacy(keys: PostgresKeyStore, pg_url: str) -> None:
    for name in ("a", "b", "c"):
        keys.create(name, WrappedKey(1, name.encode()), (NS, "user", name, 1, None))
    _legacy_key(pg_url, "acme/old")
    assert keys.present(["a", "b", "zz", "acme/old"]) == {"a", "b", "acme/old"}
    assert keys.wrapped("acme/old", legacy_only=True) == WrappedKey(1, b"legacy")
    assert keys.wrapped("a", legacy_only=True) is None
    assert keys.delete(["a", "acme/old"], legacy_only=True) == ["acme/old"]
    assert sorted(keys.delete(["a", "b", "zz"])) == ["a", "b"]
    assert keys.wrapped("a") is None and keys.present(["c"]) == {"c"}
    assert keys.delete([]) == []
    _legacy_key(pg_url, "x/1")
    assert keys.drop_legacy() == ["x/1"]


def test_key_delete_namespace(keys: PostgresKeyStore, pg_url: str) -> None:
    keys.create("n1", WrappedKey(1, b"1"), (NS, "user", "alice", 1, None))
    keys.create("n2", WrappedKey(1, b"2"), (NS, "agent", "bot", 3, 2))
    keys.create("o1", WrappedKey(1, b"3"), ("other", "user", "alice", 1, None))
    for name in ("acme/x", "acme_/y", "acme%/z", "other/w"):
        _legacy_key(pg_url, name)
    gone = keys.delete_namespace(NS, ["n1", "n2", "missing"])
    assert sorted(gone) == ["acme/x", "n1", "n2"]  # "acme_/" and "acme%/" are not "acme/"
    assert keys.present(["o1", "acme_/y", "acme%/z", "other/w"]) == {
        "o1",
        "acme_/y",
        "acme%/z",
        "other/w",
    }
    assert keys.namespace_generations(NS) == [("agent", "bot", 4), ("user", "alice", 2)]
    assert keys.generations(NS, "agent", "bot", "") == (4, None)
    assert keys.generations("other", "user", "alice", "") == (1, None)


def test_master_checks_and_rewrap(keys: PostgresKeyStore) -> None:
    keys.add_master_checks({1: b"one", 2: b"two"})
    keys.add_master_checks({1: b"changed", 3: b"three"})
    assert keys.master_checks() == {1: b"one", 2: b"two", 3: b"three"}
    keys.drop_master_check(2)
    assert set(keys.master_checks()) == {1, 3}
    old = keys.create("s", WrappedKey(1, b"old"), (NS, "user", "u", 1, None))
    keys.create("t", WrappedKey(2, b"t"), (NS, "user", "v", 1, None))
    assert keys.versions_in_use() == {1: 1, 2: 1}
    assert keys.not_wrapped_by(2, 10) == [("s", old)]
    new = WrappedKey(2, b"new")
    assert keys.rewrap([("s", WrappedKey(1, b"stale"), new)]) == 0
    assert keys.rewrap([("s", old, new), ("t", WrappedKey(9, b"x"), new)]) == 1
    assert keys.rewrap([("s", old, WrappedKey(3, b"late"))]) == 0
    assert keys.wrapped("s") == new
    assert keys.not_wrapped_by(2, 10) == []


def test_changes_move_when_another_node_changes_keys(keys: PostgresKeyStore, pg_url: str) -> None:
    keys.create("s", WrappedKey(1, b"k"), (NS, "user", "u", 1, None))
    other = PostgresKeyStore(pg_url)
    try:
        assert _wait_for(lambda: keys.changes() == keys.changes())  # settled
        before = keys.changes()
        assert other.delete(["s"]) == ["s"]
        assert _wait_for(lambda: keys.changes() != before)
        settled = keys.changes()
        assert keys.changes() == settled  # no change, no movement
        other.wrapped("s")  # reads notify nobody
        time.sleep(0.1)
        assert keys.changes() == settled
    finally:
        other.close()


def test_changes_move_on_every_call_while_not_listening(keys: PostgresKeyStore) -> None:
    listener = keys._listener
    assert listener is not None
    with psycopg.connect(keys._url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (listener.info.backend_pid,))
    # The listener notices, counts every look as a change, then reconnects.
    assert _wait_for(lambda: keys.changes() != keys.changes())
    assert _wait_for(lambda: keys.changes() == keys.changes())


def test_a_slow_statement_is_cut_by_the_budget(pg_url: str) -> None:
    from memvault.storage.postgres.store import _FILTER_COLUMNS

    store = PostgresStore(pg_url, decrypt_metadata=_decrypt, max_filter_seconds=0.1)
    try:
        insert(store, make_row(Scope("alice")))
        node = parse_filter({"user_id": "alice"})
        assert node is not None
        # The SQL part runs under the transaction's statement_timeout (query_canceled).
        slow = f"SELECT {_FILTER_COLUMNS} FROM memories m, pg_sleep(2) WHERE m.namespace = %s"
        started = time.monotonic()
        with pytest.raises(FilterTooExpensive):
            list(store._filtered_rowids(node, slow, [NS]))
        assert time.monotonic() - started < 1.5
        # The connection went back to the pool usable, without the timeout.
        assert len(store.list_rows(NS, Scope("alice"), node, now=None, limit=5)) == 1
    finally:
        store.close()


def test_nodes_starting_together_migrate_once(pg_url: str) -> None:
    start = threading.Barrier(3)
    stores: list[PostgresStore] = []

    def open_store() -> None:
        start.wait()
        stores.append(PostgresStore(pg_url, decrypt_metadata=_decrypt, pool_min=1, pool_max=1))

    threads = [threading.Thread(target=open_store) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(stores) == 3
        assert {s.status().migrations for s in stores} == {tuple(m.__name__ for m in MIGRATIONS)}
    finally:
        for s in stores:
            s.close()


def test_hostile_names_stay_values(pg_url: str) -> None:
    schema = 'odd"schema; DROP TABLE x; --'
    store = PostgresStore(pg_url, decrypt_metadata=_decrypt, schema=schema)
    keys = PostgresKeyStore(pg_url, schema=schema + " keys")
    try:
        namespace = "ns'); DELETE FROM memories; --"
        row = make_row(Scope("o'neil %_\\", 'a"b'), namespace=namespace)
        insert(store, row)
        node = parse_filter({"it's": {"ne": "x"}, "user_id": "o'neil %_\\"})
        assert store.ids_matching(namespace, Scope("o'neil %_\\"), node, None) == {row.id}
        assert store.status().location.endswith(f"(schema {schema})")
        keys.create("k'1", WrappedKey(1, b"x"), (namespace, "user", "o'neil", 1, None))
        assert keys.delete_namespace(namespace, ["k'1"]) == ["k'1"]
    finally:
        store.close()
        keys.close()


def test_quoted_password_is_masked() -> None:
    from memvault.storage.postgres.store import masked_url

    masked = masked_url("host=db password='s3 cr\\'et' dbname=x")
    assert "s3" not in masked and "cr" not in masked and masked.endswith("dbname=x")
