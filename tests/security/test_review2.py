"""Second adversarial review: what is still wrong after the first review's fixes.

Each test states an attack and fails while the attack works. They are small and deterministic:
costs are counted (calls, bytes), never timed.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

import memvault.server.bodies as bodies
from memvault import HashEmbedder, Memory

# --- anyone on the network: the body is parsed and walked before the key is checked -----------


def _hostile_body(elements: int) -> bytes:
    """A valid search request carrying many small JSON values in a field nobody reads."""
    pad = ",".join(["[]"] * elements)
    return f'{{"query":"x","user_id":"u","filters":{{"k":[{pad}]}}}}'.encode()


def test_a_request_without_a_key_never_gets_its_body_parsed(start_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Measured: two clients with no key at all, posting 900 KB bodies of ``[]`` in a loop, keep
    the event loop busy (``json.loads`` and ``check_json`` run inside the async route handler,
    before the ``Require`` dependency): /healthz took 1.2 s median, 2.3 s max. No key, no
    lockout, nothing audited beyond the 401s: the body must not be touched before the gate."""
    server = start_server()
    walked: list[int] = []
    real = bodies.check_json

    def counting(value: Any) -> None:
        walked.append(1)
        real(value)

    monkeypatch.setattr(bodies, "check_json", counting)
    with server.http() as anonymous:
        answer = anonymous.post(
            "/v1/memories/search/",
            content=_hostile_body(1000),
            headers={"content-type": "application/json"},
        )
    assert answer.status_code == 401
    assert walked == [], "an unauthenticated body was parsed and walked on the event loop"


def test_a_locked_out_address_is_refused_before_its_body_is_read(start_server) -> None:  # type: ignore[no-untyped-def]
    """After the failed-login budget is spent, the address should get 429 at once. A body that
    fails the body check (too deep) is answered 422 instead: the lockout is checked only after
    parsing, so a locked-out address still costs a full parse and walk per request, and its
    hostile bodies are not even counted as failed authentications."""
    server = start_server(auth_failure_limit="3/minute")
    deep = b'{"query":"x","user_id":"u","filters":' + b"[" * 100 + b"]" * 100 + b"}"
    with server.http("mvk_not_a_key") as client:
        codes = [client.post("/v1/memories/search/", json={"query": "x"}).status_code]
        codes += [client.post("/v1/memories/search/", json={"query": "x"}).status_code]
        codes += [client.post("/v1/memories/search/", json={"query": "x"}).status_code]
        assert codes == [401, 401, 401]
        hostile = client.post(
            "/v1/memories/search/", content=deep, headers={"content-type": "application/json"}
        )
    assert hostile.status_code == 429, (hostile.status_code, hostile.text[:120])


def test_hostile_bodies_without_a_key_count_as_failed_logins(start_server) -> None:  # type: ignore[no-untyped-def]
    """An address with no key may send any number of too-deep bodies: each is a 422 that never
    reaches the gate, so it is never locked out (and never audited)."""
    server = start_server(auth_failure_limit="3/minute")
    deep = b'{"query":"x","filters":' + b"[" * 100 + b"]" * 100 + b"}"
    with server.http() as anonymous:
        codes = [
            anonymous.post(
                "/v1/memories/search/", content=deep, headers={"content-type": "application/json"}
            ).status_code
            for _ in range(5)
        ]
    assert 429 in codes, codes


# --- a read key: one filter costs (conditions x rows) decryptions and JSON parses ---------------


def test_a_filter_reads_each_rows_metadata_once_not_once_per_condition(memory: Memory) -> None:
    """Measured: 100 memories with 15 KB of metadata and an OR of 999 conditions took 3.2 s of CPU
    for one ``count`` (``mv_meta`` ran 99,900 times: every condition calls it and re-parses the
    row's metadata with ``json_each``). A list request runs the filter twice (page and count),
    so a read key with 10,000 memories buys ~10 minutes of CPU per request, 600 requests a
    minute. The work per row must not grow with the number of conditions."""
    meta = {f"k{i}": "v" * 100 for i in range(20)}
    memory.add_many(
        [{"messages": f"fact {i}", "user_id": "u", "metadata": meta} for i in range(20)]
    )
    store = memory._store
    real = store._decrypt_metadata
    calls = 0

    def counting(*args: Any) -> str:
        nonlocal calls
        calls += 1
        return real(*args)

    store._decrypt_metadata = counting  # type: ignore[method-assign]
    found = memory.count(user_id="u", filters={"OR": [{f"absent{i}": "x"} for i in range(200)]})
    assert found == 0
    assert calls <= 2 * 20, f"{calls} metadata decryptions/parses for 20 rows"


