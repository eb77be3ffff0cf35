"""Client addresses (X-Forwarded-For) and Host names (DNS rebinding), against a real server."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from memvault import RateLimited
from memvault.server.network import UNVERIFIED_ADDRESS, HostPolicy, Proxies

from .conftest import RunningServer

FORGED = [f"198.51.100.{i}" for i in range(1, 9)]
BAD_KEY = "mvk_abcdefghijkm_" + "b" * 49


def failures(server: RunningServer) -> list[dict[str, Any]]:
    server.memory.audit.flush()
    return [
        e
        for e in server.memory.audit.entries(None, limit=1000)
        if e["outcome"] in ("unauthorized", "lockout")
    ]


def test_forged_forwarded_for_is_ignored_by_default(start_server) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = start_server(auth_failure_limit="3/minute")
    with server.http(BAD_KEY) as http:
        codes = [
            http.get("/v1/ping/", headers={"X-Forwarded-For": address}).status_code
            for address in FORGED[:5]
        ]
    # A new forged address each time does not buy a new budget.
    assert codes == [401, 401, 401, 429, 429]
    with server.http(server.key("read")) as http:
        assert http.get("/v1/ping/", headers={"X-Forwarded-For": FORGED[6]}).status_code == 429
    entries = failures(server)
    assert {e["source"] for e in entries} == {"127.0.0.1"}
    everything = str(server.memory.audit.entries(None, limit=1000))
    assert not any(address in everything for address in FORGED)


def test_a_chosen_address_cannot_be_locked_out(start_server) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = start_server(auth_failure_limit="3/minute")
    with server.http(BAD_KEY) as http:
        for _ in range(5):
            http.get("/v1/ping/", headers={"X-Forwarded-For": "203.0.113.9"})
    # The budget spent was the connection's own (127.0.0.1), never 203.0.113.9's.
    limiter = server.app.state.limiter
    limiter.check_address("203.0.113.9")  # not locked out: does not raise
    with pytest.raises(RateLimited):
        limiter.check_address("127.0.0.1")


def test_the_app_distrusts_a_runner_that_believes_the_header(start_server) -> None:  # type: ignore[no-untyped-def]
    """Plain ``uvicorn`` believes X-Forwarded-For from 127.0.0.1: the app must not."""
    server: RunningServer = start_server(auth_failure_limit="3/minute", uvicorn_defaults=True)
    with server.http(BAD_KEY) as http:
        codes = [
            http.get("/v1/ping/", headers={"X-Forwarded-For": address}).status_code
            for address in FORGED[:5]
        ]
    assert codes == [401, 401, 401, 429, 429]
    assert {e["source"] for e in failures(server)} == {UNVERIFIED_ADDRESS}
    everything = str(server.memory.audit.entries(None, limit=1000))
    assert not any(address in everything for address in FORGED)


def test_a_listed_proxy_is_believed(start_server) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = start_server(
        auth_failure_limit="3/minute", forwarded_allow_ips=["127.0.0.1"]
    )
    with server.http(BAD_KEY) as http:
        first = [
            http.get("/v1/ping/", headers={"X-Forwarded-For": "203.0.113.7"}).status_code
            for _ in range(4)
        ]
        other = http.get("/v1/ping/", headers={"X-Forwarded-For": "203.0.113.8"}).status_code
    assert first == [401, 401, 401, 429] and other == 401  # one budget per real client
    assert {e["source"] for e in failures(server)} == {"203.0.113.7", "203.0.113.8"}
    with server.http(server.key("read")) as http:
        assert http.get("/v1/ping/", headers={"X-Forwarded-For": "203.0.113.10"}).status_code == 200
    server.memory.audit.flush()
    assert server.memory.audit.entries(None, limit=1)[0]["source"] == "203.0.113.10"


@pytest.mark.parametrize(
    ("peer", "header", "trusted", "expected"),
    [
        ("127.0.0.1", None, [], "127.0.0.1"),
        ("10.0.0.5", "1.2.3.4", [], "10.0.0.5"),
        ("1.2.3.4", "1.2.3.4", [], UNVERIFIED_ADDRESS),  # a runner replaced the peer
        ("nobody-1", "nobody-1", [], UNVERIFIED_ADDRESS),  # ... with a value that is no IP
        ("nobody-1", None, [], UNVERIFIED_ADDRESS),  # a peer that is no IP is never a source
        ("nobody-1", "1.2.3.4", ["10.0.0.0/8"], UNVERIFIED_ADDRESS),
        ("10.0.0.5", "1.2.3.4, 10.0.0.9", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.5", "6.6.6.6, 1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),  # the nearest untrusted
        ("10.0.0.5", "not-an-ip", ["10.0.0.0/8"], "10.0.0.5"),
        ("::1", "[2001:db8::1]:443", ["::1"], "2001:db8::1"),
    ],
)
def test_client_address(peer: str, header: str | None, trusted: list[str], expected: str) -> None:
    headers = [(b"x-forwarded-for", header.encode())] if header else []
    scope = {"client": (peer, 50000), "headers": headers}
    assert Proxies(trusted).client_address(scope) == expected


def test_proxy_entries_are_checked() -> None:
    from memvault import InvalidConfig

    with pytest.raises(InvalidConfig):
        Proxies(["*"])


HOST_PATHS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/docs-assets/swagger-ui.css"),
    ("GET", "/v1/memories/?user_id=u"),
    ("POST", "/v1/memories/"),
    ("DELETE", "/v1/users/u/"),
    ("GET", "/metrics"),
    ("POST", "/mcp"),
    ("GET", "/mcp/"),
    ("GET", "/v1/nowhere"),
]


@pytest.mark.parametrize("auth", [True, False])
def test_a_foreign_host_is_refused_on_every_route(start_server, auth: bool) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = start_server(auth=auth)
    port = server.port
    with server.http(server.admin_key) as http:
        for method, path in HOST_PATHS:
            for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", ""):
                response = http.request(method, path, json={}, headers={"Host": host})
                assert response.status_code == 421, (method, path, host, response.text)
                assert response.json()["error"]["code"] == "host_not_allowed"
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
                response = http.request(method, path, json={}, headers={"Host": host})
                assert response.status_code not in (421, 403), (method, path, host, response.text)


def test_allowed_hosts_and_origins(start_server) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = start_server(
        allowed_hosts=["memvault.internal", "api.example:8443"],
        cors_origins=["https://app.example"],
    )
    with server.http(server.admin_key) as http:

        def status(**headers: str) -> int:
            return http.get("/v1/ping/", headers=headers).status_code

        assert status(Host="memvault.internal") == 200
        assert status(Host=f"memvault.internal:{server.port}") == 200
        assert status(Host="api.example:8443") == 200
        assert status(Host="api.example:9999") == 421
        assert status(Origin=f"http://127.0.0.1:{server.port}") == 200
        assert status(Origin="https://app.example") == 200
        refused = http.get("/v1/ping/", headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "origin_not_allowed"
        assert status(Origin="null") == 403


def test_mcp_refuses_a_foreign_host_before_authentication(server: RunningServer) -> None:
    response = httpx2.post(
        f"{server.base_url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
        headers={"Host": "evil.example", "Accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 421
    assert response.json()["error"]["code"] == "host_not_allowed"


def test_host_policy_parsing() -> None:
    policy = HostPolicy("127.0.0.1", ["a.example", "b.example:81"], [])
    assert policy.active
    for ok in ("localhost", "LOCALHOST:1", "[::1]", "[::1]:8765", "a.example:5", "b.example:81"):
        assert policy.allows_host(ok), ok
    for bad in ("::1", "[::1", "b.example", "localhost:x", "a.example.evil", None, ""):
        assert not policy.allows_host(bad), bad
    assert not HostPolicy("0.0.0.0", [], []).active


def test_serve_believes_proxy_headers_only_when_told() -> None:
    from memvault import InvalidConfig, Settings
    from memvault.server import check_settings
    from memvault.server.run import uvicorn_options

    default = uvicorn_options(Settings.load())
    assert default["proxy_headers"] is False
    configured = uvicorn_options(Settings.load(forwarded_allow_ips=["10.0.0.0/8"]))
    assert configured["proxy_headers"] is True
    assert configured["forwarded_allow_ips"] == ["10.0.0.0/8"]
    with pytest.raises(InvalidConfig, match="forwarded_allow_ips"):
        check_settings(Settings.load(forwarded_allow_ips=["*"]))
