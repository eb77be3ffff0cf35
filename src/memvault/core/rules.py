"""A namespace's rules: the secret policy, the default TTL of new memories, and the operator's
instructions added to the inference prompts. Checked here, stored by the store as they are."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from memvault.errors import InvalidInput
from memvault.validation import check_utf8

__all__ = ["MAX_INSTRUCTIONS_CHARS", "MAX_TTL_SECONDS", "SECRET_POLICIES", "changed_rules"]

MAX_TTL_SECONDS = 100 * 365 * 24 * 3600
MAX_INSTRUCTIONS_CHARS = 4000
SECRET_POLICIES = ("redact", "reject", "allow")


def changed_rules(
    current: Mapping[str, Any],
    *,
    secret_policy: str | None,
    default_ttl_seconds: float | bool | None,
    extraction_instructions: str | None,
    reconciliation_instructions: str | None,
) -> dict[str, Any]:
    """``current`` with the named changes, each checked (``InvalidInput`` names the first bad
    one); a ``None`` (``False`` for the TTL) keeps the current value."""
    rules = dict(current)
    if secret_policy is not None:
        if secret_policy not in SECRET_POLICIES:
            raise InvalidInput("secret_policy must be redact, reject or allow")
        rules["secret_policy"] = secret_policy
    if default_ttl_seconds is not False:
        rules["default_ttl_seconds"] = _ttl(default_ttl_seconds)
    for name, value in (
        ("extraction_instructions", extraction_instructions),
        ("reconciliation_instructions", reconciliation_instructions),
    ):
        if value is not None:
            rules[name] = _instructions(name, value)
    return rules


def _ttl(ttl: object) -> float | None:
    if ttl is None:
        return None
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or not 0 < ttl <= MAX_TTL_SECONDS
    ):
        raise InvalidInput(
            f"default_ttl_seconds must be a number of seconds from 1 to {MAX_TTL_SECONDS:,}"
            " (100 years), or None"
        )
    return ttl


def _instructions(name: str, value: object) -> str | None:
    """Text the operator adds to a prompt: "" (or only spaces) removes it."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string (an empty one removes them)")
    if len(value) > MAX_INSTRUCTIONS_CHARS:
        raise InvalidInput(f"{name} is over {MAX_INSTRUCTIONS_CHARS:,} characters")
    check_utf8(value, name)
    if "\x00" in value:
        raise InvalidInput(f"{name} must not contain NUL characters")
    return value.strip() or None
