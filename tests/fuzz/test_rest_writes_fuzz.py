"""Nothing half-written over REST: a write the server refuses (or fails) leaves the store exactly
as it was, and no write, refused or not, leaves a row that later reads cannot answer.

A separate module (so a separate server): a poisoned row here does not fail the route tests.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import example, given

from memvault import MemvaultError
from memvault.validation import check_id
from tests.fuzz.conftest import Scenario, snapshot
from tests.fuzz.hostile import (
    CLASSICS,
    EXAMPLES,
    dumps,
    fuzz_settings,
    hostile_id,
    hostile_messages,
    hostile_metadata,
)
from tests.fuzz.rest import Built, check_answer, send, short

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
    @given(value=strategy if strategy is not None else hostile_metadata())
    def check(value: Any) -> None:
        check_write(scenario, scratch, name, value)

    check()


def _valid_id(text: str) -> bool:
    try:
        check_id("user_id", text)
        text.encode("utf-8")
    except (MemvaultError, UnicodeEncodeError):
        return False
    return True


@fuzz_settings(max(3, EXAMPLES // 2))
@given(user_id=hostile_id().filter(_valid_id))
@example(user_id="\u6e21\u8fba")  # a Japanese name: outside Latin-1
@example(user_id="\uff21\uff4c\uff49\uff43\uff45")  # fullwidth: its own user, not folded
@example(user_id="a'\"--;")
@example(user_id="\U0001f600")
@example(user_id=".")  # found by make fuzz: a client must send it as %2E
@example(user_id="..")
def test_users_with_hostile_ids_can_be_exported_rotated_and_erased(
    scenario: Scenario, user_id: str
) -> None:
    """The user routes for a user that exists, whose valid id is made of hostile characters."""
    memory = scenario.server.memory
    memory.add(f"a memory of a user named {user_id!r}", user_id=user_id)
    # As docs/rest.md says: one percent-encoded segment, dots as %2E (no dot-segments).
    segment = quote(user_id.encode("utf-8"), safe="").replace(".", "%2E")
    with scenario.server.http(scenario.server.admin_key) as client:
        for method, path in (
            ("GET", f"/v1/users/{segment}/export/"),
            ("POST", f"/v1/users/{segment}/rotate-key/"),
            ("DELETE", f"/v1/users/{segment}/"),
        ):
            response = client.request(method, path)
            check_answer(response, [], f"{method} {path} for user {user_id!r}")
            assert response.status_code < 300, f"{method} {path}: HTTP {response.status_code}"
