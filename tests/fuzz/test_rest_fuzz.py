"""Every REST operation of the OpenAPI document, with hostile values in each slot, for four keys.

The operations are read from the app's OpenAPI document (a new route is fuzzed without a change
here; ``test_openapi_matches_the_running_server`` proves the list is the live server's). For each
operation and each key (alice's bound read and write keys in ``default``, an unbound write and an
unbound admin key of ``other``), Hypothesis puts one hostile value in one slot (a path or query
parameter, a body field, the whole body, an unknown field) with every other slot valid, so the
request reaches the code behind validation. Invariants: no 5xx, errors as
``{"error": {"code", "message"}}``, and no canary the key may not see, ever.

Destructive routes are covered like the others: the hostile value is the only thing that names a
target, so they act on nothing that exists, and each case ends by checking that every other
scope's canary is still there.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import Scenario
from tests.fuzz.hostile import (
    CLASSICS,
    EXAMPLES,
    fuzz_settings,
    hostile_filter,
    hostile_id,
    hostile_json,
    hostile_messages,
    hostile_metadata,
    hostile_query_value,
    hostile_scalar,
)
from tests.fuzz.rest import build, check_answer, offline_operations, operations_of, send

pytestmark = pytest.mark.fuzz

OPERATIONS = offline_operations()
# 112 operation-and-key cases, each example one request per slot (after the classics).
ROUTE_EXAMPLES = max(2, EXAMPLES // 6)
CALLER_NAMES = ["alice_read", "alice_write", "other_write", "other_admin"]


def strategy_for(slot: str) -> st.SearchStrategy[Any]:
    name = slot.split(":", 1)[-1].rsplit(".", 1)[-1]
    if slot.startswith("path:"):
        return hostile_id()
    if slot.startswith("query:"):
        return hostile_query_value()
    if slot == "body":
        return st.one_of(hostile_json(), st.dictionaries(hostile_id(), hostile_json(), max_size=3))
    if name == "filters":
        return hostile_filter()
    if name == "metadata":
        return hostile_metadata()
    if name == "messages":
        return hostile_messages()
    if name == "<extra>":
        return hostile_id()
    return st.one_of(hostile_scalar(), hostile_json())


def test_openapi_matches_the_running_server(scenario: Scenario) -> None:
    with scenario.server.http() as client:
        live = operations_of(client.get("/openapi.json").json())
    assert {op.id for op in live} == {op.id for op in OPERATIONS}


@pytest.mark.parametrize("caller_name", CALLER_NAMES)
@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.id)
def test_every_route_survives_hostile_input(scenario: Scenario, op: Any, caller_name: str) -> None:
    caller = scenario.callers[caller_name]
    forbidden = scenario.forbidden(caller)
    slots = op.slots()

    with scenario.server.http(caller.key) as client:
        # Every slot with one value of each hostile class, deterministically...
        failures = []
        for slot in slots:
            # A URL carries text: the deep documents go in bodies only.
            url_slot = slot.startswith(("path:", "query:"))
            for hostile in CLASSICS:
                if url_slot and not isinstance(hostile, str):
                    hostile = str(hostile)
                if url_slot and len(hostile) > 1000:
                    continue
                built = build(op, caller, scenario, slot, hostile)
                try:
                    check_answer(send(client, built), forbidden, f"{caller_name} {built.note}")
                except AssertionError as exc:
                    failures.append(str(exc).splitlines()[0][:400])
        assert not failures, "\n".join(failures)

        # ...then generated values, one per slot in each example.
        @fuzz_settings(ROUTE_EXAMPLES)
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            for slot in slots:  # every slot in every example: each is hit even in CI
                hostile = data.draw(strategy_for(slot), label=slot)
                built = build(op, caller, scenario, slot, hostile)
                check_answer(send(client, built), forbidden, f"{caller_name} {built.note}")

        check()
    gone = scenario.foreign_intact()
    assert not gone, f"after {op.id} with {caller_name}: canaries gone: {gone}"
