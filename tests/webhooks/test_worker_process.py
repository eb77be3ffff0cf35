"""``memvault jobs work`` delivers webhook events too, so API nodes started with
``MEMVAULT_WEBHOOK_WORKERS=0`` still have their events sent, by a process of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from memvault import HashEmbedder, Memory
from memvault.webhooks import verify
from tests.polling import wait_for
from tests.webhooks.conftest import LOOPBACK, Receiver


def _worker(home: Path, allowed: list[str]) -> subprocess.Popen[str]:
    """``memvault jobs work`` on ``home`` with no LLM and the operator allow-list ``allowed``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVAULT_")}
    env.update(
        {
            "MEMVAULT_HOME": str(home),
            "MEMVAULT_EMBEDDER": "hash",
            "MEMVAULT_WEBHOOK_ALLOWED_HOSTS": json.dumps(allowed),
            "MEMVAULT_WEBHOOK_ALLOW_HTTP": "true",
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "memvault", "jobs", "work"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def test_a_worker_process_without_an_llm_delivers_the_outbox(
    home: Path, receiver: Receiver
) -> None:
    settings = {"webhook_allowed_hosts": LOOPBACK, "webhook_allow_http": True}
    with Memory(home, embedder=HashEmbedder(), webhook_workers=0, **settings) as m:
        secret = m.configure_webhook(receiver.url)["secret"]
        added = m.add("Alice prefers green tea", user_id="alice", infer=False)["results"][0]
        m.erase_user("alice")
        worker = _worker(home, LOOPBACK)
        try:

            def both_delivered() -> bool:
                assert worker.poll() is None, worker.communicate()[0]
                rows = m.webhook_deliveries()["results"]
                return len(rows) == 2 and all(row["status"] == "delivered" for row in rows)

            wait_for(both_delivered, 60, "the worker process delivers both events")
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
    assert "webhook senders: 1 running on sqlite" in output and "workers stopped" in output
    assert "job workers" not in output  # no LLM: the job queue is not worked here
    events = [json.loads(item.body) for item in receiver.received]
    assert [e["type"] for e in events] == ["memory.added", "user.erased"]
    assert events[0]["data"]["memory_id"] == added["id"]
    for item in receiver.received:
        verify(secret, item.body, item.headers["X-Memvault-Signature"], now=time.time())
    assert len(events) == 2  # each event once


def test_a_worker_process_enforces_its_own_allow_list(home: Path, receiver: Receiver) -> None:
    """The destination is checked where it is sent from: a worker process whose operator allows
    another network never posts to the receiver the API process allowed (nothing reaches it;
    the delivery fails with ``destination_refused`` and waits for a retry)."""
    settings = {"webhook_allowed_hosts": LOOPBACK, "webhook_allow_http": True}
    with Memory(home, embedder=HashEmbedder(), webhook_workers=0, **settings) as m:
        m.configure_webhook(receiver.url)
        m.add("Alice prefers green tea", user_id="alice", infer=False)
        worker = _worker(home, ["10.255.255.0/24"])
        try:

            def refused() -> bool:
                assert worker.poll() is None, worker.communicate()[0]
                (row,) = m.webhook_deliveries()["results"]
                return row["last_error"] is not None

            wait_for(refused, 60, "the worker process tries the delivery once")
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=60)
        (row,) = m.webhook_deliveries()["results"]
    assert worker.returncode == 0, output
    assert row["status"] == "pending" and row["last_error"] == "destination_refused"
    assert receiver.received == []
