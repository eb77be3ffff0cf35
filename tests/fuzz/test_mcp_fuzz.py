"""Every MCP tool the server lists, each argument hostile in turn, over the official client with
alice's bound keys: no internal error or traceback text in any answer, no foreign canary."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import SHARED_WORDS, Scenario
from tests.fuzz.hostile import (
    CLASSICS,
    EXAMPLES,
    fuzz_settings,
    hostile_filter,
    hostile_id,
    hostile_json,
    hostile_metadata,
    hostile_scalar,
    hostile_text,
)
from tests.fuzz.mcp import McpSession, check_tool_result
from tests.fuzz.rest import short

pytestmark = pytest.mark.fuzz


def valid_arguments(tool: Any, scenario: Scenario, caller_name: str) -> dict[str, Any]:
    """The required arguments, valid (so a hostile one reaches the memory call)."""
    values = {
        "query": SHARED_WORDS,
        "text": "a fuzz note over mcp",
        "memory_id": scenario.scratch[caller_name],
    }
    required = tool.input_schema.get("required", [])
    args = {name: values.get(name, "fuzz") for name in required}
    if tool.name == "delete_memory":
        args["memory_id"] = "nothing-here"  # never delete the scratch memory by accident
    return args


def strategy_for(name: str) -> st.SearchStrategy[Any]:
    if name == "filters":
        return hostile_filter()
    if name == "metadata":
        return hostile_metadata()
    if name in ("user_id", "agent_id", "run_id", "memory_id"):
        return st.one_of(hostile_id(), hostile_scalar())
    if name in ("query", "text"):
        return st.one_of(hostile_text(), hostile_scalar())
    return st.one_of(hostile_scalar(), hostile_json())


@pytest.mark.parametrize("caller_name", ["alice_read", "alice_write"])
def test_every_tool_survives_hostile_arguments(scenario: Scenario, caller_name: str) -> None:
    caller = scenario.callers[caller_name]
    forbidden = scenario.forbidden(caller)
    with McpSession(scenario.server, caller.key) as session:
        tools = session.tools()
        assert tools, "the server lists no tools"
        failures = []
        # Each argument of each tool with each classic value, deterministically...
        for tool in tools:
            for name in tool.input_schema.get("properties", {}):
                for hostile in CLASSICS:
                    args = {**valid_arguments(tool, scenario, caller_name), name: hostile}
                    what = f"{caller_name} {tool.name}({name}={short(hostile)})"
                    try:
                        check_tool_result(session.call(tool.name, args), forbidden, what)
                    except AssertionError as exc:
                        failures.append(str(exc).splitlines()[0][:400])
        assert not failures, "\n".join(failures)

        # ...then generated values.
        @fuzz_settings(max(3, EXAMPLES // 2))
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            for tool in tools:
                for name in tool.input_schema.get("properties", {}):
                    hostile = data.draw(strategy_for(name), label=f"{tool.name}.{name}")
                    args = {**valid_arguments(tool, scenario, caller_name), name: hostile}
                    what = f"{caller_name} {tool.name}({name}={short(hostile)})"
                    check_tool_result(session.call(tool.name, args), forbidden, what)

        check()
    gone = scenario.foreign_intact()
    assert not gone, f"canaries gone: {gone}"
