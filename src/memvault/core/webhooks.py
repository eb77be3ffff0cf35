"""Webhooks on memory events, from a durable outbox.

A namespace opts in (``configure``) with a URL the operator's allow-list permits
(``memvault.webhooks.destination``). From then on every change that commits writes one outbox
row per event (``memory.added``, ``memory.updated``, ``memory.deleted``, ``user.erased``) *in the
same transaction* as the change (``changes.apply``, ``rights.erase_user``): a crash can neither
lose an acknowledged event nor leave one of a change that rolled back. An outbox row holds ids
only; with ``include_text`` it also holds the memory's text sealed with the owner's data key
(bound to the namespace, the owner columns and the delivery id), so an erase or a key rotation
shreds it like the memory itself: such an event goes out without its text.

``WebhookWorker`` claims due rows with a lease (as the job queue does: several workers and nodes
share one outbox, and a row whose worker died is taken again when its lease expires), checks the
destination again (resolved once, every address checked, the connection pinned to the checked
address, no redirect followed), signs the body (``memvault.webhooks.signing``) and POSTs it. A
2xx answer delivers it; anything else is retried with exponential backoff and jitter, and after
``webhook_max_attempts`` the row is ``dead`` (listed; ``retry_delivery`` queues it again). A
receiver may see an event twice (a worker that dies after the POST): ``X-Memvault-Delivery`` is
the idempotency id. Time comes from ``clock`` (tests move it, nothing sleeps).

The signing secret is made here, shown once (``configure`` of a new webhook, ``rotate_secret``)
and stored sealed with the system key ``WEBHOOKS`` (wrapped by the master key); nothing logs it.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from memvault.clock import iso, now_iso, uuid7
from memvault.config import Settings
from memvault.core.engine import Engine
from memvault.errors import (
    DeliveryNotRetryable,
    DestinationRefused,
    InvalidInput,
    MemvaultError,
    NotFound,
    StorageBusy,
)
from memvault.security.crypto import Binding, ScopeCipher
from memvault.security.keyring import KeyRing
from memvault.security.keyscope import WEBHOOKS
from memvault.storage.base import DataStore, WriteTx
from memvault.storage.rows import DELIVERY_STATUSES, DeliveryRow, WebhookRow
from memvault.validation import check_count, check_id
from memvault.webhooks.destination import AllowList, Resolver, check_destination, system_resolver
from memvault.webhooks.signing import SIGNATURE_HEADER, new_secret, sign
from memvault.webhooks.transport import post

__all__ = [
    "EVENTS",
    "Clock",
    "Outbox",
    "WebhookWorker",
    "allow_list",
    "configure",
    "deliveries",
    "public_delivery",
    "record_erase",
    "remove",
    "retry_delivery",
    "rotate_secret",
    "webhook",
]

log = logging.getLogger("memvault.webhooks")

Clock = Callable[[], datetime]
EVENTS = ("memory.added", "memory.updated", "memory.deleted", "user.erased")
USER_AGENT = "memvault-webhooks/1"
_TEXT = "webhook_text"
_SECRET = "webhook_secret"  # noqa: S105 - the sealed field's name, not a secret
# How often a worker removes delivered rows older than ``webhook_keep_delivered_days``.
_PRUNE_EVERY = timedelta(hours=1)


def _system_clock() -> datetime:
    return datetime.now(UTC)


def allow_list(settings: Settings) -> AllowList:
    return AllowList.parse(settings.webhook_allowed_hosts, allow_http=settings.webhook_allow_http)


# --- configuration ------------------------------------------------------------------------------


def _secret_binding(namespace: str) -> Binding:
    return Binding(namespace, None, None, None, "webhook")


@dataclass(frozen=True)
class Secrets:
    """A webhook's signing secrets: the current one and, for a while after a rotation with an
    overlap, the one before it, so receivers can switch without refusing a delivery."""

    current: str
    previous: str | None = None
    previous_until: str | None = None  # ISO 8601, UTC

    def previous_valid(self, now: datetime) -> bool:
        return (
            self.previous is not None
            and self.previous_until is not None
            and now < datetime.fromisoformat(self.previous_until)
        )

    def signing(self, now: datetime) -> list[str]:
        """The secrets that sign a delivery sent at ``now``: the current one first."""
        if self.previous is not None and self.previous_valid(now):
            return [self.current, self.previous]
        return [self.current]


def _seal_secrets(keyring: KeyRing, namespace: str, secrets: Secrets) -> bytes:
    # A lone secret is stored as itself (it starts with ``whsec_``); with an overlap, as a JSON
    # object (it starts with ``{``): the two forms cannot be mistaken for each other.
    if secrets.previous is None:
        plain = secrets.current
    else:
        plain = json.dumps(
            {
                "current": secrets.current,
                "previous": secrets.previous,
                "previous_until": secrets.previous_until,
            }
        )
    return keyring.cipher_for(WEBHOOKS).seal(_secret_binding(namespace), _SECRET, plain.encode())


def _open_secrets(keyring: KeyRing, hook: WebhookRow) -> Secrets:
    cipher = keyring.cipher_for(WEBHOOKS)
    plain = cipher.open(_secret_binding(hook.namespace), _SECRET, hook.secret_box).decode()
    if not plain.startswith("{"):
        return Secrets(plain)
    fields = json.loads(plain)
    return Secrets(fields["current"], fields["previous"], fields["previous_until"])


def _public(hook: WebhookRow, secret: str | None = None) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "url": hook.url,
        "include_text": hook.include_text,
        "created_at": hook.created_at,
        "updated_at": hook.updated_at,
    }
    if secret is not None:
        shown["secret"] = secret
    return shown


def configure(
    engine: Engine, url: str, *, include_text: bool, resolver: Resolver = system_resolver
) -> dict[str, Any]:
    """Set the namespace's webhook; a new one gets a secret, shown in this answer only (of two
    callers creating it at once, one creates it and sees the secret, the other updates it)."""
    if not isinstance(include_text, bool):
        raise InvalidInput("include_text must be true or false")
    if not isinstance(url, str):
        raise DestinationRefused("the webhook URL must be a string")
    check_destination(url, allow_list(engine.settings), resolver)
    store, namespace, now = engine.store, engine.namespace, now_iso()
    secret = new_secret()
    made = WebhookRow(
        namespace=namespace,
        url=url,
        include_text=include_text,
        secret_box=_seal_secrets(engine.keyring, namespace, Secrets(secret)),
        created_at=now,
        updated_at=now,
    )
    if store.create_webhook(made):
        return _public(made, secret)
    store.update_webhook(namespace, now, url=url, include_text=include_text)
    return webhook(engine)


def webhook(engine: Engine) -> dict[str, Any]:
    hook = engine.store.get_webhook(engine.namespace)
    if hook is None:
        raise NotFound(f"namespace {engine.namespace} has no webhook")
    shown = _public(hook)
    secrets = _open_secrets(engine.keyring, hook)
    if secrets.previous_valid(_system_clock()):
        shown["previous_secret_expires_at"] = secrets.previous_until
    return shown


MAX_OVERLAP_SECONDS = 7 * 24 * 3600
_ROTATION_ATTEMPTS = 8


def rotate_secret(engine: Engine, *, overlap_seconds: int = 0) -> dict[str, Any]:
    """A new secret, shown in this answer only. The old one signs nothing from now on, or, with
    ``overlap_seconds``, goes on signing beside the new one (a second ``v1=``) for that long,
    so receivers can switch without refusing a delivery."""
    if (
        isinstance(overlap_seconds, bool)
        or not isinstance(overlap_seconds, int)
        or not 0 <= overlap_seconds <= MAX_OVERLAP_SECONDS
    ):
        raise InvalidInput(
            f"overlap_seconds must be an integer from 0 to {MAX_OVERLAP_SECONDS} (7 days)"
        )
    # Compare-and-set on the sealed secrets: a rotation that another process (or thread) made
    # between this one's read and its write is never overwritten with what was read before it
    # (an overlap would otherwise write back, as "previous", a secret the other one retired).
    for _attempt in range(_ROTATION_ATTEMPTS):
        hook = engine.store.get_webhook(engine.namespace)
        if hook is None:
            raise NotFound(f"namespace {engine.namespace} has no webhook")
        secret = new_secret()
        rotated = Secrets(secret)
        if overlap_seconds:
            until = _system_clock() + timedelta(seconds=overlap_seconds)
            rotated = Secrets(secret, _open_secrets(engine.keyring, hook).current, iso(until))
        box = _seal_secrets(engine.keyring, engine.namespace, rotated)
        if engine.store.update_webhook(
            engine.namespace, now_iso(), secret_box=box, replacing=hook.secret_box
        ):
            return {**webhook(engine), "secret": secret}
    raise StorageBusy("the webhook secret kept changing under this rotation: try again")


def remove(engine: Engine) -> dict[str, Any]:
    """Stop the namespace's webhook; its undelivered and dead events are dropped."""
    removed, dropped = engine.store.delete_webhook(engine.namespace)
    if not removed:
        raise NotFound(f"namespace {engine.namespace} has no webhook")
    return {"deleted": True, "deliveries_deleted": dropped}


