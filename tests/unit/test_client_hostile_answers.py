"""Whatever a server (or a proxy in front of it) answers, ``Client`` and ``AsyncClient`` raise
only memvault errors, and never follow an answer anywhere else with the API key."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from memvault.client import AsyncClient, Client
from memvault.errors import MemvaultError, RateLimited

Answer = Callable[[httpx.Request], httpx.Response]

HOSTILE: dict[str, Answer] = {
    "html_page": lambda r: httpx.Response(200, text="<html>proxy login</html>"),
    "empty_body": lambda r: httpx.Response(200),
    "wrong_shape_list": lambda r: httpx.Response(200, json=[1, 2, 3]),
    "wrong_shape_null": lambda r: httpx.Response(200, json=None),
    "wrong_types": lambda r: httpx.Response(
        200, json={"results": 5, "count": "many", "next": {}, "status": []}
    ),
    "redirect_elsewhere": lambda r: httpx.Response(
        307, headers={"Location": "https://attacker.invalid/steal"}
    ),
    "error_not_json": lambda r: httpx.Response(500, text="oops"),
    "error_wrong_shape": lambda r: httpx.Response(400, json={"error": ["x"]}),
}

CALLS: dict[str, Callable[[Any], Any]] = {
    "get_all": lambda c: c.get_all(user_id="alice"),
    "count": lambda c: c.count(user_id="alice"),
    "get_page": lambda c: c.get_page(user_id="alice", top_k=10, offset=5),
    "search": lambda c: c.search("q", user_id="alice"),
    "get": lambda c: c.get("m1"),
    "history": lambda c: c.history("m1"),
    "add": lambda c: c.add("a fact", user_id="alice"),
    "add_many": lambda c: c.add_many([{"messages": "a fact", "user_id": "alice"}]),
    "job": lambda c: c.job("j1"),
    "jobs": lambda c: c.jobs(),
    "namespaces": lambda c: c.namespaces(),
    "namespace_settings": lambda c: c.namespace_settings(),
    "erase_user": lambda c: c.erase_user("alice"),
}


def _recording(answer: Answer, hosts: list[str]) -> Answer:
    def respond(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return answer(request)

    return respond


@pytest.mark.parametrize("answer", sorted(HOSTILE))
@pytest.mark.parametrize("call", sorted(CALLS))
def test_sync_client_raises_memvault_errors_only(answer: str, call: str) -> None:
    hosts: list[str] = []
    transport = httpx.MockTransport(_recording(HOSTILE[answer], hosts))
    with Client("http://127.0.0.1:9", "k", transport=transport) as client:
        # A memvault error is fine (a correct answer too); any other exception fails the test.
        with contextlib.suppress(MemvaultError):
            CALLS[call](client)
    assert set(hosts) == {"127.0.0.1"}


@pytest.mark.parametrize("answer", sorted(HOSTILE))
@pytest.mark.parametrize("call", sorted(CALLS))
def test_async_client_raises_memvault_errors_only(answer: str, call: str) -> None:
    hosts: list[str] = []
    transport = httpx.MockTransport(_recording(HOSTILE[answer], hosts))

    async def run() -> None:
        async with AsyncClient("http://127.0.0.1:9", "k", transport=transport) as client:
            with contextlib.suppress(MemvaultError):
                await CALLS[call](client)

    asyncio.run(run())
    assert set(hosts) == {"127.0.0.1"}


@pytest.mark.parametrize(
    "header", ["Wed, 21 Oct 2037 07:28:00 GMT", "soon", "-3", "1e9", "", "9" * 5000]
)
def test_a_retry_after_that_is_not_seconds_still_gives_rate_limited(header: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": "rate_limited", "message": "slow down"}}
        return httpx.Response(429, json=body, headers={"Retry-After": header})

    with Client("http://127.0.0.1:9", "k", transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(RateLimited) as raised:
            client.count(user_id="alice")
    assert raised.value.retry_after >= 1


# An export is JSON lines: an empty body (no rows) and a line that is an object are well formed.
NOT_EXPORTS = sorted(set(HOSTILE) - {"empty_body", "wrong_shape_null", "wrong_types"})


@pytest.mark.parametrize("answer", NOT_EXPORTS)
def test_export_raises_memvault_errors_only(answer: str) -> None:
    hosts: list[str] = []
    transport = httpx.MockTransport(_recording(HOSTILE[answer], hosts))
    with Client("http://127.0.0.1:9", "k", transport=transport) as client:
        with pytest.raises(MemvaultError):
            list(client.export_user("alice"))

    async def run() -> None:
        async with AsyncClient("http://127.0.0.1:9", "k", transport=transport) as client:
            with pytest.raises(MemvaultError):
                async for _ in await client.export_user("alice"):
                    pass

    asyncio.run(run())
    assert set(hosts) == {"127.0.0.1"}
