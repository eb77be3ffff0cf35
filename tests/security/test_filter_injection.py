"""Hostile filters on every route that takes filters never cross a scope and never answer 5xx.

Two tenants (namespaces), three users each, canary memories with hostile metadata keys. With a
READ key bound to alice, generated filters (quotes, char(34), comment markers, OR 1=1, unicode,
lone surrogates, NUL, NaN, huge numbers, long texts) go to the REST routes, the mem0 routes, the
MCP tools and the library. Every answer is 2xx with alice's rows only, or a 4xx with a stable
code: never another scope's canary, never a 5xx.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given, settings

from memvault import InvalidInput, Memory, StorageError
from memvault.filters import MAX_CONDITIONS
from tests.hostile import INJECTION_KEY, INJECTION_KEY_IN_AND, fuzz_examples, hostile_filters
from tests.mcp.test_mcp import http_client
from tests.server.conftest import RunningServer

NAMESPACES = ("default", "tenant-b")
USERS = ("alice", "bob", "carol")
ALICE = "CANARY|default|alice|"
STABLE_4XX = {"invalid_filter", "invalid_input", "forbidden"}
ODD_METADATA = {
    INJECTION_KEY: "x",
    INJECTION_KEY_IN_AND: "x",
    "' OR 1 OR '": 1,
    "a.b": "c",
    'q"': ["z"],
    "it's": True,
}


def seed(memory: Memory) -> None:
    for namespace in NAMESPACES:
        view = memory.namespaced(namespace)
        view.add_many(
            [
                {
                    "messages": f"CANARY|{namespace}|{user}|{i} note",
                    "user_id": user,
                    "metadata": {"kind": "note", "n": i, **(ODD_METADATA if i % 2 else {})},
                }
                for user in USERS
                for i in range(4)
            ]
        )
        view.add(f"CANARY|{namespace}|agent|0 note", agent_id="shared", metadata=ODD_METADATA)


@pytest.fixture
def tenants(start_server: Callable[..., RunningServer]) -> RunningServer:
    running = start_server(rate_limit="1000000/minute")
    seed(running.memory)
    return running


def only_alice(results: list[dict[str, Any]]) -> None:
    leaked = [r["memory"] for r in results if not r["memory"].startswith(ALICE)]
    assert not leaked, f"another scope's canary: {leaked}"


# --- REST and the mem0 routes ------------------------------------------------------------------

ROUTES = {
    "/v1/memories/search/": {"query": "CANARY note", "top_k": 100},
    "/v1/memories/list/": {"page_size": 1000},
    "/v3/memories/search/": {"query": "CANARY note", "top_k": 100},
    "/v3/memories/": {"page_size": 1000},
}


def post_filter(http: Any, route: str, filters: Any) -> list[dict[str, Any]] | None:
    """The results, or None for a 4xx with a stable code; fails on anything else."""
    # json.dumps escapes lone surrogates and writes NaN: the server must cope with both.
    body = json.dumps({**ROUTES[route], "filters": filters})
    answer = http.post(route, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code < 500, (route, filters, answer.text)
    if answer.status_code >= 400:
        assert answer.json()["error"]["code"] in STABLE_4XX, (route, answer.text)
        return None
    results: list[dict[str, Any]] = answer.json()["results"]
    only_alice(results)
    return results


@settings(
    max_examples=fuzz_examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(filters=hostile_filters)
def test_rest_routes_never_leak_nor_fail_on_hostile_filters(
    tenants: RunningServer, filters: dict[str, Any]
) -> None:
    with tenants.http(tenants.key("read", user_id="alice")) as http:
        for route in ROUTES:
            post_filter(http, route, filters)


def test_filter_key_injection_cannot_widen_scope(tenants: RunningServer) -> None:
    """The review's exploit: the key closed the JSON path with char(34) and added OR 1."""
    with tenants.http(tenants.key("read", user_id="alice")) as http:
        for route, filters in itertools.product(
            ROUTES,
            (
                {INJECTION_KEY_IN_AND: "*"},  # leaked bob's and tenant-b's rows before
                {INJECTION_KEY: "*"},
                {INJECTION_KEY: "x"},
                {"x' OR 1 OR '": 1},
            ),
        ):
            results = post_filter(http, route, filters)
            assert results is not None
            # The key now is just a key: alice's rows that have it, and nothing else.
            expected = 0 if "x' OR" in next(iter(filters)) else 2
            assert len(results) == expected, (route, filters, results)


