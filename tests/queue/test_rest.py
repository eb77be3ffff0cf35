"""The queue over REST: 202 at once, the job reaches done; who may see and retry which job."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.server.conftest import RunningServer


def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return {"results": [], "echo": payload["messages"]}


def wait_status(http: Any, job_id: str, status: str, seconds: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        shown = http.get(f"/v1/jobs/{job_id}").json()
        if shown.get("status") == status:
            return dict(shown)
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {shown} after {seconds} s")
        time.sleep(0.02)


def serve_with(start_server: Callable[..., RunningServer], handler: Any) -> RunningServer:
    server = start_server(job_poll_seconds=0.05)
    server.memory.stop_jobs()  # the lifespan's pool runs the default handler: use ours
    server.memory.start_jobs(2, handler=handler)
    return server


def test_infer_add_answers_202_and_the_job_completes(
    start_server: Callable[..., RunningServer],
) -> None:
    server = serve_with(start_server, echo)
    with server.http(server.key("write")) as http:
        response = http.post(
            "/v1/memories/", json={"messages": "hello queue", "user_id": "alice", "infer": True}
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "queued" and set(body) == {"job_id", "status"}
        done = wait_status(http, body["job_id"], "done")
        assert done["result"] == {"results": [], "echo": "hello queue"}
        assert done["user_id"] == "alice" and done["attempts"] == 1
        listed = http.get("/v1/jobs/", params={"status": "done"}).json()["results"]
        assert [j["id"] for j in listed] == [body["job_id"]]
        # a plain add is unchanged
        plain = http.post("/v1/memories/", json={"messages": "plain", "user_id": "alice"})
        assert plain.status_code == 200 and plain.json()["results"][0]["event"] == "ADD"
        # a bad request is refused at once, not queued
        bad = http.post("/v1/memories/", json={"messages": "", "user_id": "a", "infer": True})
        assert bad.status_code == 422


def test_user_bound_key_sees_only_its_jobs_and_read_cannot_retry(
    start_server: Callable[..., RunningServer],
) -> None:
    def fail(payload: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("always")

    server = start_server(job_poll_seconds=0.05, job_max_attempts=1)
    server.memory.stop_jobs()
    server.memory.start_jobs(1, handler=fail)
    alice, bob = server.key("write", user_id="alice"), server.key("write", user_id="bob")
    with server.http(alice) as http:
        mine = http.post("/v1/memories/", json={"messages": "a", "infer": True}).json()["job_id"]
        dead = wait_status(http, mine, "dead")
        assert dead["error_code"] == "handler_error" and dead["result"] is None
    with server.http(bob) as http:
        theirs = http.post("/v1/memories/", json={"messages": "b", "infer": True}).json()["job_id"]
        assert http.get(f"/v1/jobs/{mine}").status_code == 404
        assert http.post(f"/v1/jobs/{mine}/retry").status_code == 404
        assert [j["id"] for j in http.get("/v1/jobs/").json()["results"]] == [theirs]
        assert http.get("/v1/jobs/", params={"user_id": "alice"}).status_code == 403
    with server.http(server.key("read")) as http:
        assert http.get(f"/v1/jobs/{mine}").status_code == 200
        assert http.post(f"/v1/jobs/{mine}/retry").status_code == 403
    with server.http(server.key("read", namespace="other")) as http:
        assert http.get(f"/v1/jobs/{mine}").status_code == 404
    with server.http(alice) as http:
        retried = http.post(f"/v1/jobs/{mine}/retry")
        assert retried.status_code == 200 and retried.json()["attempts"] == 0
        wait_status(http, mine, "dead")
        server.memory.stop_jobs()
        again = http.post("/v1/memories/", json={"messages": "c", "infer": True}).json()["job_id"]
        assert http.post(f"/v1/jobs/{again}/retry").status_code == 409  # queued


def test_mcp_add_with_infer_names_the_job(start_server: Callable[..., RunningServer]) -> None:
    import anyio

    from tests.mcp.test_mcp import http_client

    server = serve_with(start_server, echo)
    key = server.key("write", user_id="alice")

    async def scenario() -> str:
        async with http_client(server, key) as client:
            added = await client.call_tool("add_memory", {"text": "I moved", "infer": True})
            assert not added.is_error
            job = added.structured_content["job"]
            assert job["status"] == "queued" and job["id"] in added.content[0].text
            return str(job["id"])

    job_id = anyio.run(scenario)
    with server.http(key) as http:
        assert wait_status(http, job_id, "done")["result"]["echo"] == "I moved"
