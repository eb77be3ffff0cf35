"""Every route of the app x every kind of key: the status each must get.

The expectations below are written out by hand (they are the specification, as docs/rest.md
states it), not derived from ``security.policy``, so a policy change that loosens a rule fails
here. A route added to the app without a row here fails ``test_the_matrix_covers_every_route``.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from memvault import NotFound, Unauthorized
from memvault.security.policy import RULES
from memvault.server.app import PUBLIC_PATHS
from memvault.server.auth import Require
from memvault.server.bodies import CheckedRoute
from tests.polling import wait_for

from .conftest import RunningServer

MCP_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "matrix", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
PASS = "pass"  # any answer but 401, 403, 429 or 5xx (the MCP transport's own statuses vary)


@dataclass(frozen=True)
class Row:
    """``rule``: read | write | admin | operator | export | erase. ``ok``: the status for a key
    that may act, in its own namespace on its own user; ``other_user``: for a key bound to bob
    acting on alice; ``other_ns``: for a key of another namespace naming default's things."""

    method: str
    template: str
    rule: str
    ok: int | str
    other_user: int | str
    other_ns: int | str
    body: Any = None


ROWS = [
    Row("POST", "/v1/memories/", "write", 200, 403, 200, {"messages": "x", "user_id": "alice"}),
    Row(
        "POST",
        "/v1/memories/batch/",
        "write",
        200,
        403,
        200,
        {"items": [{"messages": "y", "user_id": "alice"}]},
    ),
    Row("POST", "/v1/memories/search/", "read", 200, 403, 200, {"query": "x", "user_id": "alice"}),
    Row("POST", "/v1/memories/list/", "read", 200, 403, 200, {"user_id": "alice"}),
    Row("GET", "/v1/memories/", "read", 200, 403, 200),
    Row("DELETE", "/v1/memories/", "write", 200, 403, 200),
    Row("GET", "/v1/memories/{memory_id}/", "read", 200, 404, 404),
    Row("PUT", "/v1/memories/{memory_id}/", "write", 200, 404, 404, {"text": "z"}),
    Row("DELETE", "/v1/memories/{memory_id}/", "write", 200, 404, 404),
    Row("GET", "/v1/memories/{memory_id}/history/", "read", 200, 404, 404),
    Row("GET", "/v1/memories/{memory_id}/related/", "read", 200, 404, 404),
    Row("GET", "/v1/entities/names/", "read", 200, 403, 200),
    Row("GET", "/v1/ping/", "read", 200, 200, 200),
    Row("GET", "/v1/jobs/", "read", 200, 200, 200),
    Row("GET", "/v1/jobs/{job_id}", "read", 200, 404, 404),
    Row("POST", "/v1/jobs/{job_id}/retry", "write", 200, 404, 404),
    Row("POST", "/v3/memories/add/", "write", 200, 403, 200, {"messages": "x", "user_id": "alice"}),
    Row(
        "POST",
        "/v3/memories/search/",
        "read",
        200,
        403,
        200,
        {"query": "x", "filters": {"user_id": "alice"}},
    ),
    Row("POST", "/v3/memories/", "read", 200, 403, 200, {"filters": {"user_id": "alice"}}),
    # A bound key lists only its own user (and the agents and runs of its own memories).
    Row("GET", "/v1/entities/", "read", 200, 200, 200),
    Row("DELETE", "/v2/entities/user/{user_id}/", "erase", 200, 403, 404),
    # A bound key deletes only its own user's memories of the agent or run: 200, none deleted.
    Row("DELETE", "/v2/entities/agent/{agent_id}/", "write", 200, 200, 200),
    Row("DELETE", "/v2/entities/run/{run_id}/", "write", 200, 200, 200),
    Row("DELETE", "/v2/entities/app/{app_id}/", "write", 422, 422, 422),
    Row("PUT", "/v1/batch/", "write", 200, 404, 404, {"memories": []}),
    Row("DELETE", "/v1/batch/", "write", 200, 404, 404, {"memories": []}),
    Row("GET", "/v1/users/{user_id}/export/", "export", 200, 403, 404),
    Row("DELETE", "/v1/users/{user_id}/", "erase", 200, 403, 404),
    Row("POST", "/v1/users/{user_id}/rotate-key/", "admin", 200, 403, 404),
    Row("GET", "/v1/keys/", "admin", 200, 403, 200),
    Row("POST", "/v1/keys/", "admin", 201, 403, 201, {"role": "read"}),
    Row("DELETE", "/v1/keys/{key_id}/", "admin", 200, 403, 404),
    Row("GET", "/v1/namespaces/", "admin", 200, 403, 200),
    Row("POST", "/v1/namespaces/", "operator", 201, 403, 403, {"name": "fresh"}),
    Row("GET", "/v1/audit/", "admin", 200, 403, 200),
    Row("GET", "/v1/namespace/settings/", "admin", 200, 403, 200),
    Row("PUT", "/v1/namespace/settings/", "admin", 200, 403, 200, {"secret_policy": "redact"}),
    # No webhook is set and the allow-list is empty: 404s, and a PUT refused (422).
    Row("GET", "/v1/namespace/webhook/", "admin", 404, 403, 404),
    Row(
        "PUT",
        "/v1/namespace/webhook/",
        "admin",
        422,
        403,
        422,
        {"url": "https://hooks.example.com/"},
    ),
    Row("DELETE", "/v1/namespace/webhook/", "admin", 404, 403, 404),
    Row("POST", "/v1/namespace/webhook/rotate-secret", "admin", 404, 403, 404),
    Row("GET", "/v1/namespace/webhook/deliveries/", "admin", 200, 403, 200),
    Row("POST", "/v1/namespace/webhook/deliveries/{delivery_id}/retry", "admin", 404, 403, 404),
    Row("GET", "/metrics", "operator", 200, 403, 403),
    Row("POST", "/mcp", "read", PASS, PASS, PASS, MCP_INIT),
    Row("GET", "/mcp", "read", PASS, PASS, PASS),
    Row("DELETE", "/mcp", "read", PASS, PASS, PASS),
    Row("POST", "/mcp/", "read", PASS, PASS, PASS, MCP_INIT),
    Row("GET", "/mcp/", "read", PASS, PASS, PASS),
    Row("DELETE", "/mcp/", "read", PASS, PASS, PASS),
]

