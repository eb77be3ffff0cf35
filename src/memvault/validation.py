"""Checks on everything a caller hands in, before anything is written.

Each check raises a ``MemvaultError`` subclass whose message names the field and the limit, never
the offending text itself (it may be a secret or personal data). Every check is an ``InvalidInput``
(a 4xx): hostile input -- lone surrogates, deep nesting, invisible characters -- never reaches the
encoders and the database as something that fails there with a 5xx.

Strings must be valid Unicode text (:func:`check_utf8`: a lone surrogate such as ``"\\ud800"``
cannot be encoded to UTF-8 and is refused wherever a string is accepted).

Ids (user, agent, run, actor, memory ids, message names) are normalised to NFC, and refused if
they hold a character that is invisible, reorders text or is not a character at all: control
(Cc), format (Cf: zero-width, bidi overrides, BOM), surrogate (Cs), private use (Co), unassigned
(Cn), line/paragraph separators (Zl, Zp), spaces (Zs) or any other whitespace. Two ids that are
canonically equivalent (render the same) are therefore one id. Compatibility forms (NFKC:
fullwidth ``\\uff41``, ligatures, superscripts) are deliberately *not* folded: an id names a user of
the caller's system, and folding would merge two ids that system keeps apart -- one user would
read the other's memories. Look-alikes from other scripts (Cyrillic ``\\u0430``) likewise stay
distinct ids. Ordinary punctuation (``# / : . @ - _``) is allowed: ids are data, never file
names, and SQL parameters and key-store ids keep them apart by construction.

Every conversion turns ``OverflowError``/``ValueError`` into ``InvalidInput``: dates must fall
between 0001-01-01 and 9999-12-31T23:59:59 *in UTC* (``9999-12-31T23:59:59-05:00`` is refused),
numbers must fit a double (an ``int`` such as ``10**400`` is refused as an importance).

Metadata is walked iteratively before any JSON encoding: at most ``MAX_METADATA_DEPTH`` levels of
nesting and ``MAX_METADATA_ELEMENTS`` values, string keys at every level.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

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
    "check_json_value",
    "check_metadata",
    "check_namespace",
    "check_text",
    "check_utf8",
    "parse_datetime",
    "parse_messages",
]

T = TypeVar("T")

MAX_ID_LENGTH = 128
MAX_METADATA_DEPTH = 32
MAX_METADATA_ELEMENTS = 10_000
IDENTITY_KEYS = frozenset({"user_id", "agent_id", "run_id", "namespace", "actor_id", "id"})
MEMORY_TYPES = ("semantic", "episodic", "procedural")
ROLES = frozenset({"user", "assistant", "system", "tool"})
# Unicode general categories an id may not contain (see the module docstring).
_REFUSED_IN_IDS = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})


def check_utf8(value: str, field: str, error: type[InvalidInput] = InvalidInput) -> bytes:
    """The string as UTF-8; a lone surrogate (not text) raises ``error``. Every check uses this."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise error(f"{field} must be valid Unicode text (it holds a lone surrogate)") from None


def check_id(field: str, value: object) -> str:
    """An id: 1-128 visible characters, normalised to NFC. Use the returned string.

    Refused: anything but a string, invalid Unicode, and control, format (zero-width, bidi),
    private-use, unassigned, separator and whitespace characters.
    """
    if not isinstance(value, str):
        raise InvalidId(f"{field} must be a string")
    check_utf8(value, field, InvalidId)
    if not value or len(value) > 4 * MAX_ID_LENGTH:  # NFC never shrinks a string this much
        raise InvalidId(f"{field} must be 1 to {MAX_ID_LENGTH} characters")
    value = unicodedata.normalize("NFC", value)
    if len(value) > MAX_ID_LENGTH:
        raise InvalidId(f"{field} must be 1 to {MAX_ID_LENGTH} characters")
    for char in value:
        if unicodedata.category(char) in _REFUSED_IN_IDS or char.isspace():
            raise InvalidId(
                f"{field} must not contain whitespace, control, format (zero-width, bidi),"
                " private-use or unassigned characters"
            )
    return value


_NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def check_namespace(value: object) -> str:
    """A namespace is 1-64 letters, digits, ``_ . : -``: it is part of key and file names."""
    # fullmatch: with ``^...$`` a trailing newline ("default\n") used to pass.
    if not isinstance(value, str) or not _NAMESPACE_PATTERN.fullmatch(value):
        raise InvalidId("namespace must be 1 to 64 of A-Z a-z 0-9 _ . : - (starting alphanumeric)")
    return value


