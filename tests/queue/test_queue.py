"""The durable queue on SQLite and Postgres: states, claims, leases, workers, sealing, erase."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from memvault import Memory
from memvault.clock import now_iso
from memvault.codec import KeyMissing
from memvault.core import jobs
from memvault.errors import InvalidId, InvalidInput, JobNotRetryable, NotFound
from tests.polling import wait_for

OpenMemory = Callable[..., Memory]
CANARY = "zebra-canary-7f3a9 lives at 12 Quay Street"


def _later(seconds: float) -> str:
    from datetime import UTC, datetime, timedelta

    from memvault.clock import iso

    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return {"results": [], "echo": payload["messages"]}


def test_enqueue_claim_complete(open_memory: OpenMemory) -> None:
    m = open_memory(async_mode=True)
    answer = m.add("remember this", user_id="alice", infer=True)
    assert answer["results"] == [] and answer["job"]["status"] == "queued"
    job_id = answer["job"]["id"]
    store = m.engine.store
    claimed = store.claim("w1", _later(30), now_iso())
    assert claimed is not None and claimed.id == job_id and claimed.attempts == 1
    assert store.claim("w2", _later(30), now_iso()) is None  # held by w1
    assert jobs.open_payload(m.engine, claimed)["messages"] == "remember this"
    sealed_for = claimed.scope_id
    assert not store.complete(job_id, "w2", b"x", now_iso(), scope_id=sealed_for)  # not w2's
    assert store.renew(job_id, "w1", _later(60))
    assert m.job(job_id)["status"] == "running"
    box = m.engine.codec.reader(claimed.scope_id, job_id).seal(
        jobs._binding(claimed), "job_result", b'{"results": []}'
    )
    assert not store.complete(job_id, "w1", box, now_iso(), scope_id="another key scope")
    assert store.complete(job_id, "w1", box, now_iso(), scope_id=sealed_for)
    shown = m.job(job_id)
    assert shown["status"] == "done" and shown["result"] == {"results": []}
    assert [j["id"] for j in m.jobs(status="done")["results"]] == [job_id]
    assert m.jobs(status="queued")["results"] == []


def test_fail_retry_dead_and_manual_retry(open_memory: OpenMemory) -> None:
    m = open_memory(async_mode=True, job_max_attempts=2)
    job_id = m.add("x", user_id="alice", infer=True)["job"]["id"]
    store = m.engine.store
    first = store.claim("w", _later(30), now_iso())
    assert first is not None
    assert store.fail(job_id, "w", "llm_unreachable", now_iso(), now_iso())
    assert m.job(job_id)["status"] == "queued"
    assert m.job(job_id)["error_code"] == "llm_unreachable"
    # a retry in the future is not claimable yet
    second = store.claim("w", _later(30), now_iso())
    assert second is not None and second.attempts == 2
    assert store.fail(job_id, "w", "llm_unreachable", now_iso(), now_iso())
    assert m.job(job_id)["status"] == "dead"  # attempts >= max
    assert store.claim("w", _later(30), now_iso()) is None
    with pytest.raises(JobNotRetryable):
        m.retry_job(m.add("y", user_id="alice", infer=True)["job"]["id"])  # queued: no retry
    retried = m.retry_job(job_id)
    assert retried["status"] == "queued" and retried["attempts"] == 0


def test_backoff_delays_the_next_claim(open_memory: OpenMemory) -> None:
    m = open_memory(async_mode=True)
    job_id = m.add("x", user_id="alice", infer=True)["job"]["id"]
    store = m.engine.store
    assert store.claim("w", _later(30), now_iso()) is not None
    assert store.fail(job_id, "w", "rate_limited", _later(3600), now_iso())
    assert store.claim("w", _later(30), now_iso()) is None


def test_expired_lease_is_reclaimed(open_memory: OpenMemory) -> None:
    m = open_memory(async_mode=True)
    job_id = m.add("x", user_id="alice", infer=True)["job"]["id"]
    store = m.engine.store
    assert store.claim("dead-worker", _later(-1), now_iso()) is not None  # lease already over
    again = store.claim("w2", _later(30), now_iso())
    assert again is not None and again.id == job_id and again.attempts == 2
    assert not store.renew(job_id, "dead-worker", _later(30))  # the old claim is gone


def test_namespace_and_user_bounds(open_memory: OpenMemory) -> None:
    m = open_memory(async_mode=True)
    mine = m.add("a", user_id="alice", infer=True)["job"]["id"]
    m.add("b", user_id="bob", infer=True)
    other = m.namespaced("tenant2")
    with pytest.raises(NotFound):
        other.job(mine)
    assert other.jobs()["results"] == []
    with pytest.raises(NotFound):
        m.job(mine, user_id="bob")
    assert [j["user_id"] for j in m.jobs(user_id="alice")["results"]] == ["alice"]
    with pytest.raises(InvalidInput):
        m.jobs(status="nonsense")


def test_invalid_request_is_refused_before_queueing(open_memory: OpenMemory) -> None:
    m = open_memory(async_mode=True)
    with pytest.raises(InvalidInput):
        m.add("", user_id="alice", infer=True)
    with pytest.raises(InvalidInput):
        m.add("text", infer=True)  # no scope
    assert m.jobs()["results"] == []


def test_library_default_is_synchronous(open_memory: OpenMemory) -> None:
    m = open_memory()
    assert m.async_mode is False
    assert "job" not in m.add("plain add", user_id="alice")


def test_worker_runs_jobs_and_retries_until_dead(open_memory: OpenMemory) -> None:
    m = open_memory(async_mode=True, job_max_attempts=3)
    calls: Counter[str] = Counter()

    def flaky(payload: dict[str, Any]) -> dict[str, Any]:
        calls[payload["messages"]] += 1
        if payload["messages"] == "always fails":
            raise RuntimeError("boom")
        if payload["messages"] == "fails once" and calls["fails once"] == 1:
            raise RuntimeError("transient")
        return echo(payload)

    m.start_jobs(2, handler=flaky)
    ok = m.add("fine", user_id="alice", infer=True)["job"]["id"]
    once = m.add("fails once", user_id="alice", infer=True)["job"]["id"]
    bad = m.add("always fails", user_id="alice", infer=True)["job"]["id"]
    wait_for(lambda: m.job(ok)["status"] == "done", what="ok done")
    wait_for(lambda: m.job(once)["status"] == "done", what="once done")
    wait_for(lambda: m.job(bad)["status"] == "dead", what="bad dead")
    assert m.job(ok)["result"] == {"results": [], "echo": "fine"}
    assert m.job(once)["attempts"] == 2
    dead = m.job(bad)
    assert dead["attempts"] == 3 and dead["error_code"] == "handler_error"
    assert calls["always fails"] == 3


def test_two_workers_never_run_a_job_twice(open_memory: OpenMemory, backend: str | None) -> None:
    """Threads of one pool, and on Postgres a second store (another node) too."""
    n = 100
    first = open_memory("a", async_mode=True)
    calls: Counter[str] = Counter()
    by_node: Counter[str] = Counter()
    lock = threading.Lock()

    def counting(node: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def count(payload: dict[str, Any]) -> dict[str, Any]:
            with lock:
                calls[payload["messages"]] += 1
                by_node[node] += 1
            time.sleep(0.01)
            return {"results": []}

        return count

    first.start_jobs(3, handler=counting("a"))
    if backend is not None:
        second = open_memory("b")
        second.start_jobs(3, handler=counting("b"))
    ids = [first.add(f"fact {i}", user_id=f"u{i % 5}", infer=True)["job"]["id"] for i in range(n)]
    wait_for(
        lambda: len(first.jobs(status="done", limit=1000)["results"]) == n,
        seconds=120,
        what="every job done",
    )
    assert sum(calls.values()) == n and set(calls.values()) == {1}
    assert {j["id"] for j in first.jobs(status="done", limit=1000)["results"]} == set(ids)
    if backend is not None:
        assert by_node["a"] > 0 and by_node["b"] > 0, by_node  # both nodes took jobs


def test_stop_releases_running_claims(open_memory: OpenMemory) -> None:
    m = open_memory(async_mode=True)
    started, release = threading.Event(), threading.Event()

    def slow(payload: dict[str, Any]) -> dict[str, Any]:
        started.set()
        release.wait(30)
        return {"results": []}

    m.start_jobs(1, handler=slow)
    job_id = m.add("slow", user_id="alice", infer=True)["job"]["id"]
    assert started.wait(30)
    m.stop_jobs(grace_seconds=0.1)
    shown = m.job(job_id)
    assert shown["status"] == "queued" and shown["attempts"] == 0
    release.set()


def test_payload_is_sealed_in_the_sqlite_file(open_memory: OpenMemory, backend: str | None) -> None:
    if backend is not None:
        pytest.skip("a file scan of SQLite (Postgres at rest: tests/security)")
    m = open_memory(async_mode=True)
    m.add([{"role": "user", "content": CANARY}], user_id="alice", infer=True)
    m.engine.store.close()  # checkpoint nothing away: scan the db and its WAL as they are
    found = b""
    for path in m.home.iterdir():
        if path.name.startswith("memvault.db"):
            found += path.read_bytes()
    assert found and CANARY.encode() not in found and b"zebra-canary" not in found


def test_erase_removes_jobs_and_shreds_their_payload(open_memory: OpenMemory) -> None:
    m = open_memory(async_mode=True)
    m.add("a kept memory", user_id="alice")
    job_id = m.add("secret plan", user_id="alice", infer=True)["job"]["id"]
    bob = m.add("bob's", user_id="bob", infer=True)["job"]["id"]
    row = m.engine.store.get_job(m.namespace, job_id)
    assert row is not None
    result = m.erase_user("alice")
    assert result["jobs_deleted"] == 1
    with pytest.raises(NotFound):
        m.job(job_id)
    with pytest.raises(KeyMissing):
        jobs.open_payload(m.engine, row)  # a copy of the row (a backup) is unreadable
    assert m.job(bob)["status"] == "queued"


def test_reset_removes_the_namespace_jobs(open_memory: OpenMemory) -> None:
    m = open_memory(async_mode=True)
    tenant = m.namespaced("t2")
    tenant.add("x", user_id="alice", infer=True)
    kept = m.add("y", user_id="alice", infer=True)["job"]["id"]
    tenant.reset()
    assert tenant.jobs()["results"] == []
    assert m.job(kept)["status"] == "queued"


def test_job_and_retry_by_user_compare_ids_as_every_other_call(open_memory: OpenMemory) -> None:
    """A user id is NFC-normalised everywhere: the decomposed spelling of ``Zoé`` names the same
    user when it reads or retries a job, as it does when it adds or searches."""
    composed, decomposed = "Zo\u00e9", "Zoe\u0301"
    m = open_memory(async_mode=True, job_max_attempts=1)
    job_id = m.add("x", user_id=decomposed, infer=True)["job"]["id"]
    assert m.job(job_id, user_id=decomposed)["user_id"] == composed
    assert m.job(job_id, user_id=composed)["id"] == job_id
    assert [j["id"] for j in m.jobs(user_id=decomposed)["results"]] == [job_id]
    store = m.engine.store
    assert store.claim("w", _later(30), now_iso()) is not None
    assert store.fail(job_id, "w", "llm_unreachable", None, now_iso())
    with pytest.raises(NotFound):
        m.retry_job(job_id, user_id="Zoe")  # another user
    assert m.job(job_id)["status"] == "dead"
    assert m.retry_job(job_id, user_id=decomposed)["status"] == "queued"
    with pytest.raises(NotFound):
        m.job(job_id, user_id="Zoe")
    with pytest.raises(InvalidId):
        m.job(job_id, user_id="Zo\u00e9\u200b")  # a zero-width space: refused as everywhere
