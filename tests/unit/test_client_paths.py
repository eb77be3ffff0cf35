"""``Client`` and ``AsyncClient`` put a memory id in a URL as exactly one path segment."""

from __future__ import annotations

import asyncio
import inspect
import re

import httpx
import pytest

import memvault.client as client_module
import memvault.remote as remote_module
from memvault.client import AsyncClient, Client
from memvault.errors import NotFound

HOSTILE = ["../keys", "..", ".", "", "a/b", "x?y#z", "%2e%2e", "a.b"]


def _recorder(sent: list[bytes]):  # type: ignore[no-untyped-def]
    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.raw_path)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})

    return record


def _one_segment(raw: bytes) -> bool:
    parts = raw.split(b"?")[0].split(b"/")
    # b"", b"v1", b"memories", <id>, [b"history",] b""
    return parts[:3] == [b"", b"v1", b"memories"] and parts[3] not in (b"", b".", b"..")


def test_sync_client_sends_each_id_as_one_segment() -> None:
    sent: list[bytes] = []
    with Client("http://127.0.0.1:9", "k", transport=httpx.MockTransport(_recorder(sent))) as c:
        for memory_id in HOSTILE:
            assert c.get(memory_id) is None
            assert c.history(memory_id) == []
            with pytest.raises(NotFound):
                c.delete(memory_id)
            with pytest.raises(NotFound):
                c.update(memory_id, "text")
    assert sent and all(_one_segment(raw) for raw in sent), sent
    assert b"/v1/memories/a%2Eb/" in sent and b"/v1/memories/%252e%252e/" in sent


def test_async_client_sends_each_id_as_one_segment() -> None:
    sent: list[bytes] = []

    async def run() -> None:
        transport = httpx.MockTransport(_recorder(sent))
        async with AsyncClient("http://127.0.0.1:9", "k", transport=transport) as c:
            for memory_id in HOSTILE:
                assert await c.get(memory_id) is None
                assert await c.history(memory_id) == []
                with pytest.raises(NotFound):
                    await c.delete(memory_id)

    asyncio.run(run())
    assert sent and all(_one_segment(raw) for raw in sent), sent


def test_no_id_is_put_in_a_url_by_an_f_string() -> None:
    for module in (client_module, remote_module):
        source = inspect.getsource(module)
        assert not re.search(r"f[\"']/v1/[^\"']*\{", source), "build paths with _memory_path"


def test_user_and_job_ids_stay_one_segment() -> None:
    sent: list[bytes] = []
    with Client("http://127.0.0.1:9", "k", transport=httpx.MockTransport(_recorder(sent))) as c:
        for user_id in HOSTILE:
            with pytest.raises(NotFound):
                c.erase_user(user_id)
            with pytest.raises(NotFound):
                c.export_user(user_id)
            with pytest.raises(NotFound):
                c.job(user_id)
    users = [raw for raw in sent if raw.startswith(b"/v1/users/")]
    jobs = [raw for raw in sent if raw.startswith(b"/v1/jobs/")]
    # Every character of a user id is escaped: "/" and dots too (the route takes any id).
    assert b"/v1/users/%2E%2E%2Fkeys/" in users and b"/v1/users/a%2Fb/export/" in users
    assert all(b"/../" not in raw and b"/./" not in raw for raw in users), users
    # Job ids are server-made: one that could not be one is refused without a request.
    assert jobs == [b"/v1/jobs/x%3Fy%23z", b"/v1/jobs/%252e%252e", b"/v1/jobs/a%2Eb"], jobs
