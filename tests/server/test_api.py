"""The REST API through memvault.Client and raw HTTP against a real server."""

from __future__ import annotations

import asyncio
import json

import pytest

from memvault import (
    AsyncClient,
    Client,
    Forbidden,
    InvalidFilter,
    MissingScope,
    NotFound,
    RateLimited,
    Unauthorized,
)

from .conftest import RunningServer


def test_client_mirrors_memory(server: RunningServer) -> None:
    with Client(server.base_url, server.key("write")) as c:
        added = c.add("Alice prefers green tea", user_id="alice", metadata={"topic": "drinks"})
        memory_id = added["results"][0]["id"]
        assert added["results"][0]["event"] == "ADD"
        assert c.add("alice prefers GREEN tea", user_id="alice")["results"][0] == {
            "id": memory_id,
            "memory": "alice prefers GREEN tea",
            "event": "NONE",
        }
        c.add_many([{"messages": f"fact {i} about rivers", "user_id": "alice"} for i in range(30)])
        hits = c.search("green tea", user_id="alice", explain=True)["results"]
        assert hits[0]["id"] == memory_id and "explain" in hits[0]
        assert (
            c.search("tea", filters={"user_id": "alice", "topic": "drinks"})["results"][0]["id"]
            == memory_id
        )
        assert len(c.get_all(user_id="alice")["results"]) == 31
        assert c.get(memory_id)["metadata"] == {"topic": "drinks"}
        assert (
            c.update(memory_id, "Alice prefers oolong")["result"]["memory"]
            == "Alice prefers oolong"
        )
        assert [e["event"] for e in c.history(memory_id)] == ["ADD", "NONE", "UPDATE"]
        assert c.delete(memory_id)["id"] == memory_id
        assert c.get(memory_id) is None
        assert c.delete_all(user_id="alice")["deleted"] == 30
        with pytest.raises(MissingScope):
            c.search("anything")
        with pytest.raises(InvalidFilter):
            c.search("x", user_id="alice", filters={"n": {"between": 1}})
        with pytest.raises(NotFound):
            c.delete(memory_id)


def test_async_client(server: RunningServer) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.base_url, server.key("write")) as c:
            memory_id = (await c.add("async over http", user_id="u"))["results"][0]["id"]
            results = await asyncio.gather(*(c.search("async", user_id="u") for _ in range(10)))
            assert all(r["results"][0]["id"] == memory_id for r in results)

    asyncio.run(scenario())


def test_pagination(server: RunningServer) -> None:
    with server.http(server.key("write")) as http:
        http.post(
            "/v1/memories/batch/",
            json={"items": [{"messages": f"item {i}", "user_id": "p"} for i in range(25)]},
        )
        first = http.post("/v1/memories/list/", json={"user_id": "p", "page_size": 10}).json()
        assert first["count"] == 25 and len(first["results"]) == 10 and first["previous"] is None
        third = http.post(
            "/v1/memories/list/", json={"user_id": "p", "page_size": 10, "page": 3}
        ).json()
        assert len(third["results"]) == 5 and third["next"] is None
        seen = {m["id"] for m in first["results"]} | {m["id"] for m in third["results"]}
        assert len(seen) == 15
        by_query = http.get("/v1/memories/", params={"user_id": "p", "page_size": 5}).json()
        assert by_query["count"] == 25 and len(by_query["results"]) == 5


def test_namespaces_are_isolated_and_foreign_ids_are_404(server: RunningServer) -> None:
    with server.http(server.admin_key) as operator:
        made = operator.post("/v1/namespaces/", json={"name": "acme"})
        assert made.status_code == 201
        acme_admin = made.json()["key"]
    with (
        Client(server.base_url, server.key("write")) as default,
        Client(server.base_url, acme_admin) as acme,
    ):
        mine = default.add("default tenant secret", user_id="alice")["results"][0]["id"]
        acme.add("acme tenant fact", user_id="alice")
        assert [h["memory"] for h in acme.search("tenant", user_id="alice")["results"]] == [
            "acme tenant fact"
        ]
        assert acme.get(mine) is None and acme.history(mine) == []
        for call in (lambda: acme.delete(mine), lambda: acme.update(mine, "hijack")):
            with pytest.raises(NotFound):
                call()
        assert default.get(mine)["memory"] == "default tenant secret"
    with server.http(acme_admin) as http:
        names = [n["name"] for n in http.get("/v1/namespaces/").json()]
        assert names == ["acme"]
        assert http.post("/v1/namespaces/", json={"name": "evil"}).status_code == 403


