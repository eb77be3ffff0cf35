"""Key rotation and the queue, on SQLite and Postgres: a user's jobs (queued, running, done,
dead) are re-sealed with the rest of their rows, so they still run and show after the rotation;
other users' jobs are untouched; the old key opens nothing of the re-sealed rows."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from memvault import IntegrityError, Memory
from memvault.clock import now_iso
from memvault.codec import KeyMissing
from memvault.core import jobs
from memvault.core.engine import Engine
from memvault.security.crypto import Binding, ScopeCipher
from memvault.storage.rows import JobRow
from memvault.testing import ScriptedChatServer
from tests.llm.conftest import facts
from tests.polling import wait_for
from tests.queue.test_queue import _later, echo

OpenMemory = Callable[..., Memory]

# What the scripted model extracts from each user's message (matched on the request, so the
# order in which the worker runs the jobs does not matter).
_FACTS = {
    "green tea": "Alice likes green tea",
    "the cello": "Bob plays the cello",
    "in Lisbon": "Alice lives in Lisbon",
}


def _extract(body: dict[str, Any]) -> str:
    asked = json.dumps(body)
    for words, fact in _FACTS.items():
        if words in asked:
            return facts(fact)
    return facts()


@pytest.fixture
def chat() -> Iterator[ScriptedChatServer]:
    with ScriptedChatServer(default=_extract) as server:
        yield server


@pytest.fixture
def inferring(open_memory: OpenMemory, chat: ScriptedChatServer) -> OpenMemory:
    """``open_memory`` with the scripted model configured and the queue on."""

    def make(**options: Any) -> Memory:
        return open_memory(
            async_mode=True,
            llm_base_url=chat.base_url,
            llm_model="scripted",
            llm_backoff_seconds=0.01,
            **options,
        )

    return make


def _stored(m: Memory, job_id: str) -> JobRow:
    row = m.engine.store.get_job(m.namespace, job_id)
    assert row is not None
    return row


def _memories(m: Memory, user_id: str) -> list[str]:
    return sorted(r["memory"] for r in m.get_all(user_id=user_id)["results"])


def test_a_queued_job_runs_after_its_users_key_rotation(inferring: OpenMemory) -> None:
    m = inferring()
    alice = m.add("I love green tea", user_id="alice", infer=True)["job"]["id"]
    bob = m.add("I play the cello", user_id="bob", infer=True)["job"]["id"]
    before, bob_before = _stored(m, alice), _stored(m, bob)
    # The thief's view: a copy of alice's key as it was before the rotation.
    stolen = m.engine.keyring.cipher(before.scope_id)
    assert stolen is not None

    report = m.rotate_user_key("alice")

    assert report["jobs_rekeyed"] == 1
    after = _stored(m, alice)
    assert after.scope_id == report["key_scope"] != before.scope_id
    assert after.payload_box != before.payload_box and after.status == "queued"
    bound = Binding(m.namespace, "alice", None, None, alice)
    assert stolen.open(bound, "job_payload", before.payload_box)  # it did open the old row
    for thief in (stolen, ScopeCipher(after.scope_id, stolen.data_key)):  # old key, any name
        with pytest.raises(IntegrityError):
            thief.open(bound, "job_payload", after.payload_box)
    with pytest.raises(KeyMissing):
        jobs.open_payload(m.engine, before)  # a copy of the row from before (a backup)
    assert _stored(m, bob) == bob_before  # another user's job is not touched

    m.start_jobs(1)
    wait_for(lambda: m.job(alice)["status"] == "done", what="alice's job done")
    wait_for(lambda: m.job(bob)["status"] == "done", what="bob's job done")
    shown = m.job(alice, user_id="alice")
    assert shown["attempts"] == 1 and shown["error_code"] is None
    assert [(r["event"], r["memory"]) for r in shown["result"]["results"]] == [
        ("ADD", "Alice likes green tea")
    ]
    assert _memories(m, "alice") == ["Alice likes green tea"]
    assert _memories(m, "bob") == ["Bob plays the cello"]


def test_a_dead_job_retried_after_rotation_runs(inferring: OpenMemory) -> None:
    m = inferring(job_max_attempts=1)
    job_id = m.add("I live in Lisbon", user_id="alice", infer=True)["job"]["id"]
    store = m.engine.store
    assert store.claim("w", _later(30), now_iso()) is not None
    assert store.fail(job_id, "w", "llm_unreachable", None, now_iso())
    assert m.job(job_id)["status"] == "dead"

    assert m.rotate_user_key("alice")["jobs_rekeyed"] == 1

    assert m.retry_job(job_id, user_id="alice")["status"] == "queued"
    m.start_jobs(1)
    wait_for(lambda: m.job(job_id)["status"] == "done", what="the retried job done")
    assert [r["memory"] for r in m.job(job_id)["result"]["results"]] == ["Alice lives in Lisbon"]
    assert _memories(m, "alice") == ["Alice lives in Lisbon"]


def test_a_done_jobs_result_is_resealed_and_still_shown(inferring: OpenMemory) -> None:
    m = inferring()
    job_id = m.add("I love green tea", user_id="alice", infer=True)["job"]["id"]
    m.start_jobs(1)
    wait_for(lambda: m.job(job_id)["status"] == "done", what="the job done")
    m.stop_jobs()
    shown = m.job(job_id)
    before = _stored(m, job_id)

    report = m.rotate_user_key("alice")

    assert report["jobs_rekeyed"] == 1 and report["memories_rekeyed"] == 1
    after = _stored(m, job_id)
    assert after.result_box is not None and after.result_box != before.result_box
    assert m.job(job_id) == shown
    assert jobs.open_payload(m.engine, after)["messages"] == "I love green tea"


def test_a_job_rotated_while_it_runs_stores_a_result_under_the_new_key(
    open_memory: OpenMemory,
) -> None:
    """The worker opened the request under the old key; the rotation re-seals the job and
    destroys that key while the handler runs; the result is sealed under the new key."""
    m = open_memory(async_mode=True)
    started, release = threading.Event(), threading.Event()

    def slow(payload: dict[str, Any]) -> dict[str, Any]:
        started.set()
        assert release.wait(30)
        return {"results": [], "echo": payload["messages"]}

    m.start_jobs(1, handler=slow)
    job_id = m.add("rotate me mid-run", user_id="alice", infer=True)["job"]["id"]
    assert started.wait(30)
    before = _stored(m, job_id)
    assert before.status == "running"

    report = m.rotate_user_key("alice")

    assert report["jobs_rekeyed"] == 1
    assert m.engine.keyring.cipher(before.scope_id) is None  # the key the claim named is gone
    release.set()
    wait_for(lambda: m.job(job_id)["status"] == "done", what="the job done")
    assert m.job(job_id)["result"] == {"results": [], "echo": "rotate me mid-run"}
    assert _stored(m, job_id).scope_id == report["key_scope"]


def test_a_queued_job_runs_after_a_master_key_rotation(inferring: OpenMemory) -> None:
    """The master key wraps the data keys only: rewrapping them leaves every job's seal as it
    is, and retiring the old master version loses nothing queued."""
    m = inferring()
    job_id = m.add("I love green tea", user_id="alice", infer=True)["job"]["id"]
    before = _stored(m, job_id)
    m.rotate_master_key(retire_old=True)
    assert _stored(m, job_id) == before
    m.start_jobs(1)
    wait_for(lambda: m.job(job_id)["status"] == "done", what="the job done")
    assert _memories(m, "alice") == ["Alice likes green tea"]


def test_a_job_claimed_before_a_rotation_is_opened_as_it_is_stored_now(
    open_memory: OpenMemory,
) -> None:
    """The rotation commits (and destroys the key the claim named) between the worker's claim
    and its opening of the request: the request is opened as the job is stored now."""
    m = open_memory(async_mode=True)
    job_id = m.add("claimed under the old key", user_id="alice", infer=True)["job"]["id"]
    rotations: list[dict[str, Any]] = []

    def engine_for(namespace: str) -> Engine:
        # The pool asks for the engine after the claim, before it opens the request.
        if not rotations:
            rotations.append(m.rotate_user_key("alice"))
        return m.engine.view(namespace)

    worker = jobs.JobWorker(
        m.engine.store, engine_for, lambda namespace: echo, workers=1, poll_seconds=0.05
    ).start()
    try:
        wait_for(lambda: m.job(job_id)["status"] != "queued", what="the job claimed")
        wait_for(lambda: m.job(job_id)["status"] in ("done", "dead"), what="the job ended")
    finally:
        worker.stop()
    assert rotations[0]["jobs_rekeyed"] == 1
    shown = m.job(job_id)
    assert shown["status"] == "done", shown["error_code"]
    assert shown["result"] == {"results": [], "echo": "claimed under the old key"}


def test_erase_after_a_rotation_removes_the_resealed_jobs(open_memory: OpenMemory) -> None:
    m = open_memory(async_mode=True)
    job_id = m.add("secret plan", user_id="alice", infer=True)["job"]["id"]
    bob = m.add("bob's", user_id="bob", infer=True)["job"]["id"]
    m.rotate_user_key("alice")
    resealed = _stored(m, job_id)
    assert m.erase_user("alice")["jobs_deleted"] == 1
    assert m.engine.store.get_job(m.namespace, job_id) is None
    with pytest.raises(KeyMissing):
        jobs.open_payload(m.engine, resealed)  # a copy of the re-sealed row (a backup)
    assert m.job(bob)["status"] == "queued"
