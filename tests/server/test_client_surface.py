"""``Client`` and ``AsyncClient`` against a real server answer as ``Memory`` answers over the same
store: pages at any offset, counts, batches, a user's export, erase and key rotation, the
namespace's rules, the job queue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from memvault import (
    AsyncClient,
    Client,
    Forbidden,
    InvalidInput,
    JobNotRetryable,
    NotFound,
)
from tests.polling import wait_for

from .conftest import RunningServer

# Ids a URL could misread: a slash, dot-segments, query and fragment marks.
ODD_USERS = ["alice", "team/../alice", "..", "x?y#z"]


def fill(server: RunningServer, user_id: str, n: int) -> None:
    server.memory.add_many(
        [
            {"messages": f"fact {i} about {user_id}", "user_id": user_id, "metadata": {"n": i}}
            for i in range(n)
        ]
    )


def without_time(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in line.items() if k != "exported_at"} for line in lines]


def test_pages_and_counts_match_memory_at_any_offset(server: RunningServer) -> None:
    fill(server, "p", 25)
    local = server.memory
    with Client(server.base_url, server.key("read")) as c:
        for top_k, offset in [(10, 0), (10, 5), (7, 20), (10, 24), (10, 25), (3, 40), (1, 13)]:
            assert c.get_all(user_id="p", top_k=top_k, offset=offset) == local.get_all(
                user_id="p", top_k=top_k, offset=offset
            ), (top_k, offset)
            assert c.get_page(user_id="p", top_k=top_k, offset=offset) == local.get_page(
                user_id="p", top_k=top_k, offset=offset
            ), (top_k, offset)
        assert len(c.get_all(user_id="p", top_k=7, offset=20)["results"]) == 5
        assert c.count(user_id="p") == 25
        assert c.count(user_id="p", filters={"n": {"gte": 20}}) == 5
        assert c.count(user_id="nobody") == 0
        with pytest.raises(InvalidInput):
            c.get_all(user_id="p", offset=-1)
        with pytest.raises(InvalidInput):
            c.count()  # no scope, as Memory.count refuses


def test_add_many_sends_batches_and_reports_progress(server: RunningServer) -> None:
    progress: list[tuple[int, int]] = []
    items: list[dict[str, Any]] = [
        {"messages": f"item {i}", "user_id": "b", "importance": i / 10} for i in range(7)
    ]
    items[0]["messages"] = {"role": "user", "content": "one message as a dict"}
    items[1]["expiration_date"] = datetime.now(UTC) + timedelta(days=1)
    with Client(server.base_url, server.key("write")) as c:
        added = c.add_many(items, batch_size=3, on_progress=lambda *p: progress.append(p))
        assert progress == [(3, 7), (6, 7), (7, 7)]
        assert [r["memory"] for r in added["results"]] == [
            "one message as a dict",
            *(f"item {i}" for i in range(1, 7)),
        ]
        assert c.get(added["results"][1]["id"])["expires_at"] is not None
        # Each request is checked whole: the refused batch stores nothing, earlier ones stay.
        progress.clear()
        bad = [{"messages": f"late {i}", "user_id": "late"} for i in range(5)]
        bad[4]["messages"] = ""
        with pytest.raises(InvalidInput):
            c.add_many(bad, batch_size=2, on_progress=lambda *p: progress.append(p))
        assert progress == [(2, 5), (4, 5)] and c.count(user_id="late") == 4
        assert c.add_many([]) == {"results": []}
        with pytest.raises(InvalidInput):
            c.add_many({"messages": "a mapping is not a list"})  # type: ignore[arg-type]


@pytest.mark.parametrize("user_id", ODD_USERS)
def test_a_users_export_rotation_and_erase(server: RunningServer, user_id: str) -> None:
    fill(server, user_id, 3)
    memory_id = server.memory.get_all(user_id=user_id)["results"][0]["id"]
    server.memory.update(memory_id, "changed")
    expected = without_time(list(server.memory.export_user(user_id)))
    with Client(server.base_url, server.admin_key) as admin:
        exported = without_time(list(admin.export_user(user_id)))
        assert exported == expected and exported[0]["user_id"] == user_id
        rotated = admin.rotate_user_key(user_id)
        assert rotated["user_id"] == user_id and rotated["memories_rekeyed"] == 3
        assert admin.get(memory_id)["memory"] == "changed"  # readable under the new key
        erased = admin.erase_user(user_id)
        assert erased["memories_deleted"] == 3 and erased["data_key_destroyed"] is True
        assert admin.count(user_id=user_id) == 0
        with pytest.raises(NotFound):
            admin.export_user(user_id)
        with pytest.raises(NotFound):
            admin.erase_user(user_id)
        with pytest.raises(NotFound):
            admin.rotate_user_key(user_id)


def test_a_user_bound_key_exports_and_erases_only_its_user(server: RunningServer) -> None:
    fill(server, "alice", 2)
    fill(server, "bob", 2)
    with Client(server.base_url, server.key("write", user_id="alice")) as alice:
        with pytest.raises(Forbidden):
            alice.export_user("bob")
        with pytest.raises(Forbidden):
            alice.erase_user("bob")
        lines = alice.export_user("alice")
        assert next(lines)["type"] == "export"
        lines.close()  # left early: the connection is freed, the client still works
        assert alice.erase_user("alice")["memories_deleted"] == 2
    assert server.memory.count(user_id="bob") == 2


def test_namespace_rules_and_namespaces(server: RunningServer) -> None:
    with Client(server.base_url, server.admin_key) as admin:
        assert admin.namespace_settings() == server.memory.namespace_settings()
        none = {"extraction_instructions": None, "reconciliation_instructions": None}
        ttl = admin.configure_namespace(default_ttl_seconds=3600)
        assert ttl == {"secret_policy": "redact", "default_ttl_seconds": 3600.0, **none}
        kept = admin.configure_namespace(secret_policy="reject")  # the TTL is left as it was
        assert kept == {"secret_policy": "reject", "default_ttl_seconds": 3600.0, **none}
        cleared = admin.configure_namespace(default_ttl_seconds=None)
        assert cleared == {"secret_policy": "reject", "default_ttl_seconds": None, **none}
        told = admin.configure_namespace(reconciliation_instructions="Merge duplicates.")
        assert told["reconciliation_instructions"] == "Merge duplicates."
        assert admin.configure_namespace(reconciliation_instructions="") == cleared
        assert server.memory.namespace_settings() == cleared
        with pytest.raises(InvalidInput):
            admin.configure_namespace(secret_policy="shrug")
        assert "default" in [n["name"] for n in admin.namespaces()]
        assert admin.ping() is None
    with Client(server.base_url, server.key("write")) as writer, pytest.raises(Forbidden):
        writer.configure_namespace(default_ttl_seconds=60)


def wait_for_job(c: Client, job_id: str, status: str) -> dict[str, Any]:
    wait_for(lambda: c.job(job_id)["status"] == status, 30, f"job {job_id} {status}")
    return c.job(job_id)


def test_the_job_queue(start_server: Callable[..., RunningServer]) -> None:
    attempts: list[dict[str, Any]] = []

    def fails_once(payload: dict[str, Any]) -> dict[str, Any]:
        attempts.append(payload)
        if len(attempts) == 1:
            raise RuntimeError("the first attempt fails")
        return {"results": [], "echo": payload["messages"]}

    server = start_server(job_poll_seconds=0.05, job_max_attempts=1)
    server.memory.stop_jobs()
    server.memory.start_jobs(1, handler=fails_once)
    with Client(server.base_url, server.key("write")) as c:
        queued = c.add("remember this later", user_id="alice", infer=True)
        assert queued["results"] == [] and queued["job"]["status"] == "queued"
        job_id = queued["job"]["id"]
        dead = wait_for_job(c, job_id, "dead")
        assert dead["error_code"] == "handler_error" and dead["user_id"] == "alice"
        assert [j["id"] for j in c.jobs(status="dead")["results"]] == [job_id]
        assert c.jobs(status="done", user_id="alice") == {"results": []}
        with pytest.raises(NotFound):
            c.job(job_id, user_id="bob")
        with pytest.raises(NotFound):
            c.retry_job(job_id, user_id="bob")
        assert c.retry_job(job_id, user_id="alice")["attempts"] == 0
        done = wait_for_job(c, job_id, "done")
        assert done["result"] == {"results": [], "echo": "remember this later"}
        with pytest.raises(JobNotRetryable):
            c.retry_job(job_id)
        with pytest.raises(NotFound):
            c.job("no-such-job")


def test_async_client_has_the_same_calls(server: RunningServer) -> None:
    fill(server, "a/b", 12)
    local = server.memory

    async def scenario() -> None:
        async with AsyncClient(server.base_url, server.admin_key) as c:
            assert await c.count(user_id="a/b") == 12
            assert await c.get_page(user_id="a/b", top_k=5, offset=9) == local.get_page(
                user_id="a/b", top_k=5, offset=9
            )
            lines = [line async for line in await c.export_user("a/b")]
            assert without_time(lines) == without_time(list(local.export_user("a/b")))
            added = await c.add_many(
                [{"messages": f"more {i}", "user_id": "a/b"} for i in range(4)], batch_size=3
            )
            assert len(added["results"]) == 4
            settings = await c.configure_namespace(default_ttl_seconds=60)
            assert settings["default_ttl_seconds"] == 60
            assert await c.namespace_settings() == settings
            assert (await c.jobs())["results"] == []
            assert (await c.erase_user("a/b"))["memories_deleted"] == 16
            with pytest.raises(NotFound):
                await c.export_user("a/b")
            assert await c.ping() is None

    asyncio.run(scenario())