def check_text(text: object, max_bytes: int, field: str = "text") -> str:
    """Memory text: a non-blank string of at most ``max_bytes`` UTF-8 bytes."""
    if not isinstance(text, str):
        raise InvalidInput(f"{field} must be a string")
    if len(text) > max_bytes:  # before encoding: a character is at least one byte
        raise TextTooLong(f"{field} is over the {max_bytes}-byte limit")
    size = len(check_utf8(text, field))
    if not text.strip():
        raise EmptyText(f"{field} is empty")
    if size > max_bytes:
        raise TextTooLong(f"{field} is {size} bytes; the limit is {max_bytes}")
    if "\x00" in text:
        raise InvalidInput(f"{field} must not contain NUL characters")
    return text


def check_json_value(
    value: T,
    field: str,
    error: type[InvalidInput] = InvalidInput,
    *,
    max_depth: int = MAX_METADATA_DEPTH,
    max_elements: int = MAX_METADATA_ELEMENTS,
) -> T:
    """A JSON-like value (metadata, filters) before anything encodes or recurses over it.

    Walked without recursion: at most ``max_depth`` levels of objects and lists and
    ``max_elements`` values in all, string keys at every level, every string (key or value)
    valid Unicode, every float finite. Returns ``value`` unchanged.
    """
    stack: list[tuple[object, int]] = [(value, 1)]
    elements = 0
    while stack:
        item, depth = stack.pop()
        elements += 1
        if elements > max_elements:
            raise error(f"{field} holds more than {max_elements} values")
        if isinstance(item, str):
            check_utf8(item, field, error)
        elif isinstance(item, Mapping | list | tuple):
            if depth > max_depth:
                raise error(f"{field} is nested deeper than {max_depth} levels")
            if isinstance(item, Mapping):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise error(f"{field} keys must be strings")
                    check_utf8(key, field, error)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise error(f"{field} numbers must be finite")
    return value


def check_metadata(metadata: object, max_bytes: int) -> dict[str, Any]:
    """Metadata: a JSON object of at most ``max_bytes``, without identity keys.

    At most ``MAX_METADATA_DEPTH`` (32) levels deep and ``MAX_METADATA_ELEMENTS`` (10,000) values,
    checked before anything is encoded (``json.dumps`` recurses: ~1,000 levels crashed it).
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidMetadata("metadata must be a JSON object")
    check_json_value(metadata, "metadata", InvalidMetadata)
    reserved = sorted(IDENTITY_KEYS.intersection(metadata))
    if reserved:
        raise InvalidMetadata(
            f"metadata must not hold identity keys {reserved}: pass them as arguments"
        )
    try:
        encoded = json.dumps(metadata, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
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
    try:
        # OverflowError: a valid local time whose UTC instant is before year 1 or after 9999;
        # ValueError/TypeError: a datetime whose tzinfo returns nonsense.
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError, TypeError):
        raise InvalidInput(
            f"{field} must be between 0001-01-01 and 9999-12-31T23:59:59 in UTC"
        ) from None


def check_importance(value: object) -> float | None:
    """A finite number; an ``int`` too large for a double (``10**400``) is refused, not a 500."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("importance must be a finite number")
    try:
        number = float(value)  # OverflowError for an int beyond a double
    except (OverflowError, ValueError):
        raise InvalidInput("importance must be a finite number") from None
    if not math.isfinite(number):
        raise InvalidInput("importance must be a finite number")
    return number


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
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidInput(f"{where}.role must be one of {sorted(ROLES)}")
        name = item.get("name")
        if name is not None:
            name = check_id(f"{where}.name", name)
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


def check_offset(value: object) -> int:
    """How many rows a page skips: a non-negative integer SQLite can bind."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
        raise InvalidInput("offset must be a non-negative integer")
    return value


def check_count(name: str, value: object, most: int) -> int:
    """A count a caller passes (``top_k``, ``limit``, ``batch``, ``workers``): an integer from 1
    to ``most`` (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise InvalidInput(f"{name} must be an integer from 1 to {most}")
    return value


def check_top_k(value: object, limit: int = 1000) -> int:
    return check_count("top_k", value, limit)
