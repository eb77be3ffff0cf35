"""The outbox's guarantees: written in the change's transaction, claimed by one worker at a time,
taken again when a worker dies holding a claim."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from memvault import Memory
from memvault.clock import iso
from memvault.errors import StorageError
from memvault.storage.postgres.store import DATA_SCHEMA
from tests.webhooks.conftest import FakeClock, Receiver


def _refuse_outbox_writes(m: Memory, backend: str | None) -> None:
    """A trigger that fails every insert into the outbox (a full disk, as the store sees it)."""
    if backend is None:
        with sqlite3.connect(m.home / "memvault.db") as db:
            db.execute(
                "CREATE TRIGGER outbox_fault BEFORE INSERT ON webhook_outbox"
                " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        return
    with psycopg.connect(backend, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.outbox_fault() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RAISE EXCEPTION 'disk says no'; END $$"
        )
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER outbox_fault BEFORE INSERT ON {}.webhook_outbox"
                " FOR EACH ROW EXECUTE FUNCTION public.outbox_fault()"
            ).format(sql.Identifier(DATA_SCHEMA))
        )


def test_an_outbox_write_that_fails_rolls_the_change_back(
    open_memory: Callable[..., Memory], receiver: Receiver, backend: str | None
) -> None:
    m = open_memory()
    m.configure_webhook(receiver.url)
    kept = m.add("before the fault", user_id="ann", infer=False)["results"][0]
    _refuse_outbox_writes(m, backend)
    with pytest.raises(StorageError):
        m.add("lost with its event", user_id="ann", infer=False)
    with pytest.raises(StorageError):
        m.delete(kept["id"])
    assert [r["memory"] for r in m.get_all(user_id="ann")["results"]] == ["before the fault"]
    assert len(m.webhook_deliveries()["results"]) == 1  # the first add's event only


def test_concurrent_workers_send_each_event_once(
    open_memory: Callable[..., Memory], receiver: Receiver, clock: FakeClock
) -> None:
    m = open_memory()
    m.configure_webhook(receiver.url)
    m.add_many([{"messages": f"fact {n}", "user_id": "bea"} for n in range(12)])
    workers = [m.webhook_worker(clock=clock) for _ in range(3)]
    threads = [threading.Thread(target=w.deliver_due) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    ids = [json.loads(item.body)["id"] for item in receiver.received]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert all(d["attempts"] == 1 for d in m.webhook_deliveries()["results"])


def test_a_claim_whose_worker_died_is_taken_again_after_its_lease(
    open_memory: Callable[..., Memory], receiver: Receiver, clock: FakeClock
) -> None:
    m = open_memory()
    m.configure_webhook(receiver.url)
    m.add("held by a dead worker", user_id="cid", infer=False)
    lease = clock() + timedelta(seconds=60)
    held = m.engine.store.claim_delivery("died", iso(lease), iso(clock()))
    assert held is not None and held.status == "sending"
    worker = m.webhook_worker(clock=clock)
    assert worker.deliver_due() == 0  # the lease still holds
    clock.advance(61)
    assert worker.deliver_due() == 1
    (row,) = m.webhook_deliveries()["results"]
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    # The dead worker's late outcome changes nothing: its claim is gone.
    assert not m.engine.store.delivered(held.id, "died", 200, iso(clock()))
    assert len(receiver.received) == 1
