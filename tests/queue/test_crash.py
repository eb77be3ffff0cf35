"""SIGKILL mid-queue: a real server process is killed while jobs run; after a restart every job
reaches done, and only the jobs that were running at the kill ran twice (at-least-once, with
one completion each)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from memvault import HashEmbedder, Memory
from tests.netguard import pythonpath

ROOT = Path(__file__).resolve().parents[2]
N = 20
WORKERS = 2


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVAULT_")}
    env.update(
        MEMVAULT_HOME=str(home),
        MEMVAULT_PORT=str(port),
        MEMVAULT_HOST="127.0.0.1",
        MEMVAULT_EMBEDDER="hash",
        MEMVAULT_GC_INTERVAL_SECONDS="0",
        MEMVAULT_JOB_WORKERS=str(WORKERS),
        MEMVAULT_JOB_LEASE_SECONDS="2",
        MEMVAULT_JOB_POLL_SECONDS="0.1",
        QUEUE_TEST_LOG=str(log),
        QUEUE_TEST_DELAY="0.3",
        PYTHONPATH=pythonpath(ROOT / "src", ROOT),
    )
    with open(home.parent / f"server-{port}.log", "ab") as out:  # the child has its own copy
        return subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "queue" / "slow_server.py")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(base: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the server did not become ready")


def started(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_sigkill_mid_queue_loses_no_job(home: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as memory:
        admin = memory.api_keys.create("default", "admin").key
    log = home.parent / "calls.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {admin}"}
    first = start(home, port, log)
    try:
        wait_ready(base, first)
        ids = {}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            for i in range(N):
                response = http.post(
                    "/v1/memories/", json={"messages": f"job{i}", "user_id": "u", "infer": True}
                )
                assert response.status_code == 202, response.text
                ids[response.json()["job_id"]] = f"job{i}"
        deadline = time.monotonic() + 60
        while len(started(log)) < 4:  # some done, some running, most still queued
            assert time.monotonic() < deadline, "no job started"
            time.sleep(0.02)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=20)
    at_kill = Counter(started(log))
    assert sum(at_kill.values()) < N  # killed mid-queue

    second = start(home, port, log)
    try:
        wait_ready(base, second)
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            deadline = time.monotonic() + 120
            while True:
                done = http.get("/v1/jobs/", params={"status": "done"}).json()["results"]
                if len(done) == N:
                    break
                assert time.monotonic() < deadline, f"{len(done)} of {N} jobs done"
                time.sleep(0.1)
            everything = http.get("/v1/jobs/").json()["results"]
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    assert {job["id"] for job in everything} == set(ids)
    assert all(job["status"] == "done" for job in everything)
    for job in done:  # each job's one stored result is its own
        assert job["result"] == {"results": [], "done": ids[job["id"]]}
    calls = Counter(started(log))
    assert set(calls) == set(ids.values())
    twice = {message for message, count in calls.items() if count > 1}
    # Only what was running when the process died ran again (at most one job per worker).
    assert all(count <= 2 for count in calls.values())
    assert len(twice) <= WORKERS and twice <= set(at_kill)
