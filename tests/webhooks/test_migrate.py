"""``memvault migrate`` takes a namespace's webhook and its outbox along: the target delivers
what was waiting, signed with the same secret."""

from __future__ import annotations

import json
from pathlib import Path

from memvault import HashEmbedder, Memory
from memvault.core.transfer import migrate_store, parse_target
from memvault.webhooks import verify
from tests.webhooks.conftest import LOOPBACK, FakeClock, Receiver


def test_webhooks_and_waiting_events_move_with_the_store(
    home: Path, pg_url: str, receiver: Receiver, clock: FakeClock
) -> None:
    options = {"webhook_allowed_hosts": LOOPBACK, "webhook_allow_http": True}
    with Memory(home, embedder=HashEmbedder(), **options) as source:
        secret = source.configure_webhook(receiver.url, include_text=True)["secret"]
        added = source.add("Jo keeps bees", user_id="jo", infer=False)["results"][0]
        summary = migrate_store(source, parse_target(pg_url))
    for table in ("webhooks", "webhook_outbox"):
        assert (summary["tables"][table]["source"], summary["tables"][table]["target"]) == (1, 1)
    with Memory(home, embedder=HashEmbedder(), database_url=pg_url, **options) as target:
        assert target.webhook()["include_text"] is True
        assert target.webhook_worker(clock=clock).deliver_due() == 1
    (item,) = receiver.received
    verify(secret, item.body, item.headers["X-Memvault-Signature"], now=clock().timestamp())
    event = json.loads(item.body)
    assert (event["data"]["memory_id"], event["data"]["text"]) == (added["id"], "Jo keeps bees")
