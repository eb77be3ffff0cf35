"""REST and /mcp spend one budget per key and one failed-login budget per address; failed logins
are audited without the secret, and a flood of them cannot grow the audit log without bound."""

from __future__ import annotations

from typing import Any

import httpx2

from .conftest import RunningServer

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "limits", "version": "0"},
    },
}
BAD_KEY = "mvk_abcdefghijkm_" + "b" * 43 + "cccccc"


def mcp(server: RunningServer, key: str) -> int:
    response = httpx2.post(
        f"{server.base_url}/mcp",
        json=INIT,
        headers={
            "Authorization": f"Bearer {key}",
            "Accept": "application/json, text/event-stream",
        },
    )
    return response.status_code


def rest(server: RunningServer, key: str) -> int:
    with server.http(key) as http:
        return http.get("/v1/ping/").status_code


def test_rest_and_mcp_share_the_key_budget(start_server) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = start_server(rate_limit="4/minute")
    first, second = server.key("read"), server.key("read")
    assert [rest(server, first) for _ in range(4)] == [200] * 4
    assert mcp(server, first) == 429
    assert [mcp(server, second) for _ in range(4)] == [200] * 4
    assert rest(server, second) == 429


def test_rest_failures_lock_mcp_out(start_server) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = start_server(auth_failure_limit="3/minute")
    assert [rest(server, BAD_KEY) for _ in range(3)] == [401] * 3
    assert mcp(server, server.key("read")) == 429


def test_mcp_failures_lock_rest_out(start_server) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = start_server(auth_failure_limit="3/minute")
    assert [mcp(server, BAD_KEY) for _ in range(3)] == [401] * 3
    assert rest(server, server.key("read")) == 429


def failure_entries(server: RunningServer) -> list[dict[str, Any]]:
    server.memory.audit.flush()
    return [
        e
        for e in server.memory.audit.entries(None, limit=1000)
        if e["outcome"] in ("unauthorized", "lockout")
    ]


def test_failed_logins_are_audited_and_a_flood_is_bounded(start_server) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = start_server(auth_failure_limit="5/minute")
    codes = [rest(server, BAD_KEY) for _ in range(60)] + [
        mcp(server, "mvk_junk") for _ in range(40)
    ]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
    entries = failure_entries(server)
    # Four failures, then the one that locked the address out; the 95 refused after it are not
    # written one by one.
    assert [e["outcome"] for e in reversed(entries)] == ["unauthorized"] * 4 + ["lockout"]
    for entry in entries:
        assert entry["action"] == "GET /v1/ping/" and entry["source"] == "127.0.0.1"
        assert entry["key_id"] == "abcdefghijkm"  # the id part only, as presented
        assert entry["namespace"] is None and entry["memory_ids"] == []
    dump = str(server.memory.audit.entries(None, limit=1000))
    assert "bbbbbbbb" not in dump and "cccccc" not in dump  # never the secret
    assert server.memory.audit.verify().ok


def test_a_malformed_key_is_audited_without_an_id(start_server) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = start_server()
    assert mcp(server, "not-a-key-at-all") == 401
    assert rest(server, "mvk_UPPER_secret") == 401
    entries = failure_entries(server)
    assert {e["action"] for e in entries} == {"POST /mcp", "GET /v1/ping/"}
    assert all(e["key_id"] is None for e in entries)
    assert "not-a-key-at-all" not in str(entries) and "secret" not in str(entries)


def test_no_number_of_addresses_grows_the_audit_log_without_bound() -> None:
    from memvault.server.ratelimit import AUDITED, RateLimiter

    limiter = RateLimiter("600/minute", "1/minute")
    written = {"unauthorized": 0, "lockout": 0}
    for n in range(1500):
        address = f"2001:db8::{n:x}"
        outcome = "lockout" if limiter.fail(address) else "unauthorized"
        written[outcome] += limiter.may_audit(outcome)
    assert written == {"unauthorized": 0, "lockout": int(AUDITED["lockout"].split("/")[0])}