# --- the outbox ----------------------------------------------------------------------------------


def _text_binding(row: DeliveryRow) -> Binding:
    return Binding(row.namespace, row.user_id, row.agent_id, row.run_id, row.id)


@dataclass
class Outbox:
    """The events of one transaction, written with it (``flush``, before the commit)."""

    engine: Engine
    hook: WebhookRow | None
    rows: list[DeliveryRow] = field(default_factory=list)

    @classmethod
    def open(cls, engine: Engine, tx: WriteTx) -> Outbox:
        """Read the namespace's webhook inside the transaction (None: nothing is recorded)."""
        return cls(engine, tx.webhook(engine.namespace))

    def record(
        self,
        event: str,
        owners: tuple[str | None, str | None, str | None],
        *,
        memory_id: str | None = None,
        text: str | None = None,
        cipher: ScopeCipher | None = None,
    ) -> None:
        if self.hook is None:
            return
        now = now_iso()
        row = DeliveryRow(
            id=uuid7(),
            namespace=self.engine.namespace,
            event=event,
            memory_id=memory_id,
            user_id=owners[0],
            agent_id=owners[1],
            run_id=owners[2],
            scope_id=None,
            text_box=None,
            status="pending",
            attempts=0,
            max_attempts=self.engine.settings.webhook_max_attempts,
            lease_owner=None,
            lease_until=None,
            run_after=now,
            last_error=None,
            last_status=None,
            created_at=now,
            updated_at=now,
        )
        if self.hook.include_text and text is not None and cipher is not None:
            row.scope_id = cipher.scope_id
            row.text_box = cipher.seal(_text_binding(row), _TEXT, text.encode())
        self.rows.append(row)

    def flush(self, tx: WriteTx) -> None:
        if self.rows:
            tx.insert_deliveries(self.rows)
            self.rows = []


