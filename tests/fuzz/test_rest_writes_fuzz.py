"""Nothing half-written over REST: a write the server refuses (or fails) leaves the store exactly
as it was, and no write, refused or not, leaves a row that later reads cannot answer.

A separate module (so a separate server): a poisoned row here does not fail the route tests.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given

from tests.fuzz.conftest import Scenario, snapshot
from tests.fuzz.hostile import (
    CLASSICS,
    EXAMPLES,
    dumps,
    fuzz_settings,
    hostile_messages,
    hostile_metadata,
)
from tests.fuzz.rest import Built, send, short

pytestmark = pytest.mark.fuzz


def writes(scratch: str) -> dict[str, Any]:
    """name -> (method, path, body builder) for alice's write key."""
    return {
        "add metadata": ("POST", "/v1/memories/", lambda v: {"messages": "a note", "metadata": v}),
        "add messages": ("POST", "/v1/memories/", lambda v: {"messages": v}),
        "mem0 add metadata": (
            "POST",
            "/v3/memories/add/",
            lambda v: {"messages": "a mem0 note", "metadata": v},
        ),
        "batch last item": (
            "POST",
            "/v1/memories/batch/",
            lambda v: {
                "items": [
                    {"messages": "valid batch one"},
                    {"messages": "valid batch two"},
                    {"messages": "the last", "metadata": v},
                ]
            },
        ),
        "update metadata": (
            "PUT",
            f"/v1/memories/{scratch}/",
            lambda v: {"text": "scratch, rewritten", "metadata": v},
        ),
        "update text": ("PUT", f"/v1/memories/{scratch}/", lambda v: {"text": v}),
    }


def check_write(scenario: Scenario, scratch: str, name: str, value: Any) -> None:
    method, path, body = writes(scratch)[name]
    caller = scenario.callers["alice_write"]
    memory = scenario.server.memory
    before = snapshot(memory)
    with scenario.server.http(caller.key) as client:
        what = f"{name}({short(value)})"
        content = dumps(body(value)).encode("utf-8", "surrogatepass")
        response = send(client, Built(method, scenario.server.base_url + path, content, what))
        if response.status_code >= 400:
            assert snapshot(memory) == before, f"{what}: HTTP {response.status_code} but it wrote"
        assert response.status_code < 500, f"{what}: HTTP {response.status_code}"
        # Whatever was stored can be read back, listed and searched.
        reads = (
            ("GET", f"/v1/memories/{scratch}/", None),
            ("GET", "/v1/memories/?page_size=1000", None),
            ("POST", "/v1/memories/search/", {"query": "note", "top_k": 100}),
        )
        for read_method, read_path, read_body in reads:
            try:
                read = client.request(read_method, read_path, json=read_body)
            except httpx.TransportError as exc:
                raise AssertionError(
                    f"after {what}: {read_method} {read_path} got no HTTP answer ({exc!r})"
                ) from exc
            assert read.status_code < 500, (
                f"after {what}: {read_method} {read_path} answers HTTP {read.status_code}"
            )


@pytest.mark.parametrize(
    "name",
    [
        "add metadata",
        "add messages",
        "mem0 add metadata",
        "batch last item",
        "update metadata",
        "update text",
    ],
)
def test_refused_rest_writes_leave_nothing_behind(scenario: Scenario, name: str) -> None:
    # A memory of alice's own for this case: a row poisoned by one case does not fail the next.
    added = scenario.server.memory.add(f"alice's scratch for {name}", user_id="alice")
    scratch = added["results"][0]["id"]
    failures = []
    for value in CLASSICS:
        try:
            check_write(scenario, scratch, name, value)
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0][:300])
    assert not failures, "\n".join(failures)

    strategy = hostile_messages() if "messages" in name or name == "update text" else None

    @fuzz_settings(max(3, EXAMPLES // 2))
    @given(value=strategy or hostile_metadata())
    def check(value: Any) -> None:
        check_write(scenario, scratch, name, value)

    check()