def test_user_bound_key_sees_only_its_user(server: RunningServer) -> None:
    with Client(server.base_url, server.key("write")) as app:
        bobs = app.add("bob's diary entry", user_id="bob")["results"][0]["id"]
        app.add("alice's diary entry", user_id="alice")
    with Client(server.base_url, server.key("write", user_id="alice")) as alice:
        assert alice.add("added without naming the user")["results"][0]["event"] == "ADD"
        mine = alice.get_all()["results"]
        assert {m["user_id"] for m in mine} == {"alice"} and len(mine) == 2
        assert {h["user_id"] for h in alice.search("diary entry")["results"]} == {"alice"}
        with pytest.raises(Forbidden):
            alice.search("diary", user_id="bob")
        with pytest.raises(Forbidden):
            alice.search("diary", filters={"user_id": "bob"})
        with pytest.raises(Forbidden):
            alice.add("sneaky", user_id="bob")
        assert alice.get(bobs) is None and alice.history(bobs) == []
        with pytest.raises(NotFound):
            alice.delete(bobs)
        with pytest.raises(Forbidden):
            alice.delete_all(user_id="bob")


def test_errors_are_json_never_500(server: RunningServer) -> None:
    key = server.key("write")
    with server.http(key) as http:
        cases = [
            (
                "POST",
                "/v1/memories/",
                {"content": "{not json", "headers": {"Content-Type": "application/json"}},
                422,
                "invalid_input",
            ),
            (
                "POST",
                "/v1/memories/",
                {"json": {"messages": 42, "user_id": "u"}},
                422,
                "invalid_input",
            ),
            (
                "POST",
                "/v1/memories/",
                {"json": {"messages": "x", "user_id": "u", "colour": "red"}},
                422,
                "invalid_input",
            ),
            ("POST", "/v1/memories/", {"json": {"messages": "x"}}, 422, "missing_scope"),
            (
                "POST",
                "/v1/memories/",
                {"json": {"messages": "x" * 40000, "user_id": "u"}},
                413,
                "text_too_long",
            ),
            (
                "POST",
                "/v1/memories/search/",
                {"json": {"query": "x", "user_id": "u", "filters": {"a": {"near": 1}}}},
                422,
                "invalid_filter",
            ),
            (
                "POST",
                "/v1/memories/search/",
                {"json": {"query": "x", "user_id": "u", "top_k": "ten"}},
                422,
                "invalid_input",
            ),
            ("GET", "/v1/memories/0191a2b3-0000-7000-8000-000000000000/", {}, 404, "not_found"),
            ("GET", "/v1/nowhere", {}, 404, "not_found"),
            ("PATCH", "/v1/memories/", {}, 405, "method_not_allowed"),
            (
                "POST",
                "/v1/memories/",
                {
                    "content": b"x" * (2 * 1024 * 1024),
                    "headers": {"Content-Type": "application/json"},
                },
                413,
                "payload_too_large",
            ),
        ]
        for method, path, kwargs, status, code in cases:
            response = http.request(method, path, **kwargs)
            assert response.status_code == status, (path, response.text)
            body = response.json()
            assert body["error"]["code"] == code, body
            assert "Traceback" not in response.text
            assert "xxxxxxxxxx" not in response.text  # the text is never echoed


def test_security_headers_and_request_ids(server: RunningServer) -> None:
    with server.http(server.key("read")) as http:
        response = http.get(
            "/v1/memories/", params={"user_id": "u"}, headers={"X-Request-ID": "trace-123"}
        )
        assert response.headers["x-request-id"] == "trace-123"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"
        odd = http.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
        assert odd.headers["x-request-id"] != "bad id with spaces"
        assert (
            "access-control-allow-origin"
            not in http.options(
                "/v1/memories/",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            ).headers
        )