def test_quotes_in_a_key_answer_rows_not_a_500(tenants: RunningServer) -> None:
    with tenants.http(tenants.key("read", user_id="alice")) as http:
        for route, (key, value) in itertools.product(
            ROUTES, (("it's", True), ('q"', {"contains": "z"}), ("a.b", "c"))
        ):
            results = post_filter(http, route, {key: value})
            assert results is not None and len(results) == 2, (route, key, results)


BAD_FILTERS = {
    "lone surrogate in a key": '{"\\ud800": 1}',
    "lone surrogate in a value": '{"kind": {"in": ["note", "\\udfff"]}}',
    "lone surrogate in an operator": '{"kind": {"\\ud800": 1}}',
    "NUL in a value": '{"kind": "a\\u0000b"}',
    "NaN": '{"n": {"gt": NaN}}',
    "integer over 64 bits": '{"n": 99999999999999999999999}',
    "too many conditions": json.dumps({"n": {"in": list(range(MAX_CONDITIONS + 1))}}),
    "too deep": '{"NOT": [' * 20 + '{"n": 1}' + "]}" * 20,
}


def test_unbindable_filters_are_invalid_filter(tenants: RunningServer) -> None:
    """Finding 7: these answered 500 (sqlite could not bind them or hit its depth limit).

    Lone surrogates are refused by the library as ``invalid_filter`` and, over REST, already by
    the body check as ``invalid_input``: either way a 422 with a stable code."""
    with tenants.http(tenants.key("read", user_id="alice")) as http:
        for route, (name, raw) in itertools.product(ROUTES, BAD_FILTERS.items()):
            body = json.dumps(ROUTES[route])[:-1] + f', "filters": {raw}}}'
            answer = http.post(route, content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == 422, (route, name, answer.text)
            # The HTTP layer refuses a string that is not Unicode before any route runs.
            codes = (
                {"invalid_filter", "invalid_input"} if "surrogate" in name else {"invalid_filter"}
            )
            assert answer.json()["error"]["code"] in codes, (route, name)


def test_the_largest_filter_allowed_answers(tenants: RunningServer) -> None:
    # 998 conditions, and the user_id that alice's bound key adds: 999.
    filters = {"OR": [{"n": {"in": [i, -i]}} for i in range(MAX_CONDITIONS // 2 - 1)]}
    with tenants.http(tenants.key("read", user_id="alice")) as http:
        for route in ROUTES:
            results = post_filter(http, route, filters)
            assert results is not None and len(results) == 4, route


# --- MCP ---------------------------------------------------------------------------------------


@pytest.fixture
def mcp_call(tenants: RunningServer) -> Iterator[Callable[[str, dict[str, Any]], Any]]:
    """One MCP session (official client, streamable HTTP) kept open across generated cases."""
    key = tenants.key("read", user_id="alice")
    with anyio.from_thread.start_blocking_portal() as portal:
        client = portal.wrap_async_context_manager(http_client(tenants, key))
        with client as session:
            yield lambda tool, arguments: portal.call(session.call_tool, tool, arguments)


MCP_TOOLS = {
    "search_memories": {"query": "CANARY note", "top_k": 100},
    "list_memories": {"limit": 1000},
}


MCP_ERROR = r"(Error executing tool \w+: )?\[(" + "|".join(sorted(STABLE_4XX)) + r")\] "


def call_mcp(call: Callable[[str, dict[str, Any]], Any], tool: str, filters: Any) -> Any:
    result = call(tool, {**MCP_TOOLS[tool], "filters": filters})
    if result.is_error:
        # A MemvaultError is "[code] message" (after the SDK's "Error executing tool x: ").
        text = result.content[0].text
        assert re.match(MCP_ERROR, text), (tool, filters, text)
        return None
    only_alice(result.structured_content["results"])
    return result.structured_content["results"]


def mcp_can_send(filters: Any) -> bool:
    """The client refuses to encode lone surrogates and NaN itself; the server never sees them."""
    try:
        json.dumps(filters, ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, UnicodeEncodeError):
        return False
    return True


@settings(
    max_examples=fuzz_examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(filters=hostile_filters)
def test_mcp_tools_never_leak_nor_fail_on_hostile_filters(
    mcp_call: Callable[[str, dict[str, Any]], Any], filters: dict[str, Any]
) -> None:
    if not mcp_can_send(filters):
        return
    for tool in MCP_TOOLS:
        call_mcp(mcp_call, tool, filters)


def test_filter_key_injection_cannot_widen_scope_over_mcp(
    mcp_call: Callable[[str, dict[str, Any]], Any],
) -> None:
    for tool, key in itertools.product(MCP_TOOLS, (INJECTION_KEY, INJECTION_KEY_IN_AND)):
        results = call_mcp(mcp_call, tool, {key: "*"})
        assert results is not None and len(results) == 2, tool
        assert call_mcp(mcp_call, tool, {"kind": {"in": ["note", "a\x00b"]}}) is None


# --- the library -------------------------------------------------------------------------------


@pytest.fixture
def library(tenants: RunningServer) -> Memory:
    return tenants.memory


@settings(
    max_examples=fuzz_examples(100),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(filters=hostile_filters)
def test_library_never_leaks_nor_fails_on_hostile_filters(
    library: Memory, filters: dict[str, Any]
) -> None:
    try:
        listed = library.get_all(user_id="alice", filters=filters, top_k=1000)["results"]
    except InvalidInput:
        return  # InvalidFilter, or a scope given twice: the same filter fails the same everywhere
    only_alice(listed)
    only_alice(
        library.search("CANARY note", user_id="alice", filters=filters, top_k=100)["results"]
    )
    assert library.count(user_id="alice", filters=filters) == len(listed)


def test_filter_key_injection_cannot_widen_scope_in_the_library(library: Memory) -> None:
    for namespace in NAMESPACES:
        view = library.namespaced(namespace)
        for user in USERS:
            found = view.get_all(user_id=user, filters={INJECTION_KEY: "*"})["results"]
            assert sorted(r["memory"] for r in found) == [
                f"CANARY|{namespace}|{user}|{i} note" for i in (1, 3)
            ]
            assert view.count(user_id=user, filters={INJECTION_KEY: "*"}) == 2


# --- the authorizer, behind the compiler -------------------------------------------------------


def test_the_store_refuses_attach_and_pragma_writes(library: Memory, tmp_path: Any) -> None:
    store = library._store
    for sql in (f"ATTACH DATABASE '{tmp_path / 'x.db'}' AS x", "PRAGMA writable_schema=1"):
        with pytest.raises(StorageError, match=r"SQLITE_AUTH|SQLITE_ERROR"):
            store._query(sql)


def test_a_filtered_read_may_only_read_memories(library: Memory) -> None:
    """Were a filter ever spliced again, it still could not read keys or call other functions."""
    store = library._store
    allowed = "SELECT m.id FROM memories m WHERE coalesce(typeof(m.role) <> 'x', 0)"
    assert store._query(allowed, filtered=True)
    for sql in (
        "SELECT m.id FROM memories m WHERE EXISTS (SELECT 1 FROM api_keys)",
        "SELECT m.id FROM memories m WHERE (SELECT count(*) FROM sqlite_master) > 0",
        "SELECT m.id FROM memories m WHERE length(randomblob(9)) > 0",
        "SELECT m.id FROM memories m WHERE (SELECT value FROM store_meta LIMIT 1) IS NULL",
    ):
        with pytest.raises(StorageError, match=r"SQLITE_AUTH|SQLITE_ERROR"):
            store._query(sql, filtered=True)
    assert store._query("SELECT count(*) FROM api_keys")  # unfiltered reads are not narrowed
    assert isinstance(store._db(), sqlite3.Connection)
