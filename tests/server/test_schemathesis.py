"""Generated requests over the whole OpenAPI schema: no 5xx, no answer that breaks the schema.

The app is built at import time (schemathesis reads the schema when tests are collected), on a
private temporary home with every relevant setting given explicitly, so no MEMVAULT_* variable
of the machine can change it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    ensure_resource_availability,
    positive_data_acceptance,
    use_after_free,
)

from memvault import HashEmbedder, Memory, Settings
from memvault.server import create_app

# Over 25 operations: about 800 generated cases (MEMVAULT_SCHEMATHESIS_EXAMPLES=200 for a long run).
EXAMPLES_PER_OPERATION = int(os.environ.get("MEMVAULT_SCHEMATHESIS_EXAMPLES", "35"))

_home = Path(tempfile.mkdtemp(prefix="memvault-schemathesis-"))
_config = Settings(
    home=_home,
    embedder="hash",
    namespace="default",
    master_key=None,
    synchronous="NORMAL",
    rate_limit="100000/minute",
    auth_failure_limit="100000/minute",
    cors_origins=[],
    auth=True,
    allowed_hosts=["testserver"],  # the Host the ASGI test client sends
)
_memory = Memory(settings=_config, embedder=HashEmbedder())
KEY = _memory.api_keys.create("default", "admin").key
_memory.add_many(
    [{"messages": f"seed memory {i}", "user_id": "u", "metadata": {"n": i}} for i in range(20)]
)
app = create_app(_config, _memory)


@atexit.register
def _cleanup() -> None:
    _memory.close()
    shutil.rmtree(_home, ignore_errors=True)


schema = schemathesis.openapi.from_asgi("/openapi.json", app)
CASES: list[str] = []


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck)
)
def test_api_conforms(case) -> None:  # type: ignore[no-untyped-def]
    CASES.append(case.operation.label)
    response = case.call(headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code < 500, response.text
    # Every check but positive_data_acceptance: memvault refuses some schema-valid requests on
    # purpose (no scope, blank text, unknown filter operators) with a documented 4xx.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])


def test_at_least_500_cases_ran() -> None:
    """Runs after the generated tests (pytest keeps definition order)."""
    if not CASES:
        pytest.skip("the generated tests did not run in this session")
    assert len(CASES) >= 500, len(CASES)
    assert len(set(CASES)) >= 19


# -- stateful: sequences of calls that follow the served OpenAPI links ---------------------------

# Scenarios of up to 10 steps each; MEMVAULT_SOAK=1 runs enough for at least 2,000 steps.
SOAK = os.environ.get("MEMVAULT_SOAK") == "1"  # read at import: the hermetic fixture clears it
STATEFUL_SCENARIOS = int(os.environ.get("MEMVAULT_STATEFUL_SCENARIOS", "250" if SOAK else "30"))
STATEFUL_STEPS: list[tuple[str, int]] = []


# The memory operations (memvault's and mem0's) and the user ones: key and namespace admin stays
# in the stateless run above (chained, it revokes the very key the scenario calls with). A schema
# object of its own, so its config is its own: valid requests only, so that the chains go deep.
_memory_schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(
    path_regex="^/v[0-9]/(memories|users|batch|entities)"
)
_memory_schema.config.generation.update(modes=[GenerationMode.POSITIVE])
USERS = ("u", "v")
SCOPE_FIELDS = {"user_id", "agent_id", "run_id"}
SCOPED_BODIES = {
    "POST /v1/memories/",
    "POST /v1/memories/batch/",
    "POST /v1/memories/search/",
    "POST /v1/memories/list/",
    "POST /v3/memories/add/",
    "POST /v3/memories/search/",
    "POST /v3/memories/",
}
SCOPED_QUERIES = {"GET /v1/memories/", "DELETE /v1/memories/"}


def _scoped(body: dict[str, object]) -> bool:
    given = {k for k, v in body.items() if v is not None}
    filters = body.get("filters")
    if isinstance(filters, dict):  # mem0 2.x sends the scope inside filters
        given |= {k for k, v in filters.items() if v is not None}
    return bool(SCOPE_FIELDS & given)


# Deletes that remove memories other than the one a path names.
WIPES = {
    "DELETE /v1/users/{user_id}/",
    "DELETE /v1/memories/",
    "DELETE /v1/batch/",
    "DELETE /v2/entities/user/{user_id}/",
    "DELETE /v2/entities/agent/{agent_id}/",
    "DELETE /v2/entities/run/{run_id}/",
    "DELETE /v2/entities/app/{app_id}/",
}


class _Workflow(_memory_schema.as_state_machine()):  # type: ignore[misc]
    """Each scenario runs against a store of its own (a fresh home, key and app): a replayed
    scenario then meets the same state, which Hypothesis needs to shrink a failure."""

    def setup(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="memvault-stateful-"))
        config = _config.model_copy(update={"home": self.home})
        self.memory = Memory(settings=config, embedder=HashEmbedder())
        self.key = self.memory.api_keys.create("default", "admin").key
        self.memory.add_many(
            [
                {"messages": f"seed memory {i}", "user_id": "u", "metadata": {"n": i}}
                for i in range(5)
            ]
        )
        self.app = create_app(config, self.memory)
        self.wiped = False

    def teardown(self) -> None:
        self.memory.close()
        shutil.rmtree(self.home, ignore_errors=True)

    def get_call_kwargs(self, case):  # type: ignore[no-untyped-def]
        return {"headers": {"Authorization": f"Bearer {self.key}"}, "app": self.app}

    def before_call(self, case) -> None:  # type: ignore[no-untyped-def]
        """A generated add, search, list or delete_all without a scope gets one of two users
        (memvault refuses an unscoped one with a 4xx the stateless run already covers): the
        chains then start from memories that exist. Everything else stays as generated."""
        label = case.operation.label
        if label in SCOPED_QUERIES:
            query = case.query if isinstance(case.query, dict) else {}
            if not SCOPE_FIELDS & {k for k, v in query.items() if v is not None}:
                case.query = {**query, "user_id": USERS[len(str(query)) % len(USERS)]}
        elif label in SCOPED_BODIES and isinstance(case.body, dict):
            items = case.body.get("items") if label == "POST /v1/memories/batch/" else None
            for body in items if isinstance(items, list) else [case.body]:
                if isinstance(body, dict) and not _scoped(body):
                    body["user_id"] = USERS[len(str(body)) % len(USERS)]

    def validate_response(self, response, case, additional_checks=None, **kwargs):  # type: ignore[no-untyped-def]
        STATEFUL_STEPS.append((case.operation.label, response.status_code))
        assert response.status_code < 500, (case.operation.label, response.text)
        # The stateful checks too (they read the recorded scenario); positive_data_acceptance
        # stays out, as above.
        excluded = [positive_data_acceptance]
        if (
            response.status_code == 200
            and case.method == "DELETE"
            and case.operation.label in WIPES
        ):
            self.wiped = True
        if self.wiped:
            # After a scope was wiped (erase, delete_all, a batch delete), a memory an earlier
            # add created is rightly gone: ensure_resource_availability cannot tell.
            excluded.append(ensure_resource_availability)
        if case.operation.label == "GET /v1/memories/{memory_id}/history/":
            # A deleted memory's history stays readable (documented: the DELETE event is in it);
            # use_after_free counts any 200 under a deleted path as the memory still there.
            excluded.append(use_after_free)
        case.validate_response(
            response,
            additional_checks=additional_checks,
            excluded_checks=excluded,
            transport_kwargs=kwargs or None,
            recorder=self.recorder,
        )


@pytest.mark.timeout(1800 if SOAK else 300)
def test_linked_operations_keep_to_the_schema_over_call_sequences() -> None:
    """Scenarios of calls chained by the OpenAPI links (an add's id into get, update, delete
    and history; its user into list, export and erase): no 5xx, every answer as the schema
    says, and schemathesis' stateful checks (a created memory is found, a deleted one is gone,
    a request without the key is refused)."""
    before = len(STATEFUL_STEPS)
    _Workflow.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    steps = STATEFUL_STEPS[before:]
    linked = {label for label, status in steps if status == 200 and "{memory_id}" in label}
    # The links were followed, to ids that exist (several kinds in the long run).
    assert len(linked) >= (3 if SOAK else 1), sorted(linked)
    assert len(steps) >= (2000 if SOAK else 100), len(steps)


def test_every_served_link_names_an_operation_and_its_parameters() -> None:
    spec = app.openapi()
    links = [
        (f"{method.upper()} {path}", name, link)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        for answer in operation["responses"].values()
        for name, link in answer.get("links", {}).items()
    ]
    assert len(links) >= 20
    for source, name, link in links:
        pointer = link["operationRef"].removeprefix("#/paths/").split("/")
        path, method = pointer[0].replace("~1", "/"), pointer[1]
        target = spec["paths"][path][method]
        names = {p["name"] for p in target.get("parameters", [])}
        assert set(link["parameters"]) <= names, (source, name)
        assert all(
            v.startswith(("$response.body#/", "$request.")) for v in link["parameters"].values()
        )
