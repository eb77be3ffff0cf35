"""Time and ids: UTC ISO 8601 strings that sort as text, and time-ordered UUIDv7 ids."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

__all__ = ["iso", "now_iso", "to_epoch", "uuid7"]


def iso(moment: datetime) -> str:
    """Fixed-width UTC ISO 8601 (microseconds, ``+00:00``) so text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def now_iso() -> str:
    return iso(datetime.now(UTC))


def to_epoch(value: str | None) -> float:
    """Seconds since the epoch; ``inf`` for no value (never expires)."""
    return float("inf") if value is None else datetime.fromisoformat(value).timestamp()


def uuid7() -> str:
    """RFC 9562 UUID version 7: 48-bit milliseconds, then random bits."""
    millis = time.time_ns() // 1_000_000
    raw = bytearray(millis.to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))
