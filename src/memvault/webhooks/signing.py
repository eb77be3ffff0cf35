"""Webhook signatures, Stripe-style: ``X-Memvault-Signature: t=<unix seconds>,v1=<hex>``, where
the hex is HMAC-SHA256 of ``"<t>." + body`` under the namespace's secret (its UTF-8 bytes).

A receiver recomputes the HMAC over the raw body it received, compares in constant time, and
refuses a ``t`` too far from its own clock (a replayed old delivery). ``verify`` does exactly
that; docs/webhooks.md shows the same in a few lines of the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from memvault.errors import Unauthorized

__all__ = ["SIGNATURE_HEADER", "new_secret", "sign", "verify"]

SIGNATURE_HEADER = "X-Memvault-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
DEFAULT_TOLERANCE_SECONDS = 300


def new_secret() -> str:
    """A fresh signing secret: 256 random bits."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(signing_secrets: str | Sequence[str], body: bytes, timestamp: int) -> str:
    """The ``X-Memvault-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds): one
    ``v1=`` per secret (two while a rotated secret overlaps its successor)."""
    chosen = [signing_secrets] if isinstance(signing_secrets, str) else list(signing_secrets)
    macs = ",".join(f"v1={_mac(secret, timestamp, body)}" for secret in chosen)
    return f"t={timestamp},{macs}"


def _ascii_digits(value: str) -> bool:
    return 0 < len(value) <= 12 and value.isascii() and value.isdigit()


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    now: float,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Raise ``Unauthorized`` unless ``header`` signs ``body`` with ``secret`` at a time within
    ``tolerance_seconds`` of ``now``. Several ``v1`` values (a secret being rotated) are fine."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(name, []).append(value)
    stamps = fields.get("t", [])
    # ASCII digits only, as memvault writes them: ``str.isdigit`` also takes "²" (which int()
    # refuses) and other scripts' digits, and int() refuses more than 4,300 digits.
    if len(stamps) != 1 or not _ascii_digits(stamps[0]):
        raise Unauthorized("the webhook signature has no valid timestamp")
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance_seconds:
        raise Unauthorized("the webhook signature is too old (or from the future)")
    expected = _mac(secret, timestamp, body)
    # compare_digest raises on non-ASCII text: such a value matches nothing.
    given = [value for value in fields.get("v1", []) if value.isascii()]
    if not any(hmac.compare_digest(expected, value) for value in given):
        raise Unauthorized("the webhook signature does not match")
