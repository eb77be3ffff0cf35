"""Every route of the app rejects a missing, wrong, revoked, expired and under-privileged key."""

from __future__ import annotations

import time

import pytest
from fastapi.routing import APIRoute

from .conftest import RunningServer

PUBLIC = {"/healthz", "/readyz", "/docs", "/openapi.json"}
MEMORY_ID = "0191a2b3-0000-7000-8000-000000000000"


def needed_role(route: APIRoute) -> str:
    for dependency in route.dependant.dependencies:
        call = dependency.call
        if call is not None and call.__qualname__.startswith("require."):
            return str(call.__closure__[0].cell_contents)  # type: ignore[index]
    raise AssertionError(f"{route.path} has no authorization dependency")


def protected_routes(server: RunningServer) -> list[tuple[str, str, str]]:
    """From the routers, cross-checked against the served OpenAPI so that no route is missed."""
    from memvault.server.routes import admin, health, mem0, memories, users

    found = []
    declared = set()
    for router in (memories.router, mem0.router, users.router, admin.router, health.router):
        for route in router.routes:
            assert isinstance(route, APIRoute)
            if route.path in PUBLIC:
                continue
            for method in sorted(route.methods):
                declared.add((method.lower(), route.path))
                path = (
                    route.path.replace("{memory_id}", MEMORY_ID)
                    .replace("{key_id}", "nokey")
                    .replace("{user_id}", "someone")
                )
                found.append((method, path, needed_role(route)))
    with server.http() as http:
        spec = http.get("/openapi.json").json()
    served = {(m, p) for p, ops in spec["paths"].items() for m in ops if p not in PUBLIC}
    assert served == declared
    return found


def test_every_route_is_protected(start_server) -> None:  # type: ignore[no-untyped-def]
    # This test fails authentication hundreds of times from one address on purpose.
    server: RunningServer = start_server(auth_failure_limit="100000/minute")
    routes = protected_routes(server)
    assert len(routes) >= 15
    revoked = server.key("admin")
    server.memory.api_keys.revoke(revoked.split("_")[1])
    expired = server.key("admin", expires_in_days=1e-6)  # 0.09 s
    time.sleep(0.2)
    wrong = server.admin_key[:-8] + "AAAAAAAA"
    forged = "mvk_" + "a" * 12 + "_" + "b" * 49  # well-formed length, bad checksum
    for method, path, role in routes:
        for label, key in (
            ("missing", None),
            ("wrong", wrong),
            ("forged", forged),
            ("revoked", revoked),
            ("expired", expired),
        ):
            with server.http(key) as http:
                response = http.request(method, path, json={})
            assert response.status_code == 401, (label, method, path, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
        weaker = {"admin": "write", "write": "read"}.get(role)
        if weaker:
            with server.http(server.key(weaker)) as http:
                response = http.request(method, path, json={})
            assert response.status_code == 403, (weaker, method, path, response.text)


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
