"""Secrets found in text before it is stored: redacted by default, or refused, or allowed.

People paste API keys, tokens, passwords and card numbers into chats; an agent's memory should not
keep them. Each detector is a pattern for a well-known format (plus the Luhn check for card
numbers, so ordinary long numbers pass); a match becomes ``[REDACTED:<kind>]``. The namespace's
policy decides: ``redact`` (default), ``reject`` (``SecretDetected``, nothing stored) or ``allow``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from memvault.errors import SecretDetected

__all__ = ["DETECTORS", "Policy", "apply_policy", "find_secrets", "redact_text"]

Policy = Literal["redact", "reject", "allow"]


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> bool:
    digits = re.sub(r"[ -]", "", match.group(0))
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and _luhn(digits)


@dataclass(frozen=True, slots=True)
class Detector:
    kind: str
    pattern: re.Pattern[str]
    group: int = 0  # the part of the match that is secret
    valid: Callable[[re.Match[str]], bool] | None = None


DETECTORS: tuple[Detector, ...] = (
    Detector(
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r".*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
            re.S,
        ),
    ),
    Detector("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    Detector("memvault_key", re.compile(r"\bmvk_[a-z0-9]{12}_[A-Za-z0-9_-]{49}\b")),
    Detector("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    Detector(
        "github_token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b"),
    ),
    Detector("anthropic_key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    Detector("openai_key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
    Detector("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    Detector("stripe_key", re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b")),
    Detector("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    Detector(
        "url_password", re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+:([^\s@/]+)@"), group=1
    ),
    Detector("card_number", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), valid=_card),
)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    start: int
    end: int


def find_secrets(text: str) -> list[Finding]:
    """Non-overlapping findings, in order (the first detector wins an overlap)."""
    found: list[Finding] = []
    for detector in DETECTORS:
        for match in detector.pattern.finditer(text):
            if detector.valid is not None and not detector.valid(match):
                continue
            start, end = match.span(detector.group)
            if any(f.start < end and start < f.end for f in found):
                continue
            found.append(Finding(detector.kind, start, end))
    return sorted(found, key=lambda f: f.start)


def redact_text(text: str) -> tuple[str, list[str]]:
    """The text with each secret replaced by ``[REDACTED:<kind>]``, and the kinds found."""
    findings = find_secrets(text)
    if not findings:
        return text, []
    parts, last = [], 0
    for finding in findings:
        parts.append(text[last : finding.start])
        parts.append(f"[REDACTED:{finding.kind}]")
        last = finding.end
    parts.append(text[last:])
    return "".join(parts), [f.kind for f in findings]


def _walk(value: Any, policy: Policy, kinds: list[str], where: str) -> Any:
    if isinstance(value, str):
        cleaned, found = redact_text(value)
        if found and policy == "reject":
            raise SecretDetected(
                f"{where} holds a secret ({', '.join(sorted(set(found)))}); not stored"
            )
        kinds.extend(found)
        return cleaned
    if isinstance(value, dict):
        return {k: _walk(v, policy, kinds, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, policy, kinds, where) for v in value]
    return value


def apply_policy(value: Any, policy: Policy, where: str) -> tuple[Any, list[str]]:
    """Redact (or refuse) secrets in a text or in every string of a JSON value."""
    if policy == "allow":
        return value, []
    kinds: list[str] = []
    return _walk(value, policy, kinds, where), kinds
