"""A namespace reset leaves nothing of its users in the webhook outbox."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from memvault import Memory
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
