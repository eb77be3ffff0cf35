"""Second adversarial review: what is still wrong after the first review's fixes.

Each test states an attack and fails while the attack works. They are small and deterministic:
costs are counted (calls, bytes), never timed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
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
    memory.add_many([{"messages": f"fact {i}", "user_id": "u", "metadata": meta} for i in range(20)])
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
