"""Checks on everything a caller hands in, before anything is written.

Each check raises a ``MemvaultError`` subclass whose message names the field and the limit, never
the offending text itself (it may be a secret or personal data).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from memvault.errors import (
    EmptyText,
    InvalidId,
    InvalidInput,
    InvalidMetadata,
    MissingScope,
    TextTooLong,
)

__all__ = [
    "IDENTITY_KEYS",
    "MEMORY_TYPES",
    "Message",
    "Scope",
    "check_id",
    "check_metadata",
    "check_namespace",
    "check_text",
    "parse_datetime",
    "parse_messages",
]

MAX_ID_LENGTH = 128
_ID_PATTERN = re.compile(r"^[^\s\x00-\x1f\x7f]+$")
IDENTITY_KEYS = frozenset({"user_id", "agent_id", "run_id", "namespace", "actor_id", "id"})
MEMORY_TYPES = ("semantic", "episodic", "procedural")
ROLES = frozenset({"user", "assistant", "system", "tool"})


def check_id(field: str, value: object) -> str:
    """An id is 1-128 characters with no whitespace or control characters."""
    if not isinstance(value, str):
        raise InvalidId(f"{field} must be a string")
    if not value or len(value) > MAX_ID_LENGTH:
        raise InvalidId(f"{field} must be 1 to {MAX_ID_LENGTH} characters")
    if not _ID_PATTERN.match(value):
        raise InvalidId(f"{field} must not contain whitespace or control characters")
    return value


_NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def check_namespace(value: object) -> str:
    """A namespace is 1-64 letters, digits, ``_ . : -``: it is part of key and file names."""
    if not isinstance(value, str) or not _NAMESPACE_PATTERN.match(value):
        raise InvalidId("namespace must be 1 to 64 of A-Z a-z 0-9 _ . : - (starting alphanumeric)")
    return value


def check_text(text: object, max_bytes: int, field: str = "text") -> str:
    """Memory text: a non-blank string of at most ``max_bytes`` UTF-8 bytes."""
    if not isinstance(text, str):
        raise InvalidInput(f"{field} must be a string")
    if not text.strip():
        raise EmptyText(f"{field} is empty")
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise TextTooLong(f"{field} is {size} bytes; the limit is {max_bytes}")
    if "\x00" in text:
        raise InvalidInput(f"{field} must not contain NUL characters")
    return text


def check_metadata(metadata: object, max_bytes: int) -> dict[str, Any]:
    """Metadata: a JSON object of at most ``max_bytes``, without identity keys."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidMetadata("metadata must be a JSON object")
    if any(not isinstance(key, str) for key in metadata):
        raise InvalidMetadata("metadata keys must be strings")
    reserved = sorted(IDENTITY_KEYS.intersection(metadata))
    if reserved:
        raise InvalidMetadata(
            f"metadata must not hold identity keys {reserved}: pass them as arguments"
        )
    try:
        encoded = json.dumps(metadata, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError):
        raise InvalidMetadata(
            "metadata must be JSON: strings, finite numbers, lists, objects"
        ) from None
    if len(encoded.encode("utf-8")) > max_bytes:
        raise InvalidMetadata(f"metadata is over the {max_bytes}-byte limit")
    return dict(json.loads(encoded))


def parse_datetime(field: str, value: object) -> datetime | None:
    """A timezone-aware datetime from a datetime or an ISO 8601 string (naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"{field} must be an ISO 8601 date or datetime") from None
    else:
        raise InvalidInput(f"{field} must be an ISO 8601 string or a datetime")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def check_importance(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput("importance must be a finite number")
    return float(value)


@dataclass(frozen=True, slots=True)
class Scope:
    """Who a memory belongs to inside a namespace; at least one id is set."""

    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None

    @classmethod
    def of(cls, user_id: object, agent_id: object, run_id: object) -> Scope:
        ids = {
            name: None if value is None else check_id(name, value)
            for name, value in (("user_id", user_id), ("agent_id", agent_id), ("run_id", run_id))
        }
        scope = cls(**ids)
        if scope.is_empty:
            raise MissingScope("one of user_id, agent_id or run_id is required")
        return scope

    @property
    def is_empty(self) -> bool:
        return self.user_id is None and self.agent_id is None and self.run_id is None

    @property
    def key_owner(self) -> tuple[Literal["user", "agent", "run"], str]:
        """Whose data key encrypts the memory: the user's, else the agent's, else the run's.

        A (kind, owner) pair, never a joined string: ``security.keyscope.KeyScope`` encodes it.
        """
        if self.user_id is not None:
            return "user", self.user_id
        if self.agent_id is not None:
            return "agent", self.agent_id
        assert self.run_id is not None
        return "run", self.run_id


@dataclass(frozen=True, slots=True)
class Message:
    content: str
    role: str
    name: str | None


def parse_messages(messages: object, max_bytes: int) -> list[Message]:
    """mem0's ``messages``: a string, one ``{"role","content"}`` dict, or a list of them.

    System messages carry instructions, not facts about the user, so they are not stored.
    """
    if isinstance(messages, str):
        return [Message(check_text(messages, max_bytes, "messages"), "user", None)]
    items = [messages] if isinstance(messages, Mapping) else messages
    if not isinstance(items, list) or not items:
        raise InvalidInput("messages must be a string or a non-empty list of {role, content}")
    parsed: list[Message] = []
    for index, item in enumerate(items):
        where = f"messages[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidInput(f"{where} must be an object with role and content")
        unknown = set(item) - {"role", "content", "name"}
        if unknown:
            raise InvalidInput(f"{where} has unknown keys {sorted(unknown)}")
        role = item.get("role", "user")
        if role not in ROLES:
            raise InvalidInput(f"{where}.role must be one of {sorted(ROLES)}")
        name = item.get("name")
        if name is not None:
            check_id(f"{where}.name", name)
        content = check_text(item.get("content"), max_bytes, f"{where}.content")
        if role != "system":
            parsed.append(Message(content, role, name))
    if not parsed:
        raise EmptyText("messages hold no user or assistant content")
    return parsed


def check_memory_type(value: object) -> str:
    if value is None:
        return "semantic"
    if value not in MEMORY_TYPES:
        raise InvalidInput(f"memory_type must be one of {list(MEMORY_TYPES)}")
    return str(value)


def check_top_k(value: object, limit: int = 1000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise InvalidInput(f"top_k must be an integer from 1 to {limit}")
    return value