# --- another tenant: the query-vector cache is shared by every namespace ------------------------


class CountingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def embed_batch(self, texts: Sequence[str]) -> Any:
        self.seen.extend(texts)
        return super().embed_batch(texts)


def test_a_tenant_cannot_tell_which_queries_another_tenant_ran(home: Path) -> None:
    """``Memory._query_vectors`` (text -> vector, 1,024 entries) is shared by every namespace
    view the server makes, keyed by the query text alone. Tenant B searching a text tenant A
    searched recently skips the embedding model (milliseconds with the local ONNX model, an HTTP
    round trip with OpenAI): timing tells B what A asked about. The same holds between two
    user-bound keys of one namespace."""
    embedder = CountingEmbedder()
    with Memory(home, embedder=embedder) as root:
        tenant_a, tenant_b = root.namespaced("tenant-a"), root.namespaced("tenant-b")
        tenant_a.add("x", user_id="alice")
        tenant_b.add("y", user_id="mallory")
        secret = "does patient 7 have an hiv diagnosis"
        tenant_a.search(secret, user_id="alice")
        embedder.seen.clear()
        tenant_b.search(secret, user_id="mallory")
    assert secret in embedder.seen, "tenant B's search was answered from tenant A's cache"


# --- memory: the decrypted-metadata cache is bounded in entries, not bytes ----------------------


def test_the_decrypted_metadata_cache_has_a_byte_budget(memory: Memory) -> None:
    """``SQLiteStore._decrypt_metadata`` is an ``lru_cache(maxsize=65536)`` whose key holds the
    sealed box and whose value is the decrypted JSON: with the default 16 KB metadata limit that
    is up to 65,536 x ~32 KB = ~2 GB of process memory (plaintext, every tenant's), filled by
    filtered reads. Every other cache has a byte budget (``vector_cache_bytes``, 256 MB)."""
    info = memory._store._decrypt_metadata.cache_info()  # type: ignore[attr-defined]
    worst = info.maxsize * 2 * memory.settings.max_metadata_bytes
    assert worst <= memory.settings.vector_cache_bytes, f"worst case {worst / 2**30:.1f} GiB"


# --- a user id that spells another user's pre-v2 key name (the "alice#g2" class, again) ---------


def _legacy_store_where_alice_was_rotated(home: Path) -> str:
    """A store as the previous version left it after ``rotate_user_key("alice")``: alice's row
    sealed in format 1 under the joined key name ``default/user:alice#g2`` (the generation
    recorded in ``scope_generations``), not resealed yet. Returns alice's memory id."""
    import sqlite3

    from memvault.codec import binding
    from memvault.security.crypto import seal_box
    from memvault.security.keyscope import KeyScope

    with Memory(home, embedder=HashEmbedder()) as m:
        memory_id = m.add("alice keeps bees", user_id="alice")["results"][0]["id"]
        v2 = KeyScope("default", "user", "alice")
        cipher = m._keyring.cipher(v2.id)
        assert cipher is not None
        legacy = "default/user:alice#g2"
        wrapped = m._keyring.master.current.wrap(cipher.data_key, legacy)
        version = m._keyring.master.current_version
        row = m._store.get("default", memory_id)
        assert row is not None
        fields = {
            f: cipher.open(binding(row), f, getattr(row, f"{f}_box"))
            for f in ("text", "metadata", "vector", "context")
        }
        boxes = {
            f: seal_box(cipher._aead, plain, f"memvault/v1|{legacy}|{memory_id}|{f}".encode())
            for f, plain in fields.items()
        }
    db = sqlite3.connect(home / "memvault.db")
    db.execute(
        "UPDATE memories SET scope_id = ?, seal_version = 1, text_box = ?, metadata_box = ?,"
        " vector_box = ?, context_box = ? WHERE id = ?",
        (legacy, boxes["text"], boxes["metadata"], boxes["vector"], boxes["context"], memory_id),
    )
    db.execute("DELETE FROM history")
    db.execute("DELETE FROM store_meta WHERE key = 'seal_format'")
    db.commit()
    db.close()
    keys = sqlite3.connect(home / "keys.db")
    keys.execute("DELETE FROM data_keys WHERE scope_id = ?", (v2.id,))
    keys.execute("DELETE FROM key_generations WHERE owner = 'alice'")
    keys.execute(
        "INSERT INTO data_keys VALUES (?, ?, ?, '2025-01-01T00:00:00+00:00', 1)",
        (legacy, version, wrapped),
    )
    keys.execute("INSERT INTO scope_generations VALUES ('default/user:alice', 2, NULL)")
    keys.commit()
    keys.close()
    return memory_id


