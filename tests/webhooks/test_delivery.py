"""Webhooks end to end on each store: the outbox written with the change, signed deliveries to
a loopback receiver, retries with backoff on a clock the test moves, dead letters, erase."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from memvault import Memory
from memvault.core import webhooks as webhooks_core
from memvault.errors import (
    DeliveryNotRetryable,
    DestinationRefused,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from memvault.webhooks import verify
from tests.webhooks.conftest import FakeClock, Receiver


def _events(receiver: Receiver) -> list[dict]:
    return [json.loads(item.body) for item in receiver.received]


def test_events_are_signed_and_carry_no_text_by_default(
    open_memory: Callable[..., Memory], receiver: Receiver, clock: FakeClock
) -> None:
    m = open_memory()
    hook = m.configure_webhook(receiver.url)
    secret = hook["secret"]
    assert secret.startswith("whsec_") and "secret" not in m.webhook()
    added = m.add("Alice prefers green tea", user_id="alice", infer=False)["results"][0]
    m.update(added["id"], "Alice prefers oolong")
    m.delete(added["id"])
    m.erase_user("alice")
    assert m.webhook_worker(clock=clock).deliver_due() == 4
    events = _events(receiver)
    assert [e["type"] for e in events] == [
        "memory.added",
        "memory.updated",
        "memory.deleted",
        "user.erased",
    ]
    assert all(e["data"]["user_id"] == "alice" for e in events)
    assert events[0]["data"]["memory_id"] == added["id"]
    for item, event in zip(receiver.received, events, strict=True):
        assert "text" not in event["data"]
        assert b"tea" not in item.body and b"oolong" not in item.body
        assert item.path == "/hooks/memvault?src=test"
        assert item.headers["X-Memvault-Event"] == event["type"]
        assert item.headers["X-Memvault-Delivery"] == event["id"]
        verify(secret, item.body, item.headers["X-Memvault-Signature"], now=clock().timestamp())
        with pytest.raises(Unauthorized):
            verify(
                secret,
                item.body + b" ",
                item.headers["X-Memvault-Signature"],
                now=clock().timestamp(),
            )
    assert {d["status"] for d in m.webhook_deliveries()["results"]} == {"delivered"}


def test_text_only_when_the_namespace_opts_in(
    open_memory: Callable[..., Memory], receiver: Receiver, clock: FakeClock
) -> None:
    m = open_memory()
    m.configure_webhook(receiver.url, include_text=True)
    added = m.add("Bob likes jazz", user_id="bob", infer=False)["results"][0]
    m.update(added["id"], "Bob likes blues")
    m.webhook_worker(clock=clock).deliver_due()
    texts = [e["data"].get("text") for e in _events(receiver)]
    assert texts == ["Bob likes jazz", "Bob likes blues"]
    # The outbox keeps no text once delivered, and never in the clear before.
    assert not any(b"Bob likes" in path.read_bytes() for path in m.home.glob("memvault.db*"))


def test_a_change_that_rolls_back_records_no_event(
    open_memory: Callable[..., Memory], receiver: Receiver
) -> None:
    m = open_memory()
    m.configure_webhook(receiver.url)
    first = m.add("one fact", user_id="carol", infer=False)["results"][0]
    m.add("another fact", user_id="carol", infer=False)
    with pytest.raises(InvalidInput):  # the same text as another memory: the update rolls back
        m.update(first["id"], "another fact")
    events = [d["event"] for d in m.webhook_deliveries()["results"]]
    assert events == ["memory.added", "memory.added"]


def test_no_webhook_no_outbox(open_memory: Callable[..., Memory]) -> None:
    m = open_memory()
    m.add("quiet", user_id="dan", infer=False)
    assert m.webhook_deliveries()["results"] == []
    with pytest.raises(NotFound):
        m.webhook()


def test_failures_back_off_then_dead_letter_then_retry(
    open_memory: Callable[..., Memory], receiver: Receiver, clock: FakeClock
) -> None:
    m = open_memory(webhook_max_attempts=3, webhook_retry_seconds=10)
    m.configure_webhook(receiver.url)
    m.add("retry me", user_id="erin", infer=False)
    worker = m.webhook_worker(clock=clock)
    receiver.statuses[:] = [500, 302, 503]
    assert worker.deliver_due() == 1
    (row,) = m.webhook_deliveries()["results"]
    assert (row["status"], row["last_status"], row["attempts"]) == ("pending", 500, 1)
    assert worker.deliver_due() == 0  # not due yet: backoff 5 to 10 s (jittered)
    clock.advance(10)
    assert worker.deliver_due() == 1  # a redirect is a failure, never followed
    assert [r.path for r in receiver.received].count("/elsewhere") == 0
    clock.advance(10)
    assert worker.deliver_due() == 0  # the second delay is 10 to 20 s
    clock.advance(10)
    assert worker.deliver_due() == 1
    (row,) = m.webhook_deliveries(status="dead")["results"]
    assert (row["attempts"], row["last_error"], row["last_status"]) == (3, "http_status", 503)
    clock.advance(100_000)
    assert worker.deliver_due() == 0  # dead stays dead
    retried = m.retry_webhook_delivery(row["id"])
    assert (retried["status"], retried["attempts"]) == ("pending", 0)
    with pytest.raises(DeliveryNotRetryable):
        m.retry_webhook_delivery(row["id"])
    assert worker.deliver_due() == 1
    assert m.webhook_deliveries(status="delivered")["results"][0]["id"] == row["id"]
    assert len(receiver.received) == 4


def test_unreachable_receiver_is_retried(
    open_memory: Callable[..., Memory], receiver: Receiver, clock: FakeClock
) -> None:
    m = open_memory()
    m.configure_webhook("http://127.0.0.1:9/closed")  # the discard port: nothing listens
    m.add("nobody home", user_id="fay", infer=False)
    m.webhook_worker(clock=clock).deliver_due()
    (row,) = m.webhook_deliveries()["results"]
    assert (row["status"], row["last_error"]) == ("pending", "unreachable")


def test_erase_shreds_the_text_of_waiting_events(
    open_memory: Callable[..., Memory], receiver: Receiver, clock: FakeClock
) -> None:
    m = open_memory()
    m.configure_webhook(receiver.url, include_text=True)
    m.add("Gus hides his keys under the mat", user_id="gus", infer=False)
    m.erase_user("gus")
    m.webhook_worker(clock=clock).deliver_due()
    added, erased = _events(receiver)
    assert added["type"] == "memory.added" and added["data"]["text"] is None
    assert erased["type"] == "user.erased"


def test_rotate_secret_and_remove(
    open_memory: Callable[..., Memory], receiver: Receiver, clock: FakeClock
) -> None:
    m = open_memory()
    old = m.configure_webhook(receiver.url)["secret"]
    again = m.configure_webhook(receiver.url, include_text=True)
    assert "secret" not in again and again["include_text"] is True
    new = m.rotate_webhook_secret()["secret"]
    assert new != old
    m.add("signed anew", user_id="hal", infer=False)
    m.webhook_worker(clock=clock).deliver_due()
    item = receiver.received[0]
    verify(new, item.body, item.headers["X-Memvault-Signature"], now=clock().timestamp())
    with pytest.raises(Unauthorized):
        verify(old, item.body, item.headers["X-Memvault-Signature"], now=clock().timestamp())
    assert not any(new.encode() in path.read_bytes() for path in m.home.glob("*.db*"))
    m.add("not sent", user_id="hal", infer=False)
    assert m.remove_webhook() == {"deleted": True, "deliveries_deleted": 2}
    with pytest.raises(NotFound):
        m.remove_webhook()


def test_a_rotation_with_an_overlap_signs_with_both_secrets_until_it_ends(
    open_memory: Callable[..., Memory], receiver: Receiver, clock: FakeClock
) -> None:
    m = open_memory()
    first = m.configure_webhook(receiver.url)["secret"]
    rotated = m.rotate_webhook_secret(overlap_seconds=3600)
    second = rotated["secret"]
    assert rotated["previous_secret_expires_at"] == m.webhook()["previous_secret_expires_at"]
    m.add("during the overlap", user_id="hal", infer=False)
    worker = m.webhook_worker(clock=clock)
    assert worker.deliver_due() == 1
    item = receiver.received[0]
    header = item.headers["X-Memvault-Signature"]
    assert header.count("v1=") == 2
    for secret in (first, second):  # a receiver still on the old secret, and one switched
        verify(secret, item.body, header, now=clock().timestamp())

    clock.advance(3600)  # the overlap is over: the old secret signs nothing
    m.add("after the overlap", user_id="hal", infer=False)
    assert worker.deliver_due() == 1
    later = receiver.received[1]
    assert later.headers["X-Memvault-Signature"].count("v1=") == 1
    verify(second, later.body, later.headers["X-Memvault-Signature"], now=clock().timestamp())
    with pytest.raises(Unauthorized):
        verify(first, later.body, later.headers["X-Memvault-Signature"], now=clock().timestamp())

    third = m.rotate_webhook_secret()["secret"]  # no overlap: the second one stops at once
    assert "previous_secret_expires_at" not in m.webhook()
    m.add("after a plain rotation", user_id="hal", infer=False)
    assert worker.deliver_due() == 1
    last = receiver.received[2]
    verify(third, last.body, last.headers["X-Memvault-Signature"], now=clock().timestamp())
    with pytest.raises(Unauthorized):
        verify(second, last.body, last.headers["X-Memvault-Signature"], now=clock().timestamp())
    for box in (first, second, third):  # neither secret is ever on disk in the clear
        assert not any(box.encode() in path.read_bytes() for path in m.home.glob("*.db*"))


def test_a_rotation_racing_another_never_revives_the_secret_it_retired(
    open_memory: Callable[..., Memory],
    receiver: Receiver,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two processes rotate at once: one retires a leaked secret (no overlap) while the other,
    with an overlap, has already read it as current. The second rotation must not write the
    retired secret back as its "previous" (nor drop the first's new secret unseen)."""
    retiring, overlapping = open_memory(), open_memory()
    leaked = retiring.configure_webhook(receiver.url)["secret"]
    real = webhooks_core.new_secret
    retired: list[str] = []

    def racing_secret() -> str:
        if not retired:  # the other process rotates between this one's read and its write
            retired.append("")
            retired[0] = retiring.rotate_webhook_secret()["secret"]
        return real()

    monkeypatch.setattr(webhooks_core, "new_secret", racing_secret)
    latest = overlapping.rotate_webhook_secret(overlap_seconds=3600)["secret"]
    overlapping.add("after both rotations", user_id="hal", infer=False)
    assert overlapping.webhook_worker(clock=clock).deliver_due() == 1
    item = receiver.received[0]
    header = item.headers["X-Memvault-Signature"]
    with pytest.raises(Unauthorized):
        verify(leaked, item.body, header, now=clock().timestamp())
    for secret in (latest, retired[0]):  # the overlap keeps the secret it really replaced
        verify(secret, item.body, header, now=clock().timestamp())


@pytest.mark.parametrize("overlap", [-1, 7 * 24 * 3600 + 1, True, 1.5, "60"])
def test_a_bad_overlap_is_refused_and_keeps_the_secret(
    open_memory: Callable[..., Memory], overlap: object
) -> None:
    m = open_memory()
    m.configure_webhook("http://127.0.0.1:9/hook")
    before = m.webhook()
    with pytest.raises(InvalidInput):
        m.rotate_webhook_secret(overlap_seconds=overlap)  # type: ignore[arg-type]
    assert m.webhook() == before


def test_destinations_outside_the_allow_list_are_refused(
    open_memory: Callable[..., Memory], receiver: Receiver
) -> None:
    m = open_memory(webhook_allowed_hosts=["hooks.example.com"])
    with pytest.raises(DestinationRefused):
        m.configure_webhook(receiver.url)  # loopback is not listed
    off = open_memory(webhook_allowed_hosts=[])
    with pytest.raises(DestinationRefused):
        off.configure_webhook(receiver.url)