def record_erase(engine: Engine, tx: WriteTx, user_id: str) -> None:
    """In an erase's transaction: the ``user.erased`` event, and the texts of the user's events
    still waiting removed (their key is destroyed anyway)."""
    tx.shred_delivery_texts(engine.namespace, user_id)
    outbox = Outbox.open(engine, tx)
    outbox.record("user.erased", (user_id, None, None))
    outbox.flush(tx)


# --- listing -------------------------------------------------------------------------------------


def public_delivery(row: DeliveryRow) -> dict[str, Any]:
    """A delivery as the API lists it: ids, state and outcome, never text."""
    return {
        "id": row.id,
        "event": row.event,
        "memory_id": row.memory_id,
        "user_id": row.user_id,
        "status": row.status,
        "attempts": row.attempts,
        "max_attempts": row.max_attempts,
        "next_attempt_at": row.run_after if row.status == "pending" else None,
        "last_error": row.last_error,
        "last_status": row.last_status,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def deliveries(engine: Engine, *, status: str | None, limit: int) -> list[DeliveryRow]:
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(DELIVERY_STATUSES)}")
    check_count("limit", limit, 1000)
    return engine.store.list_deliveries(engine.namespace, status=status, limit=limit)


def retry_delivery(engine: Engine, delivery_id: str) -> DeliveryRow:
    delivery_id = check_id("delivery_id", delivery_id)
    row = engine.store.retry_delivery(engine.namespace, delivery_id, now_iso())
    if row is not None:
        return row
    found = engine.store.get_delivery(engine.namespace, delivery_id)
    if found is None:
        raise NotFound(f"no webhook delivery {delivery_id} in this namespace")
    raise DeliveryNotRetryable(
        f"delivery {delivery_id} is {found.status}: only a dead delivery is sent again"
    )


# --- delivery ------------------------------------------------------------------------------------