def test_a_user_named_like_a_legacy_key_cannot_erase_anothers_key(home: Path) -> None:
    """With ``reseal_on_open=False`` (a documented setting) -- or as soon as one legacy row is
    unreadable, which keeps every legacy key -- the user ``alice#g2`` erasing itself (a write key
    bound to ``alice#g2`` may) destroys alice's key: ``erase_user`` and ``destroy_scope`` delete
    ``KeyScope.legacy_id`` of each of their own generations, and generation 1 of ``alice#g2``
    has the legacy name of alice's generation 2. Alice's memory is gone for good."""
    alice = _legacy_store_where_alice_was_rotated(home)
    with Memory(home, embedder=HashEmbedder(), reseal_on_open=False) as m:
        assert m.get(alice)["memory"] == "alice keeps bees"  # readable before
        m.erase_user("alice#g2")  # a user that never stored anything: not even NotFound
        assert m.get(alice)["memory"] == "alice keeps bees"


def test_a_user_named_like_a_legacy_key_does_not_get_anothers_data_key(home: Path) -> None:
    """``KeyRing._create`` adopts a format-1 key stored under the new scope's ``legacy_id``: the
    first write of user ``alice#g2`` takes alice's generation-2 data key (same bytes, re-wrapped
    under the impostor's id). Two owners then share one key: erasing alice no longer shreds it
    (it lives on under ``alice#g2``), and dedup and token hashes agree across the two users."""
    from memvault.security.keyscope import KeyScope

    _legacy_store_where_alice_was_rotated(home)
    with Memory(home, embedder=HashEmbedder(), reseal_on_open=False) as m:
        m.add("impostor fact", user_id="alice#g2")
        alices = m._keyring.cipher("default/user:alice#g2")
        impostors = m._keyring.cipher(KeyScope("default", "user", "alice#g2").id)
        assert alices is not None and impostors is not None
        assert alices.data_key != impostors.data_key


# --- a write key: an expiration date at the edge of time is a 500 -------------------------------


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"])
def test_an_expiration_date_out_of_utc_range_is_invalid_input(memory: Memory, moment: str) -> None:
    """``parse_datetime`` converts to UTC with ``astimezone``, which raises ``OverflowError`` for
    a valid ISO date whose UTC time is past year 9999 or before year 1: not a ``MemvaultError``."""
    from memvault.errors import InvalidInput

    with pytest.raises(InvalidInput):
        memory.add("edge of time", user_id="u", expiration_date=moment)


def test_an_expiration_date_out_of_utc_range_is_not_a_500(server) -> None:  # type: ignore[no-untyped-def]
    with server.http(server.admin_key) as client:
        answer = client.post(
            "/v1/memories/",
            json={"messages": "x", "user_id": "u", "expiration_date": "9999-12-31T23:59:59-05:00"},
        )
    assert answer.status_code == 422, (answer.status_code, answer.text[:120])


# --- a same-host process: an erase elsewhere leaves the key usable in a running server ----------


def test_a_key_erased_by_another_process_is_gone_from_a_running_one(home: Path) -> None:
    """``KeyRing.cipher`` promises None for a destroyed key, but answers from the process's
    cache without looking at ``keys.db``. A server that ever read alice keeps her data key
    (and her decrypted metadata in ``_decrypt_metadata``, her vectors in the ``VectorCache``)
    for as long as it runs after ``memvault erase`` in another process: the crypto-shredding
    promise ("forget it everywhere") holds only in the process that erased."""
    from memvault.security.keyscope import KeyScope

    with Memory(home, embedder=HashEmbedder()) as server:
        server.add("alice keeps bees", user_id="alice", metadata={"topic": "hobby"})
        server.get_all(user_id="alice", filters={"topic": "hobby"})  # the caches fill
        key_id = KeyScope("default", "user", "alice").id
        with Memory(home, embedder=HashEmbedder()) as cli:
            cli.erase_user("alice")
            assert cli._keyring.cipher(key_id) is None
        server.get_all(user_id="bob")  # the server carries on with other work
        assert server._keyring.cipher(key_id) is None, "the destroyed key is still usable here"