def test_cors_allowlist(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(cors_origins=["https://app.example"])
    with server.http() as http:
        allowed = http.options(
            "/v1/memories/",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = http.options(
            "/v1/memories/",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_rate_limit_answers_429_with_retry_after(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(rate_limit="5/minute", auth_failure_limit="3/minute")
    key = server.key("read")
    with server.http(key) as http:
        codes = [http.get("/v1/memories/", params={"user_id": "u"}).status_code for _ in range(7)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
        limited = http.get("/v1/memories/", params={"user_id": "u"})
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"
    # Failed attempts are limited per client address, and then even a good key waits.
    with server.http("mvk_wrong") as bad:
        codes = [bad.get("/v1/memories/", params={"user_id": "u"}).status_code for _ in range(5)]
        assert codes[:3] == [401] * 3 and codes[3:] == [429, 429]
    with Client(server.base_url, server.key("read")) as fresh:
        with pytest.raises(RateLimited):
            fresh.get_all(user_id="u")


def test_health_readiness_and_metrics(server: RunningServer) -> None:
    with server.http() as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        assert anonymous.get("/readyz").json() == {"status": "ready"}
        assert anonymous.get("/metrics").status_code == 401
    with server.http(server.admin_key) as admin:
        admin.get("/v1/memories/", params={"user_id": "secret-user-name"})
        text = admin.get("/metrics").text
        assert 'memvault_requests_total{method="GET",route="/v1/memories/",status="200"}' in text
        assert "memvault_request_duration_seconds_bucket" in text
        assert "secret-user-name" not in text


def test_openapi_documents_every_error(server: RunningServer) -> None:
    with server.http() as http:
        spec = http.get("/openapi.json").json()
        docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text and "cdn" not in docs.text.lower()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/v1/") or path.startswith("/v3/"):
                assert {"401", "429"} <= set(operation["responses"]), (method, path)
                assert operation.get("summary"), (method, path)


def test_keys_over_rest(server: RunningServer) -> None:
    with server.http(server.admin_key) as admin:
        made = admin.post("/v1/keys/", json={"role": "read", "name": "dashboard"})
        assert made.status_code == 201
        body = made.json()
        assert body["key"].startswith("mvk_") and body["info"]["role"] == "read"
        listed = admin.get("/v1/keys/").json()
        assert body["info"]["id"] in {k["id"] for k in listed}
        assert all("key" not in k and "secret_hash" not in k for k in listed)
        assert admin.delete(f"/v1/keys/{body['info']['id']}/").json()["revoked_at"] is not None
    with Client(server.base_url, body["key"]) as revoked:
        with pytest.raises(Unauthorized):
            revoked.get_all(user_id="u")


def test_insecure_settings_are_refused() -> None:
    from memvault import InvalidConfig, Settings
    from memvault.server import check_settings

    with pytest.raises(InvalidConfig, match="MEMVAULT_AUTH"):
        check_settings(Settings.load(host="0.0.0.0", auth=False))
    with pytest.raises(InvalidConfig, match="CORS"):
        check_settings(Settings.load(cors_origins=["*"], cors_allow_credentials=True))
    check_settings(Settings.load(host="0.0.0.0"))  # with keys: allowed
    check_settings(Settings.load(auth=False))  # loopback without keys: allowed for development


def test_json_access_log_has_no_text_or_keys(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    key = server.key("write")
    with Client(server.base_url, key) as c:
        c.add("canary-sentence-zebra", user_id="log-user")
        c.search("canary-sentence-zebra", user_id="log-user")
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(entry.get("route") == "/v1/memories/search/" for entry in lines)
    assert "canary-sentence-zebra" not in out and key not in out and "log-user" not in out


def test_cli_keys_work_on_a_running_server(server: RunningServer) -> None:
    from typer.testing import CliRunner

    from memvault.cli import app

    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--role", "read", "--user", "carol", "--json"])
    assert created.exit_code == 0, created.output
    made = json.loads(created.stdout)
    assert made["key"].startswith("mvk_") and made["id"] and made["user_id"] == "carol"
    with Client(server.base_url, made["key"]) as carol:
        assert carol.get_all()["results"] == []
    listed = json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)
    assert made["id"] in {k["id"] for k in listed} and all("key" not in k for k in listed)
    assert runner.invoke(app, ["keys", "revoke", made["id"]]).exit_code == 0
    with Client(server.base_url, made["key"]) as carol, pytest.raises(Unauthorized):
        carol.get_all()


def test_user_export_and_erase_over_rest(server: RunningServer) -> None:
    with Client(server.base_url, server.key("write")) as app:
        app.add_many([{"messages": f"dana fact {i}", "user_id": "dana"} for i in range(3)])
        app.add("erin fact", user_id="erin")
    with server.http(server.key("write", user_id="dana")) as dana:
        export = dana.get("/v1/users/dana/export/")
        assert export.status_code == 200 and export.headers["content-type"].startswith(
            "application/x-ndjson"
        )
        lines = [json.loads(line) for line in export.text.splitlines()]
        assert [line["type"] for line in lines] == ["export", "memory", "memory", "memory"]
        assert dana.get("/v1/users/erin/export/").status_code == 403
        assert dana.delete("/v1/users/erin/").status_code == 403
    with server.http(server.admin_key) as admin:
        assert admin.get("/v1/users/nobody/export/").status_code == 404
        assert admin.delete("/v1/users/nobody/").json()["error"]["code"] == "not_found"
        erased = admin.delete("/v1/users/dana/")
        assert erased.status_code == 200 and erased.json()["memories_deleted"] == 3
        assert admin.post("/v1/memories/list/", json={"user_id": "dana"}).json()["count"] == 0
        assert admin.post("/v1/memories/list/", json={"user_id": "erin"}).json()["count"] == 1


def test_namespace_rules_over_rest(server: RunningServer) -> None:
    with server.http(server.admin_key) as admin:
        assert admin.get("/v1/namespace/settings/").json() == {
            "secret_policy": "redact",
            "default_ttl_seconds": None,
            "extraction_instructions": None,
            "reconciliation_instructions": None,
        }
        added = admin.post(
            "/v1/memories/", json={"messages": "key AKIAIOSFODNN7EXAMPLE", "user_id": "u"}
        ).json()
        assert added["results"][0]["redactions"] == ["aws_access_key"]
        changed = admin.put(
            "/v1/namespace/settings/", json={"secret_policy": "reject", "default_ttl_seconds": 60}
        )
        assert changed.json() == {
            "secret_policy": "reject",
            "default_ttl_seconds": 60.0,
            "extraction_instructions": None,
            "reconciliation_instructions": None,
        }
        told = admin.put(
            "/v1/namespace/settings/", json={"extraction_instructions": "Keep dietary facts."}
        ).json()
        assert told["extraction_instructions"] == "Keep dietary facts."
        assert told["secret_policy"] == "reject"  # unnamed rules keep their value
        too_long = {"reconciliation_instructions": "x" * 4001}
        assert admin.put("/v1/namespace/settings/", json=too_long).status_code == 422
        cleared = admin.put("/v1/namespace/settings/", json={"extraction_instructions": ""})
        assert cleared.json()["extraction_instructions"] is None
        refused = admin.post(
            "/v1/memories/", json={"messages": "key AKIAIOSFODNN7EXAMPLE", "user_id": "u"}
        )
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "secret_detected"
        assert (
            admin.put("/v1/namespace/settings/", json={"secret_policy": "leak"}).status_code == 422
        )
        assert (
            admin.put("/v1/namespace/settings/", json={"clear_default_ttl": True}).json()[
                "default_ttl_seconds"
            ]
            is None
        )
    with server.http(server.key("write")) as writer:
        assert writer.get("/v1/namespace/settings/").status_code == 403
