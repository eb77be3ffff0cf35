"""Webhooks over REST with the Python client, delivered by the server's own worker threads to a
loopback receiver the operator listed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from memvault import Client
from memvault.errors import (
    DeliveryNotRetryable,
    DestinationRefused,
    Forbidden,
    InvalidInput,
    NotFound,
)
from memvault.webhooks import verify
from tests.polling import wait_for
from tests.server.conftest import RunningServer, start_server  # noqa: F401
from tests.webhooks.conftest import LOOPBACK, Receiver


def test_configure_deliver_list_rotate_remove(
    start_server: Callable[..., RunningServer],  # noqa: F811
    receiver: Receiver,
) -> None:
    server = start_server(webhook_allowed_hosts=LOOPBACK, webhook_allow_http=True)
    with Client(server.base_url, server.admin_key) as admin:
        with pytest.raises(NotFound):
            admin.webhook()
        with pytest.raises(DestinationRefused):
            admin.configure_webhook("http://127.0.0.2:8080/")  # loopback, but not listed
        made = admin.configure_webhook(receiver.url, include_text=True)
        secret = made["secret"]
        assert admin.webhook() == {k: v for k, v in made.items() if k != "secret"}
        added = admin.add("Ivy waters the ferns on Sundays", user_id="ivy")["results"][0]
        # The server's worker polls every second: wait for it, bounded.
        wait_for(lambda: bool(receiver.received), 15, "the delivery")
        (item,) = receiver.received
        verify(secret, item.body, item.headers["X-Memvault-Signature"], now=time.time())
        event = json.loads(item.body)
        assert (event["type"], event["data"]["memory_id"]) == ("memory.added", added["id"])
        assert event["data"]["text"] == "Ivy waters the ferns on Sundays"
        wait_for(
            lambda: admin.webhook_deliveries()["results"][0]["status"] == "delivered",
            15,
            "the delivery recorded as delivered",
        )
        (listed,) = admin.webhook_deliveries(status="delivered")["results"]
        assert listed["id"] == event["id"] and "text" not in listed
        with pytest.raises(DeliveryNotRetryable):
            admin.retry_webhook_delivery(listed["id"])
        with pytest.raises(NotFound):
            admin.retry_webhook_delivery("no-such-delivery")
        rotated = admin.rotate_webhook_secret()
        assert rotated["secret"] != secret and "previous_secret_expires_at" not in rotated
        overlapping = admin.rotate_webhook_secret(overlap_seconds=600)
        assert overlapping["previous_secret_expires_at"] > overlapping["updated_at"]
        assert (
            admin.webhook()["previous_secret_expires_at"]
            == (overlapping["previous_secret_expires_at"])
        )
        with pytest.raises(InvalidInput):
            admin.rotate_webhook_secret(overlap_seconds=604801)
        assert admin.remove_webhook()["deleted"] is True
        with pytest.raises(NotFound):
            admin.webhook()
    with Client(server.base_url, server.key("write")) as writer, pytest.raises(Forbidden):
        writer.configure_webhook(receiver.url)