# --- anyone on the network: a request that never finishes holds its connection forever ----------


def test_a_request_that_never_finishes_is_cut_off(server) -> None:  # type: ignore[no-untyped-def]
    """uvicorn runs with no limit on connections (``limit_concurrency``) and no timeout for a
    request head or body that stops arriving (``timeout_keep_alive`` covers idle connections
    only): a slowloris client opens connections, sends half a request and waits; each costs a
    file descriptor and a task until the process has none left for real clients. Measured: a
    half-sent head and a half-sent body were both still open after 12 s. A connection that
    has not finished its request within 10 s (twice the keep-alive timeout) should be closed."""
    import socket
    import time

    def half(data: bytes) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(data)
        sock.settimeout(0.25)
        return sock

    sockets = {
        "head": half(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "),
        "body": half(
            b"POST /v1/memories/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            b"\r\nContent-Length: 100\r\n\r\n{"
        ),
    }
    closed: dict[str, float] = {}
    started = time.monotonic()
    try:
        while len(closed) < len(sockets) and time.monotonic() - started < 10:
            for name, sock in sockets.items():
                if name in closed:
                    continue
                try:
                    sock.recv(4096)  # an answer (408/400) or EOF: the server let go
                    closed[name] = time.monotonic() - started
                except TimeoutError:
                    pass
                except OSError:
                    closed[name] = time.monotonic() - started
    finally:
        for sock in sockets.values():
            sock.close()
    assert set(closed) == set(sockets), f"still open after 10 s: {set(sockets) - set(closed)}"


# --- another local user: the CLI export file is world-readable while it is written ---------------


def test_cli_export_file_is_private_from_its_first_byte(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``memvault user export --out F`` opens F with ``open(out, "x")`` (mode 0666 & ~umask:
    0644 under the usual umask), writes every decrypted memory, and only then ``chmod 0600``.
    Another local user who opens F meanwhile keeps reading through that descriptor; and when
    the export fails half-way the chmod never runs, leaving plaintext 0644 on disk. The file
    should be created 0600 (``os.open(..., 0o600)``, like ``create_private_file``)."""
    import os

    from typer.testing import CliRunner

    from memvault.cli import app

    with Memory(home, embedder=HashEmbedder()) as m:
        m.add("alice's diagnosis is private", user_id="alice")
    out = tmp_path / "alice.jsonl"
    seen: list[int] = []
    real_export = Memory.export_user

    def spying_export(self: Memory, user_id: str) -> Any:
        for line in real_export(self, user_id):
            yield line
            if out.exists():  # the file is open and being written
                seen.append(out.stat().st_mode & 0o777)

    monkeypatch.setattr(Memory, "export_user", spying_export)
    previous = os.umask(0o022)
    try:
        result = CliRunner().invoke(app, ["user", "export", "alice", "--out", str(out)])
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert seen and all(mode & 0o077 == 0 for mode in seen), [oct(m) for m in seen]


# --- a read key: an agent-wide search costs (users x query words), inside a global search slot ---


def test_an_agent_wide_search_has_bounded_work(
    memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search by ``agent_id`` alone visits every key scope holding that agent's rows (one per
    user) and hashes every distinct query word with each scope's key, loading each scope's
    index. Measured: 300 users and a 4,000-word query (well under the 32 KB query limit) take
    1.7 s per BM25 search; 10,000 users would take about a minute. The search holds one of the
    process's ``max_concurrent_searches`` (2) slots meanwhile, so two such requests from one
    tenant's read key stall every search of every tenant. Here: 50 users, 400 words."""
    from memvault.security.crypto import ScopeCipher

    memory.add_many(
        [{"messages": f"note {i}", "user_id": f"user{i}", "agent_id": "bot"} for i in range(50)]
    )
    calls = 0
    real = ScopeCipher.token

    def counting(self: ScopeCipher, word: str) -> str:
        nonlocal calls
        calls += 1
        return real(self, word)

    monkeypatch.setattr(ScopeCipher, "token", counting)
    memory.search(" ".join(f"w{i}" for i in range(400)), agent_id="bot", mode="bm25")
    assert calls <= 5_000, f"{calls} keyed token hashes for one search"


def test_the_audit_jsonl_sink_is_created_private(home: Path, tmp_path: Path) -> None:
    """``AuditLog.append`` opens the optional JSONL sink with ``open(path, "a")``: created with
    the umask (0644), it lists every namespace, key id, user id, memory id and client address
    for any local user to read, while every file in the home is 0600."""
    import os

    from memvault.security.audit import AuditEntry

    sink = tmp_path / "audit.jsonl"
    previous = os.umask(0o022)
    try:
        with Memory(home, embedder=HashEmbedder(), audit_jsonl=sink) as m:
            m.audit.record(AuditEntry(action="test", outcome="ok", user_id="alice"))
            m.audit.flush()
    finally:
        os.umask(previous)
    assert sink.exists()
    assert sink.stat().st_mode & 0o077 == 0, oct(sink.stat().st_mode & 0o777)


# --- any writer: a secret in a metadata key passes the namespace's secret policy -----------------


def test_a_secret_in_a_metadata_key_is_refused_under_reject(memory: Memory) -> None:
    """``redact._walk`` cleans every string *value* of the metadata but keeps the keys as they
    are: under ``reject`` a secret sent as a key is stored (and returned by every read), under
    ``redact`` it is kept in the clear inside the ciphertext. (Message ``name`` -- stored as the
    plaintext ``actor_id`` column -- is not checked either.)"""
    from memvault.errors import SecretDetected

    memory.configure_namespace(secret_policy="reject")
    with pytest.raises(SecretDetected):
        memory.add("a note", user_id="u", metadata={"AKIAIOSFODNN7EXAMPLE": "aws"})


# --- a tenant admin: the only budget is per key, and keys are free ------------------------------


def test_a_tenant_cannot_multiply_its_request_budget_by_minting_keys(start_server) -> None:  # type: ignore[no-untyped-def]
    """``RateLimiter.spend`` counts per key id, and an unbound admin of a namespace may create any
    number of keys (no quota) over ``POST /v1/keys/``: N keys are N budgets, so the limit caps
    nothing for a tenant (and with the costly requests above, nothing protects the others)."""
    server = start_server(rate_limit="3/minute")
    tenant_admin = server.key("admin", namespace="acme")
    with server.http(tenant_admin) as admin:
        minted = [admin.post("/v1/keys/", json={"role": "read"}).json()["key"] for _ in range(2)]
    codes = []
    for key in minted:
        with server.http(key) as client:
            codes += [client.get("/v1/ping/").status_code for _ in range(3)]
    assert 429 in codes, f"{codes.count(200)} requests in a minute on a 3/minute budget"


# --- the Python client: a memory id is spliced into the URL path unescaped ----------------------


def test_client_delete_of_a_hostile_memory_id_cannot_erase_a_user(server) -> None:  # type: ignore[no-untyped-def]
    """``memvault.Client`` builds ``f"/v1/memories/{memory_id}/"``: an id such as
    ``../users/alice`` (from an LLM tool call, a prompt-injected memory, a URL parameter) is
    resolved by the URL parser into ``DELETE /v1/users/alice/``: a one-memory delete erases a
    whole user (crypto-shredding, irreversible) with the client's key. ``get("../keys")`` lists
    the API keys the same way. Ids must be percent-encoded as one path segment (``quote(id,
    safe="")``) and ``.``/``..`` refused, in every method that puts an id in a path."""
    from memvault.client import Client

    alice = server.memory.add("alice keeps bees", user_id="alice")["results"][0]["id"]
    answer: object = None
    with Client(server.base_url, server.admin_key) as client, suppress(Exception):
        answer = client.delete("../users/alice")  # any refusal will do
    assert server.memory.get(alice) is not None, f"deleting a 'memory' erased alice: {answer}"


def test_client_puts_every_memory_id_in_one_path_segment() -> None:
    import httpx

    from memvault.client import Client

    sent: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})

    hostile = ["../keys", "../users/alice", "..", ".", "a/../../namespaces"]
    with Client("http://127.0.0.1:9", "k", transport=httpx.MockTransport(record)) as client:
        for memory_id in hostile:
            for call in (client.get, client.delete, client.history):
                try:
                    call(memory_id)
                except Exception:  # noqa: BLE001 - refusing the id is fine
                    continue
    escaped = [p for p in sent if not p.startswith("/v1/memories/") or p.count("/") > 4]
    assert not escaped, escaped


# --- anyone on the network: the HTTP method is a metrics label -----------------------------------


def test_made_up_http_methods_do_not_grow_the_metrics(server) -> None:  # type: ignore[no-untyped-def]
    """``Observability._observe`` labels the request counter and the latency histogram (13
    series per label set) with ``scope["method"]``, whatever token the client sent. Without a
    key and without any rate limit, every new method (``M00001``, ``M00002``, ...) adds ~17
    series that live as long as the process: measured 3,400 series after 200 requests, so a
    few million requests exhaust the server's memory (and make ``/metrics`` unreadable). Paths
    are already folded into ``unmatched``; methods need the same (GET/POST/PUT/DELETE/other)."""
    import httpx

    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for i in range(50):
            client.request(f"M{i:05d}", "/healthz")
    methods = {
        sample.labels.get("method")
        for metric in server.app.state.metrics.collect()
        for sample in metric.samples
    }
    assert len(methods) <= 8, f"{len(methods)} method labels: {sorted(methods)[:5]}..."


# --- a local client of a plainly-run uvicorn: a forwarded "address" that is not an IP ------------


def test_a_runner_believing_forwarded_for_cannot_hand_out_non_ip_addresses(start_server) -> None:  # type: ignore[no-untyped-def]
    """Run as plain ``uvicorn`` (proxy headers believed from 127.0.0.1), a request's peer is
    whatever X-Forwarded-For said. ``Proxies.client_address`` recognises the rewrite only when
    the peer parses as an IP that is also in the header: ``X-Forwarded-For: nobody-1`` becomes
    the peer ``nobody-1``, which ``_ip`` cannot parse, so it is not found in the chain (``[None]``)
    and is believed. Each value is a fresh failed-login budget (no lockout) and lands verbatim
    in the audit log's ``source``. The IP case is handled (test_network.py); this is the rest."""
    from memvault.server.network import UNVERIFIED_ADDRESS

    server = start_server(auth_failure_limit="3/minute", uvicorn_defaults=True)
    bad_key = "mvk_abcdefghijkm_" + "b" * 49
    with server.http(bad_key) as http:
        codes = [
            http.get("/v1/ping/", headers={"X-Forwarded-For": f"nobody-{i}"}).status_code
            for i in range(5)
        ]
    server.memory.audit.flush()
    sources = {
        e["source"]
        for e in server.memory.audit.entries(None, limit=100)
        if e["outcome"] in ("unauthorized", "lockout")
    }
    assert codes == [401, 401, 401, 429, 429], codes
    assert sources == {UNVERIFIED_ADDRESS}, sources


# --- a write key: an integer too large for a float is a 500 -------------------------------------


def test_an_importance_too_large_for_a_float_is_invalid_input(memory: Memory) -> None:
    """``check_importance`` calls ``math.isfinite`` on an ``int``, which raises ``OverflowError``
    for an integer beyond a double (JSON ``1`` followed by 400 zeros parses to such an int, and
    the REST schema's ``StrictInt`` lets it through): a 500 for any write key."""
    from memvault.errors import InvalidInput

    with pytest.raises(InvalidInput):
        memory.add("huge importance", user_id="u", importance=10**400)


def test_an_importance_too_large_for_a_float_is_not_a_500(server) -> None:  # type: ignore[no-untyped-def]
    body = '{"messages": "x", "user_id": "u", "importance": 1' + "0" * 400 + "}"
    with server.http(server.admin_key) as client:
        answer = client.post(
            "/v1/memories/", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 422, (answer.status_code, answer.text[:120])


# --- a read key: every query word is kept in a process-wide cache, whatever its length ----------


def test_the_stemmer_cache_has_a_byte_budget(memory: Memory) -> None:
    """``retrieval.text._stem`` is an ``lru_cache(maxsize=65536)`` over words, and a word is any
    run of letters: up to the whole 32 KB text or query. Measured: 300 distinct 32 KB words
    held 29 MB (~96 KB each: the word and its stem), so 65,536 of them hold ~6 GB for the life of
    the process; a write key reaches that with ~2,200 batch adds of 1 MB, a read key with
    searches. The cache is shared by every tenant. Words should be capped in length (BM25 gains
    nothing from a 32 KB "word") or the cache bounded in bytes."""
    from memvault.retrieval import text

    worst = text._stem.cache_info().maxsize * 2 * memory.settings.max_text_bytes
    assert worst <= memory.settings.vector_cache_bytes, f"worst case {worst / 2**30:.1f} GiB"