class WebhookWorker:
    """Delivers due outbox rows: ``deliver_due`` once (tests, with their own ``clock``), or
    ``start`` threads that do it every ``poll_seconds`` until ``stop``."""

    def __init__(
        self,
        store: DataStore,
        engine_for: Callable[[str], Engine],
        settings: Settings,
        *,
        clock: Clock | None = None,
        resolver: Resolver = system_resolver,
        tls: ssl.SSLContext | None = None,
        jitter: Callable[[], float] = random.random,
        poll_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self._engine_for = engine_for
        self._settings = settings
        self._allow = allow_list(settings)
        self._clock = clock or _system_clock
        self._resolver = resolver
        self._tls = tls
        self._jitter = jitter
        self._poll = poll_seconds
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid7()[-12:]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pruned_at: datetime | None = None

    # --- one pass ------------------------------------------------------------------------------

    def deliver_due(self, limit: int = 1000) -> int:
        """Attempt every delivery due now (up to ``limit``); how many were attempted."""
        self._prune()
        done = 0
        worker = f"{self.name}:{threading.current_thread().name}"
        while done < limit and not self._stop.is_set():
            now = self._clock()
            lease = now + timedelta(seconds=3 * self._settings.webhook_timeout_seconds + 30)
            row = self.store.claim_delivery(worker, iso(lease), iso(now))
            if row is None:
                break
            self._attempt(row, worker)
            done += 1
        return done

    def _prune(self) -> None:
        now = self._clock()
        if self._pruned_at is not None and now - self._pruned_at < _PRUNE_EVERY:
            return
        self._pruned_at = now
        keep = timedelta(days=self._settings.webhook_keep_delivered_days)
        try:
            self.store.prune_deliveries(iso(now - keep))
        except MemvaultError as exc:
            log.warning("removing old webhook deliveries failed: %s", exc.code)

    def _attempt(self, row: DeliveryRow, worker: str) -> None:
        hook = self.store.get_webhook(row.namespace)
        if hook is None:  # removed meanwhile (remove() also drops its rows)
            self.store.delivery_failed(row.id, worker, "webhook_removed", None, None, self._now())
            return
        status: int | None = None
        try:
            engine = self._engine_for(row.namespace)
            body = json.dumps(
                self._payload(engine, hook, row), ensure_ascii=False, separators=(",", ":")
            ).encode()
            sent_at = self._clock()  # one moment chooses the secrets and stamps the signature
            secrets = _open_secrets(engine.keyring, hook).signing(sent_at)
            destination = check_destination(hook.url, self._allow, self._resolver)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-Memvault-Event": row.event,
                "X-Memvault-Delivery": row.id,
                "Idempotency-Key": row.id,
                SIGNATURE_HEADER: sign(secrets, body, int(sent_at.timestamp())),
            }
            answer = post(
                destination,
                body,
                headers,
                timeout=self._settings.webhook_timeout_seconds,
                tls=self._tls,
            )
            status = answer.status
            code = None if 200 <= status < 300 else "http_status"
        except DestinationRefused as exc:
            code = exc.code
        except TimeoutError:
            code = "timeout"
        except (OSError, http.client.HTTPException):
            code = "unreachable"
        except MemvaultError as exc:
            code = exc.code
        except Exception as exc:  # noqa: BLE001 - one delivery's fault never stops the worker
            # The class only: a message could quote a payload.
            log.warning("webhook delivery %s failed: %s", row.id, type(exc).__name__)
            code = "internal"
        if code is None:
            self.store.delivered(row.id, worker, status or 200, self._now())
            return
        retry_at = None
        if row.attempts < row.max_attempts:
            retry_at = iso(self._clock() + timedelta(seconds=self._backoff(row.attempts)))
        self.store.delivery_failed(row.id, worker, code, status, retry_at, self._now())
        log.info("webhook delivery %s failed (attempt %d): %s", row.id, row.attempts, code)

    def _backoff(self, attempts: int) -> float:
        """Exponential from ``webhook_retry_seconds``, capped, with "equal jitter": between half
        and all of the delay, so receivers that failed together are not hit together again."""
        settings = self._settings
        delay = settings.webhook_retry_seconds * 2 ** max(0, attempts - 1)
        delay = min(settings.webhook_max_backoff_seconds, delay)
        return float(delay / 2 + delay / 2 * self._jitter())

    def _now(self) -> str:
        return iso(self._clock())

    def _payload(self, engine: Engine, hook: WebhookRow, row: DeliveryRow) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user_id": row.user_id,
            "agent_id": row.agent_id,
            "run_id": row.run_id,
        }
        if row.memory_id is not None:
            data["memory_id"] = row.memory_id
        if hook.include_text and row.event in ("memory.added", "memory.updated"):
            data["text"] = self._text(engine, row)
        return {
            "id": row.id,
            "type": row.event,
            "namespace": row.namespace,
            "occurred_at": row.created_at,
            "data": data,
        }

    def _text(self, engine: Engine, row: DeliveryRow) -> str | None:
        """The event's text, or None once its key is gone (erased, rotated)."""
        if row.text_box is None or row.scope_id is None:
            return None
        cipher = engine.codec.existing_cipher(row.scope_id)
        if cipher is None:
            return None
        return cipher.open(_text_binding(row), _TEXT, row.text_box).decode()

    # --- threads ---------------------------------------------------------------------------------

    def start(self, workers: int = 1) -> WebhookWorker:
        for index in range(workers):
            thread = threading.Thread(target=self._run, daemon=True, name=f"webhooks-{index}")
            thread.start()
            self._threads.append(thread)
        return self

    def notify(self) -> None:
        """An event was recorded here: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Claim nothing more; a delivery being sent finishes (or its lease brings it back)."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except MemvaultError as exc:
                log.warning("webhook delivery pass failed: %s", exc.code)
            except Exception as exc:  # noqa: BLE001 - the thread outlives a fault of one pass
                log.warning("webhook delivery pass failed: %s", type(exc).__name__)
            self._wake.wait(self._poll)
            self._wake.clear()
