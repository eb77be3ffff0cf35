"""Malformed and hostile input at the HTTP layer: always a 4xx with a stable code, never a 500,
and an unexpected 500 leaves one log line (type and request id), no traceback, no user text."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from memvault import HashEmbedder

from .conftest import RunningServer

JSON = {"Content-Type": "application/json"}
MEMORY_ID = "0191a2b3-0000-7000-8000-000000000000"


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def nested_list(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [65, 500, 900, 5000, 200_000])
def test_deeply_nested_json_is_422(server: RunningServer, depth: int) -> None:
    bodies = [
        ("POST", "/v1/memories/", f'{{"messages":"x","user_id":"u","metadata":{nested(depth)}}}'),
        (
            "POST",
            "/v1/memories/",
            f'{{"messages":"x","user_id":"u","metadata":{{"a":{nested_list(depth)}}}}}',
        ),
        (
            "POST",
            "/v1/memories/search/",
            f'{{"query":"x","user_id":"u","filters":{nested(depth)}}}',
        ),
        ("POST", "/v3/memories/", f'{{"filters":{nested(depth)}}}'),
        ("PUT", f"/v1/memories/{MEMORY_ID}/", f'{{"metadata":{nested(depth)}}}'),
        ("POST", "/v1/keys/", f'{{"role":"read","name":{nested(depth)}}}'),
        ("POST", "/v3/memories/add/", f'{{"messages":"x","filters":{nested(depth)}}}'),
        ("POST", "/v3/memories/add/", f'{{"messages":"x","custom_categories":{nested(depth)}}}'),
        (
            "PUT",
            "/v1/batch/",
            f'{{"memories":[{{"memory_id":"{MEMORY_ID}","metadata":{nested(depth)}}}]}}',
        ),
        ("DELETE", "/v1/batch/", f'{{"memories":{nested_list(depth)}}}'),
    ]
    with server.http(server.admin_key) as http:
        for method, path, body in bodies:
            response = http.request(method, path, content=body, headers=JSON)
            assert response.status_code in (413, 422), (path, response.text[:200])
            assert response.json()["error"]["code"] in ("invalid_input", "payload_too_large")


def test_nesting_within_the_limit_works(server: RunningServer) -> None:
    """The body may nest 64 levels; metadata itself 32 (the library's documented limit)."""
    with server.http(server.admin_key) as http:
        body = f'{{"messages":"x","user_id":"u","metadata":{nested(30)}}}'
        assert http.post("/v1/memories/", content=body, headers=JSON).status_code == 200
        body = f'{{"messages":"y","user_id":"u","metadata":{nested(60)}}}'
        answer = http.post("/v1/memories/", content=body, headers=JSON)
        assert answer.status_code == 422
        assert answer.json()["error"]["code"] == "invalid_metadata"


SURROGATE_BODIES = [
    ("POST", "/v1/memories/", '{"messages":"a\\ud800b","user_id":"u"}'),
    ("POST", "/v1/memories/", '{"messages":"x","user_id":"\\udc00"}'),
    ("POST", "/v1/memories/", '{"messages":"x","user_id":"u","agent_id":"\\ud800"}'),
    ("POST", "/v1/memories/", '{"messages":"x","user_id":"u","run_id":"\\ud800"}'),
    ("POST", "/v1/memories/", '{"messages":"x","user_id":"u","actor_id":"\\ud800"}'),
    ("POST", "/v1/memories/", '{"messages":"x","user_id":"u","expiration_date":"\\ud800"}'),
    ("POST", "/v1/memories/", '{"messages":"x","user_id":"u","metadata":{"\\ud800":1}}'),
    ("POST", "/v1/memories/", '{"messages":"x","user_id":"u","metadata":{"k":["\\udfff"]}}'),
    ("POST", "/v1/memories/", '{"messages":[{"role":"user","content":"\\ud800"}],"user_id":"u"}'),
    ("POST", "/v1/memories/", '{"messages":[{"content":"x","name":"\\ud800"}],"user_id":"u"}'),
    ("POST", "/v1/memories/batch/", '{"items":[{"messages":"\\ud800","user_id":"u"}]}'),
    ("POST", "/v1/memories/search/", '{"query":"\\ud800","user_id":"u"}'),
    ("POST", "/v1/memories/search/", '{"query":"x","user_id":"u","filters":{"k":"\\ud800"}}'),
    ("POST", "/v1/memories/search/", '{"query":"x","user_id":"u","filters":{"\\ud800":1}}'),
    ("POST", "/v1/memories/list/", '{"user_id":"\\ud800"}'),
    ("POST", "/v3/memories/add/", '{"messages":"\\ud800","user_id":"u"}'),
    ("POST", "/v3/memories/search/", '{"query":"\\ud800","filters":{"user_id":"u"}}'),
    ("POST", "/v3/memories/", '{"filters":{"user_id":"\\ud800"}}'),
    ("PUT", f"/v1/memories/{MEMORY_ID}/", '{"text":"\\ud800"}'),
    ("PUT", f"/v1/memories/{MEMORY_ID}/", '{"text":"x","timestamp":"\\ud800"}'),
    ("POST", "/v3/memories/add/", '{"messages":"x","filters":{"user_id":"\\ud800"}}'),
    ("POST", "/v3/memories/add/", '{"messages":"x","user_id":"u","timestamp":"\\ud800"}'),
    ("POST", "/v3/memories/add/", '{"messages":"x","user_id":"u","version":"\\ud800"}'),
    (
        "POST",
        "/v3/memories/search/",
        '{"query":"x","filters":{"user_id":"u"},"fields":["\\ud800"]}',
    ),
    ("POST", "/v3/memories/", '{"filters":{"user_id":"u","metadata":{"\\ud800":1}}}'),
    ("PUT", "/v1/batch/", '{"memories":[{"memory_id":"\\ud800","text":"x"}]}'),
    ("PUT", "/v1/batch/", f'{{"memories":[{{"memory_id":"{MEMORY_ID}","text":"\\ud800"}}]}}'),
    ("DELETE", "/v1/batch/", '{"memories":[{"memory_id":"\\ud800"}]}'),
    ("POST", "/v1/keys/", '{"role":"read","name":"\\ud800"}'),
    ("POST", "/v1/keys/", '{"role":"read","user_id":"\\ud800"}'),
    ("POST", "/v1/namespaces/", '{"name":"\\ud800"}'),
    ("PUT", "/v1/namespace/settings/", '{"secret_policy":"\\ud800"}'),
]


def test_lone_surrogates_are_refused_in_every_field(server: RunningServer) -> None:
    with server.http(server.admin_key) as http:
        memory_id = http.post("/v1/memories/", json={"messages": "m", "user_id": "u"}).json()
        path_id = memory_id["results"][0]["id"]
        for method, path, body in SURROGATE_BODIES:
            response = http.request(
                method, path.replace(MEMORY_ID, path_id), content=body, headers=JSON
            )
            assert response.status_code == 422, (path, body, response.text)
            assert response.json()["error"]["code"] == "invalid_input"


@pytest.mark.parametrize("bad", ["%ED%A0%80", "%F0%28%8C%28", "%C0%AF", "%FF", "%00", "%0A"])
def test_bad_bytes_in_paths_and_queries_are_4xx(server: RunningServer, bad: str) -> None:
    """Invalid UTF-8 (a surrogate's bytes among it) is refused, not replaced by U+FFFD: else
    every bad byte sequence would name one and the same user."""
    with server.http(server.admin_key) as http:
        for method, path in (
            ("GET", f"/v1/users/{bad}/export/"),
            ("DELETE", f"/v1/users/{bad}/"),
            ("POST", f"/v1/users/{bad}/rotate-key/"),
            ("GET", f"/v1/memories/{bad}/"),
            ("GET", f"/v1/memories/{bad}/history/"),
            ("DELETE", f"/v1/keys/{bad}/"),
            ("GET", f"/v1/memories/?user_id={bad}"),
            ("DELETE", f"/v1/memories/?agent_id={bad}"),
            ("DELETE", f"/v1/memories/?filters={bad}"),
            ("DELETE", f"/v2/entities/user/{bad}/"),
            ("DELETE", f"/v2/entities/agent/{bad}/"),
            ("DELETE", f"/v2/entities/run/{bad}/"),
            ("DELETE", f"/v2/entities/app/{bad}/"),
            ("GET", f"/v1/audit/?limit={bad}"),
        ):
            response = http.request(method, path)
            assert 400 <= response.status_code < 500, (method, path, response.text)
            assert response.json()["error"]["code"]


@pytest.mark.parametrize(
    "filters",
    [
        "[" * 3000 + "]" * 1000,
        "(" * 1000,
        "{'user_id': " * 500,
        "__import__('os').system('true')",
        "{'user_id': 1}",
        "{'user_id': ['a']}",
        "{1: 'a'}",
        "{'user_id': '" + "a" * 5000 + "'}",
        '{"user_id": "\\ud800"}',
        "{'user_id': '\\ud800'}",
        '{"metadata": {"k": 1}}',
        "[]",
        "9" * 4000,
    ],
)
def test_hostile_delete_all_filters_are_4xx(server: RunningServer, filters: str) -> None:
    """mem0's client sends ``filters`` as a Python literal in the query: parsed bounded, as
    literals only, and held to the scope keys."""
    with server.http(server.admin_key) as http:
        http.post("/v1/memories/", json={"messages": "kept", "user_id": "u"})
        response = http.delete("/v1/memories/", params={"filters": filters})
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["error"]["code"] in (
            "invalid_input",
            "invalid_id",
            "unsupported_option",
        )
        assert http.get("/v1/memories/", params={"user_id": "u"}).json()["count"] == 1


# The server answers 413 before the upload ends and closes the connection; httpx then sometimes
# leaves that socket to the garbage collector (a ResourceWarning on the client, not the server).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_chunked_body_over_the_limit_is_413(start_server) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = start_server(max_body_bytes=64 * 1024)

    def chunks() -> Iterator[bytes]:
        yield b'{"messages": "'
        for _ in range(40):
            yield b"x" * 8192
        yield b'", "user_id": "u"}'

    with server.http(server.admin_key) as http:
        for path in ("/v1/memories/", "/v1/memories/search/", "/mcp"):
            response = http.post(path, content=chunks(), headers=JSON)
            assert response.status_code == 413, (path, response.text)
            assert response.json()["error"]["code"] == "payload_too_large"
            assert "chunked" not in response.headers.get("transfer-encoding", "") or response.json()
        small = http.post(
            "/v1/memories/", content=iter([b'{"messages":"ok","user_id":"u"}']), headers=JSON
        )
        assert small.status_code == 200


class ExplodingEmbedder(HashEmbedder):
    """An embedder (a public extension point) that fails with user text in its message."""

    def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        raise RuntimeError(f"boom with {texts[0]}")


def test_an_unexpected_500_logs_the_type_and_request_id_only(
    start_server,  # type: ignore[no-untyped-def]
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server: RunningServer = start_server(embedder=ExplodingEmbedder())
    capfd.readouterr()
    with server.http(server.admin_key) as http:
        response = http.post(
            "/v1/memories/",
            json={"messages": "canary-zebra-text", "user_id": "canary-user"},
            headers={"X-Request-ID": "req-500-check"},
        )
    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": "internal",
        "message": "internal error (request id req-500-check)",
    }
    out, err = capfd.readouterr()
    logged = out + err + caplog.text
    assert "Traceback" not in logged and "canary-zebra-text" not in logged
    assert "canary-user" not in logged and "boom" not in logged
    assert response.headers["x-content-type-options"] == "nosniff"
    server.memory.audit.flush()
    [entry] = [e for e in server.memory.audit.entries(None, limit=10) if e["key_id"]]
    assert entry["action"] == "POST /v1/memories/" and entry["outcome"] == "http_500"
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.exc_info is None and record.getMessage() == (
        "unexpected error RuntimeError (request id req-500-check)"
    )
