"""Hostile mem0 filters on every surface that takes them: the library, the REST and mem0 routes,
and the MCP tools. A filter either answers 2xx with only the caller's rows, or is refused with a
stable 4xx code; never another scope's row, never a 5xx.

The review's finding: a filter key was spliced into a SQL string literal, so with a quote, a
``char(34)`` for the double quote the parser refused, and ``OR 1`` a bound read key of alice read
every tenant's memories. ``test_review_exploit_*`` replay it on each surface.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from memvault import MemvaultError
from tests.fuzz.conftest import SHARED_WORDS, Library, Scenario
from tests.fuzz.hostile import (
    EXAMPLES,
    EXPLOIT_FILTERS,
    LARGE_FILTERS,
    dumps,
    fuzz_settings,
    hostile_filter,
    materialize,
)
from tests.fuzz.mcp import McpSession, check_tool_result
from tests.fuzz.rest import check_answer, short

pytestmark = pytest.mark.fuzz

# The routes that take filters, with a body that reaches the query ("filters" goes in).
FILTER_ROUTES = {
    "POST /v1/memories/search/": {"query": SHARED_WORDS, "top_k": 100},
    "POST /v1/memories/list/": {"page_size": 1000},
    "POST /v3/memories/search/": {"query": SHARED_WORDS, "top_k": 100},
    "POST /v3/memories/": {"page_size": 1000},
}
REST_CALLERS = ["alice_read", "other_write"]


def _alice_scope_of(caller_name: str) -> dict[str, Any]:
    return {} if caller_name.startswith("alice") else {"user_id": "carol"}


def rest_filter_call(scenario: Scenario, route: str, caller_name: str, filters: Any) -> int:
    caller = scenario.callers[caller_name]
    method, path = route.split(" ", 1)
    body = {**FILTER_ROUTES[route], **_alice_scope_of(caller_name), "filters": filters}
    if path == "/v3/memories/":
        # mem0 2.x sends the scope inside the filters; a bound key gets it pinned there, an
        # unbound one names it (after the hostile part, as mem0's client would add it).
        scope = body.pop("user_id", None)
        filters = materialize(filters)
        if scope is not None and isinstance(filters, dict) and "user_id" not in filters:
            body["filters"] = {**filters, "user_id": scope}
    with scenario.server.http(caller.key) as client:
        response = client.request(
            method,
            path,
            content=dumps(body).encode("utf-8", "surrogatepass"),
            headers={"content-type": "application/json"},
        )
    status = check_answer(
        response, scenario.forbidden(caller), f"{caller_name} {route} {short(filters)}"
    )
    if status < 300:
        assert status == 200
    else:
        assert 400 <= status < 500
    return status


# --- the concrete exploit, as named regressions ------------------------------------------------


@pytest.mark.parametrize("filters", EXPLOIT_FILTERS, ids=lambda f: repr(f)[:60])
@pytest.mark.parametrize("route", list(FILTER_ROUTES))
def test_review_exploit_rest(scenario: Scenario, route: str, filters: dict[str, Any]) -> None:
    """alice's bound read key with the review's filter keys: no bob, no other tenant, no 5xx."""
    rest_filter_call(scenario, route, "alice_read", filters)
    rest_filter_call(scenario, route, "other_write", filters)


@pytest.mark.parametrize("filters", EXPLOIT_FILTERS, ids=lambda f: repr(f)[:60])
def test_review_exploit_library(library: Library, filters: dict[str, Any]) -> None:
    check_library_filter(library, filters)


@pytest.mark.parametrize("filters", EXPLOIT_FILTERS, ids=lambda f: repr(f)[:60])
def test_review_exploit_mcp(scenario: Scenario, filters: dict[str, Any]) -> None:
    caller = scenario.callers["alice_read"]
    with McpSession(scenario.server, caller.key) as session:
        for tool, args in (
            ("search_memories", {"query": SHARED_WORDS, "top_k": 100}),
            ("list_memories", {"limit": 1000}),
        ):
            result = session.call(tool, {**args, "filters": filters})
            check_tool_result(result, scenario.forbidden(caller), f"{tool} {short(filters)}")


# --- huge filters, as named regressions ---------------------------------------------------------


@pytest.mark.parametrize("name", list(LARGE_FILTERS))
@pytest.mark.parametrize("route", list(FILTER_ROUTES))
def test_large_filters_rest(scenario: Scenario, route: str, name: str) -> None:
    rest_filter_call(scenario, route, "alice_read", LARGE_FILTERS[name])


@pytest.mark.parametrize("name", list(LARGE_FILTERS))
def test_large_filters_library(library: Library, name: str) -> None:
    check_library_filter(library, LARGE_FILTERS[name])


def test_large_filters_mcp(scenario: Scenario) -> None:
    """Through the official client (which cannot send documents deeper than it serializes)."""
    caller = scenario.callers["alice_read"]
    failures = []
    with McpSession(scenario.server, caller.key) as session:
        for name, filters in LARGE_FILTERS.items():
            for tool, args in (
                ("search_memories", {"query": SHARED_WORDS}),
                ("list_memories", {}),
            ):
                try:
                    result = session.call(tool, {**args, "filters": filters})
                    check_tool_result(result, scenario.forbidden(caller), f"{tool} {name}")
                except AssertionError as exc:
                    failures.append(str(exc).splitlines()[0][:300])
    assert not failures, "\n".join(failures)


# --- generated -------------------------------------------------------------------------------


@pytest.mark.parametrize("caller_name", REST_CALLERS)
@pytest.mark.parametrize("route", list(FILTER_ROUTES))
def test_hostile_filters_rest(scenario: Scenario, route: str, caller_name: str) -> None:
    @fuzz_settings()
    @given(filters=hostile_filter())
    def check(filters: Any) -> None:
        rest_filter_call(scenario, route, caller_name, filters)

    check()


def test_hostile_filters_mcp(scenario: Scenario) -> None:
    caller = scenario.callers["alice_read"]
    forbidden = scenario.forbidden(caller)
    with McpSession(scenario.server, caller.key) as session:

        @fuzz_settings()
        @given(filters=hostile_filter(), tool=st.sampled_from(["search_memories", "list_memories"]))
        def check(filters: Any, tool: str) -> None:
            args = {"query": SHARED_WORDS, "top_k": 100} if tool == "search_memories" else {}
            result = session.call(tool, {**args, "filters": filters})
            check_tool_result(result, forbidden, f"{tool} {short(filters)}")

        check()


def check_library_filter(library: Library, filters: Any) -> None:
    """search, get_all and count as alice and as carol of ``other``: only their rows, or a 4xx."""
    filters = materialize(filters)
    forbidden = library.forbidden_for_alice()
    other = library.memory.namespaced("other")
    other_forbidden = [c.marker for c in library.canaries if c.namespace == "default"] + [
        c.id for c in library.canaries if c.namespace == "default"
    ]
    calls = [
        (
            "search",
            lambda: library.memory.search(
                SHARED_WORDS, user_id="alice", filters=filters, top_k=100
            ),
            forbidden,
        ),
        (
            "get_all",
            lambda: library.memory.get_all(user_id="alice", filters=filters, top_k=1000),
            forbidden,
        ),
        ("count", lambda: library.memory.count(user_id="alice", filters=filters), forbidden),
        (
            "other.get_all",
            lambda: other.get_all(user_id="carol", filters=filters, top_k=1000),
            other_forbidden,
        ),
        (
            "other.search",
            lambda: other.search(SHARED_WORDS, user_id="carol", filters=filters),
            other_forbidden,
        ),
    ]
    alice_total = library.memory.count(user_id="alice")
    for name, call, hidden in calls:
        try:
            result = call()
        except MemvaultError as exc:
            assert exc.http_status < 500, (
                f"{name}: {type(exc).__name__} [{exc.code}] {exc.message[:200]}"
            )
            continue
        except Exception as exc:
            raise AssertionError(f"{name}: {type(exc).__name__} is not a MemvaultError") from exc
        if name == "count":
            assert result <= alice_total, f"count saw {result} rows; alice has {alice_total}"
            continue
        text = repr(result)
        leaked = [marker for marker in hidden if marker in text]
        assert not leaked, f"{name} leaked {leaked[:4]}"
        for row in result["results"]:
            if name.startswith("other"):
                assert row["user_id"] == "carol", f"{name} returned a row of {row['user_id']}"
            else:
                assert row["user_id"] == "alice", f"{name} returned a row of {row['user_id']}"


@fuzz_settings(max(EXAMPLES * 4, 20))
@given(filters=hostile_filter())
@example(filters={"x' OR 1 OR '": "y"})
@example(filters={"a\"') OR 1=1 --": 1})
@example(filters={"OR": [{"topic": f"v{i}"} for i in range(5000)]})
@example(filters={"topic": {"in": [f"v{i}" for i in range(1001)]}})
def test_hostile_filters_library(library: Library, filters: Any) -> None:
    check_library_filter(library, filters)
