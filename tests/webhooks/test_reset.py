"""A namespace reset leaves nothing of its users in the webhook outbox; another namespace
reaches none of a namespace's webhook or deliveries; an erase or key rotation by another process
leaves no text for this one to send."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

import pytest

from memvault import Memory
from memvault.errors import NotFound
from tests.webhooks.conftest import FakeClock, Receiver


def test_a_reset_namespace_leaves_no_pending_event_or_user_id_in_the_outbox(
    open_memory: Callable[..., Memory], receiver: Receiver, clock: FakeClock, backend: str | None
) -> None:
    m = open_memory()
    m.configure_webhook(receiver.url, include_text=True)
    m.add("ann's secret diary line", user_id="ann-the-erased", infer=False)
    m.reset()
    assert m.webhook_deliveries()["results"] == []
    assert m.webhook_worker(clock=clock).deliver_due() == 0
    assert receiver.received == []
    if backend is None:
        with sqlite3.connect(m.home / "memvault.db") as db:
            left = db.execute("SELECT COUNT(*) FROM webhook_outbox").fetchone()[0]
        assert left == 0


def test_another_namespace_sees_and_retries_none_of_a_namespaces_deliveries(
    open_memory: Callable[..., Memory], receiver: Receiver, clock: FakeClock
) -> None:
    m = open_memory()
    m.configure_webhook(receiver.url, include_text=True)
    receiver.statuses = [500] * 20
    m.add("only for namespace one", user_id="ann", infer=False)
    worker = m.webhook_worker(clock=clock)
    for _ in range(12):  # every attempt fails: the event ends dead
        worker.deliver_due()
        clock.advance(3600)
    [dead] = m.webhook_deliveries(status="dead")["results"]
    other = m.namespaced("tenant-two")
    assert other.webhook_deliveries()["results"] == []
    with pytest.raises(NotFound):
        other.retry_webhook_delivery(dead["id"])
    with pytest.raises(NotFound):
        other.webhook()
    with pytest.raises(NotFound):
        other.remove_webhook()
    assert m.webhook()["url"] == receiver.url
    assert [d["status"] for d in m.webhook_deliveries()["results"]] == ["dead"]


def test_an_erase_or_rotation_by_another_process_sends_no_text_here(
    open_memory: Callable[..., Memory], receiver: Receiver, clock: FakeClock
) -> None:
    serving = open_memory()
    serving.configure_webhook(receiver.url, include_text=True)
    serving.add("Gus hides his keys under the mat", user_id="gus", infer=False)
    serving.add("Hal keeps cash in the freezer", user_id="hal", infer=False)
    assert serving.search("keys", user_id="gus")["results"]  # this process holds gus's key
    assert serving.search("cash", user_id="hal")["results"]
    other = open_memory()  # another process on the same store
    other.erase_user("gus")
    other.rotate_user_key("hal")
    serving.webhook_worker(clock=clock).deliver_due()
    sent = [json.loads(r.body) for r in receiver.received]
    added = [e for e in sent if e["type"] == "memory.added"]
    assert len(added) == 2 and all(e["data"]["text"] is None for e in added)
    assert not any(b"Gus hides" in r.body or b"Hal keeps" in r.body for r in receiver.received)
