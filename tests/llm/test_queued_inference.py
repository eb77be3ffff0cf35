"""The queue and the pipeline together: an ``infer`` add queued, run by a worker with the
default handler (``process_inference``) against the scripted chat server, and refused at once
where no LLM is configured (never left to die in the queue)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from memvault import HashEmbedder, InvalidConfig, Memory, NotFound
from memvault.testing import Reply, ScriptedChatServer
from tests.llm.conftest import facts


def test_a_queued_infer_add_is_inferred_by_a_worker(home: Path, chat: ScriptedChatServer) -> None:
    chat.push(facts("Alice likes green tea", "Alice lives in Lisbon"))
    with Memory(
        home,
        embedder=HashEmbedder(),
        llm_base_url=chat.base_url,
        llm_model="scripted",
        llm_backoff_seconds=0.01,
        async_mode=True,
        job_poll_seconds=0.05,
    ) as m:
        queued = m.add("I love green tea and I live in Lisbon", user_id="alice", infer=True)
        assert queued["results"] == [] and queued["job"]["status"] == "queued"
        job_id = queued["job"]["id"]
        m.start_jobs(1)
        deadline = time.monotonic() + 30
        while m.job(job_id)["status"] != "done":
            assert time.monotonic() < deadline, m.job(job_id)
            time.sleep(0.05)
        texts = sorted(r["memory"] for r in m.get_all(user_id="alice")["results"])
        assert texts == ["Alice likes green tea", "Alice lives in Lisbon"]
        stored = m.get_all(user_id="alice")["results"][0]
        assert stored["metadata"]["provenance"]["job_id"] == job_id
        assert [e["event"] for e in m.history(stored["id"])] == ["ADD"]


def test_an_infer_add_is_refused_at_once_without_an_llm(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder(), async_mode=True) as m:
        with pytest.raises(InvalidConfig, match="MEMVAULT_LLM_BASE_URL"):
            m.add("remember this", user_id="alice", infer=True)
        assert m.jobs()["results"] == []


def test_an_erase_while_the_llm_thinks_is_not_undone_by_the_job(
    home: Path, chat: ScriptedChatServer
) -> None:
    """The job's user is erased during its LLM call: its result must not write the erased
    user's memories back (under a new key generation) when the call returns."""
    chat.push(Reply(content=facts("Alice keeps a secret diary"), delay=1.5))
    with Memory(
        home,
        embedder=HashEmbedder(),
        llm_base_url=chat.base_url,
        llm_model="scripted",
        llm_backoff_seconds=0.01,
        async_mode=True,
        job_poll_seconds=0.05,
    ) as m:
        m.add("an earlier fact", user_id="alice")
        job_id = m.add("I keep a secret diary", user_id="alice", infer=True)["job"]["id"]
        m.start_jobs(1)
        deadline = time.monotonic() + 30
        while not chat.requests:  # the worker is inside the LLM call
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert m.erase_user("alice")["jobs_deleted"] == 1
        m.stop_jobs(grace_seconds=30)  # the worker's call returns and the job ends
        assert m.get_all(user_id="alice")["results"] == []
        with pytest.raises(NotFound):
            m.job(job_id)