ROLES = ("admin", "write", "read")


@dataclass(frozen=True)
class Kind:
    role: str
    user: str | None  # bound to this user
    namespace: str

    @property
    def label(self) -> str:
        return f"{self.role}/{self.user or 'unbound'}/{self.namespace}"


KINDS = [
    Kind(role, user, namespace)
    for namespace, user, role in itertools.product(
        ("default", "acme"), (None, "alice", "bob"), ROLES
    )
    if not (namespace == "acme" and user == "bob")
]


def may(kind: Kind, rule: str) -> bool:
    """The specification: who may do what (docs/rest.md, "Authentication and roles")."""
    rank = ROLES.index(kind.role)
    if kind.user is not None:  # a user-bound key: its own user's memories and rights only
        return {"read": True, "write": rank <= 1, "export": True, "erase": rank <= 1}.get(
            rule, False
        )
    return {
        "read": True,
        "write": rank <= 1,
        "admin": rank == 0,
        "export": rank == 0,
        "erase": rank == 0,
        "operator": rank == 0 and kind.namespace == "default",
    }[rule]


def expected(row: Row, kind: Kind) -> int | str:
    if not may(kind, row.rule):
        return 403
    if kind.namespace != "default":
        return row.other_ns
    if kind.user == "bob":
        return row.other_user
    return row.ok


def matches(status: int, want: int | str) -> bool:
    if want == PASS:
        return status not in (401, 403, 429) and status < 500
    return status == want


def all_routes(routes: Any) -> list[Any]:
    """The app's routes, flattened: FastAPI keeps an included router as one entry."""
    found = []
    for route in routes:
        candidates = getattr(route, "effective_candidates", None)
        if candidates is not None:
            found += all_routes(candidates())
        else:
            found.append(getattr(route, "original_route", route))
    return found


def declared_routes(server: RunningServer) -> set[tuple[str, str]]:
    found = set()
    for route in all_routes(server.app.routes):
        path = getattr(route, "path_format", None) or getattr(route, "path", "")
        if path in PUBLIC_PATHS or path.startswith("/ui"):
            continue  # the dashboard's routes: test_dashboard.py has their own matrix
        methods = getattr(route, "methods", None) or ()
        found |= {(m, path) for m in methods if m != "HEAD"}
    return found


@pytest.fixture
def matrix_server(start_server) -> RunningServer:  # type: ignore[no-untyped-def]
    # This fails authentication and spends keys hundreds of times from one address on purpose.
    # No job workers: the matrix makes its jobs dead itself (only a dead job is retried).
    return start_server(
        auth_failure_limit="100000/minute", rate_limit="100000/minute", job_workers=0
    )


def dead_job(memory: Any, n: int) -> str:
    """A dead job of alice in the default namespace."""
    from datetime import UTC, datetime, timedelta

    from memvault.clock import iso, now_iso
    from memvault.core import jobs

    # Queued as the REST route queues it (no LLM is configured here: it is never run).
    request = {"messages": f"alice's job {n}", "user_id": "alice", "infer": True}
    job_id = jobs.enqueue(memory.engine, request, max_attempts=1).id
    store = memory.engine.store
    while (
        job := store.claim("matrix", iso(datetime.now(UTC) + timedelta(60)), now_iso())
    ) is not None:
        store.fail(job.id, "matrix", "test", None, now_iso())
    return job_id


def test_every_route_declares_an_action(server: RunningServer) -> None:
    """A route without a declared policy action cannot be added: the app is scanned."""
    undeclared = []
    for route in all_routes(server.app.routes):
        path = getattr(route, "path", "")
        if path in PUBLIC_PATHS or (isinstance(route, Mount) and path in PUBLIC_PATHS):
            continue
        if isinstance(route, APIRoute):
            actions = [
                d.call.action for d in route.dependant.dependencies if isinstance(d.call, Require)
            ]
            if len(actions) != 1 or actions[0] not in RULES:
                undeclared.append(path)
            if route.body_field is not None:
                assert isinstance(route, CheckedRoute), path  # bodies are checked before use
        elif isinstance(route, Route):
            if getattr(route.endpoint, "action", None) not in RULES:
                undeclared.append(path)
        else:
            undeclared.append(path)
    assert undeclared == []


