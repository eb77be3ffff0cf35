"""``memvault jobs work``: the queue's workers as a process of their own, beside the servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from memvault import HashEmbedder, Memory
from memvault.testing import ScriptedChatServer
from tests.llm.conftest import facts
from tests.polling import wait_for


def worker_env(home: Path, llm: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVAULT_LLM_")}
    env.update({"MEMVAULT_HOME": str(home), "MEMVAULT_EMBEDDER": "hash"})
    if llm is not None:
        env.update({"MEMVAULT_LLM_BASE_URL": llm, "MEMVAULT_LLM_MODEL": "scripted"})
    return env


def test_a_worker_process_runs_every_namespaces_jobs_and_stops_on_sigterm(home: Path) -> None:
    with ScriptedChatServer(default=facts("The user said something")) as chat:
        with Memory(home, embedder=HashEmbedder(), async_mode=True) as m:
            queued = [
                memory.add(f"message {i}", user_id=f"u{i}", infer=True)["job"]["id"]
                for i in range(3)
                for memory in (m, m.namespaced("team-b"))
            ]
            worker = subprocess.Popen(
                [sys.executable, "-m", "memvault", "jobs", "work", "--workers", "2"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=worker_env(home, chat.base_url),
            )
            try:
                namespaces = [m, m.namespaced("team-b")] * 3

                def all_done() -> bool:  # the jobs are done by another process
                    assert worker.poll() is None, worker.communicate()[0]
                    return all(
                        memory.job(job_id)["status"] == "done"
                        for job_id, memory in zip(queued, namespaces, strict=True)
                    )

                wait_for(all_done, 60, "every job done by the worker process")
                assert m.count(user_id="u0") == 1
                assert m.namespaced("team-b").count(user_id="u2") == 1
            finally:
                worker.send_signal(signal.SIGTERM)
                output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
    assert "2 running on sqlite" in output and "workers stopped" in output
    assert len(chat.chat_requests) == 6  # one extraction per job, each job once


def test_without_an_llm_the_worker_refuses_to_start(home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "memvault", "jobs", "work"],
        capture_output=True,
        text=True,
        env=worker_env(home, None),
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr  # a configuration error
    assert "[invalid_config]" in done.stderr and "MEMVAULT_LLM_BASE_URL" in done.stderr
    assert "Traceback" not in done.stderr