def test_the_matrix_covers_every_route(server: RunningServer) -> None:
    assert declared_routes(server) == {(row.method, row.template) for row in ROWS}


def test_every_route_is_protected(matrix_server: RunningServer) -> None:
    server = matrix_server
    memory = server.memory
    memory.api_keys.create("acme", "admin", name="makes the namespace exist")
    keys = {
        kind: server.key(kind.role, user_id=kind.user, namespace=kind.namespace) for kind in KINDS
    }
    revoked = server.key("admin")
    memory.api_keys.revoke(revoked.split("_")[1])
    expired = server.key("admin", expires_in_days=1e-6)  # 0.09 s

    def has_expired() -> bool:
        try:
            memory.api_keys.authenticate(expired)
        except Unauthorized:
            return True
        return False

    wait_for(has_expired, 5, "the key's expiry")
    refused = {
        "missing": None,
        "wrong": server.admin_key[:-8] + "AAAAAAAA",
        "forged": "mvk_" + "a" * 12 + "_" + "b" * 49,  # well-formed length, bad checksum
        "revoked": revoked,
        "expired": expired,
    }
    mismatches = []
    fresh = itertools.count()

    acme = memory.namespaced("acme")
    clients: dict[str | None, httpx.Client] = {}  # one connection per key: the matrix is large

    def call(row: Row, key: str | None) -> int:
        n = next(fresh)
        # Default's alice has a memory; acme has no alice (its keys may have made one before).
        memory_id = memory.add(f"alice's fact {n}", user_id="alice")["results"][0]["id"]
        with contextlib.suppress(NotFound):
            acme.erase_user("alice")
        key_id = memory.api_keys.create("default", "read").info.id
        job_id = dead_job(memory, n) if "{job_id}" in row.template else ""
        path = (
            row.template.replace("{memory_id}", memory_id)
            .replace("{job_id}", job_id)
            .replace("{key_id}", key_id)
            .replace("{user_id}", "alice")
            .replace("{agent_id}", "helper")
            .replace("{run_id}", "r1")
            .replace("{app_id}", "shop")
            .replace("{delivery_id}", "no-such-delivery")
        )
        body = row.body
        if row.template == "/v1/batch/":
            change = {"text": f"batched {n}"} if row.method == "PUT" else {}
            body = {"memories": [{"memory_id": memory_id, **change}]}
        if row.template == "/v1/namespaces/":
            body = {"name": f"fresh{n}"}
        if row.method == "PUT" and "memory_id" in row.template:
            body = {"text": f"changed {n}"}
        scoped = ("/v1/memories/", "/v1/entities/names/")
        params = {"user_id": "alice"} if row.template in scoped else None
        headers = MCP_HEADERS if row.template.startswith("/mcp") else {}
        if key not in clients:
            clients[key] = server.http(key)
        response = clients[key].request(row.method, path, json=body, params=params, headers=headers)
        return response.status_code

    for row in ROWS:
        for label, key in refused.items():
            status = call(row, key)
            if status != 401:
                mismatches.append((row.method, row.template, label, status, 401))
        for kind in KINDS:
            status, want = call(row, keys[kind]), expected(row, kind)
            if not matches(status, want):
                mismatches.append((row.method, row.template, kind.label, status, want))
    for client in clients.values():
        client.close()
    assert mismatches == [], "\n".join(map(str, mismatches))


def test_a_bound_admin_key_cannot_list_or_revoke_keys(server: RunningServer) -> None:
    """The finding: a user-bound admin key listed and revoked every key of its namespace."""
    bound = server.key("admin", user_id="alice")
    victim = server.admin_key.split("_")[1]
    with server.http(bound) as http:
        assert http.get("/v1/keys/").status_code == 403
        assert http.delete(f"/v1/keys/{victim}/").status_code == 403
        assert http.post("/v1/keys/", json={"role": "admin"}).status_code == 403
    with server.http(server.admin_key) as http:
        assert http.get("/v1/keys/").status_code == 200  # still valid


@pytest.mark.parametrize("scheme", ["Bearer", "Token", "bearer"])
def test_bearer_and_mem0_token_schemes(server: RunningServer, scheme: str) -> None:
    with server.http() as http:
        response = http.get(
            "/v1/memories/",
            params={"user_id": "u"},
            headers={"Authorization": f"{scheme} {server.admin_key}"},
        )
    assert response.status_code == 200


def test_last_used_is_recorded(server: RunningServer) -> None:
    key = server.key("read")
    with server.http(key) as http:
        http.get("/v1/memories/", params={"user_id": "u"})
    [info] = [k for k in server.memory.api_keys.list("default") if key.startswith(f"mvk_{k.id}_")]
    assert info.last_used_at is not None
