"""Secrets found in text before it is stored: redacted by default, or refused, or allowed.

People paste API keys, tokens, passwords and card numbers into chats; an agent's memory should not
keep them. Each detector is a pattern for a well-known format (plus the Luhn check for card
numbers, so ordinary long numbers pass); a match becomes ``[REDACTED:<kind>]``. The namespace's
policy decides: ``redact`` (default), ``reject`` (``SecretDetected``, nothing stored) or ``allow``.

The redactor runs on every add, over text anyone may send, so every detector takes time linear in
its input (tests/security/test_redaction_linear.py times hostile inputs against ordinary text):
quantifiers that cannot give back characters are possessive (``++``, ``{8,}+``), a match that
could start at many points of one run of characters tries only the first (a lookbehind and an
atomic group), private key blocks look for their footer once per header instead of lazily
re-scanning (``.*?``), and the overlap check between detectors is a binary search.

What the policy covers: the memory text, every string of the metadata -- values *and keys* (under
``redact`` a key holding a secret is replaced by its redacted form; two keys that redact to the
same name become ``[REDACTED:<kind>]``, ``[REDACTED:<kind>]#2``, ... so no value is lost), and the
ids stored in the clear beside the ciphertext (``actor_id``, a message's ``name``). An id cannot
be redacted safely -- two ids would become one, and the caller would no longer find its own id --
so an id holding a secret is refused under ``reject`` *and* under ``redact``
(:func:`check_id_secrets`); only ``allow`` stores it. Ids are checked against every detector but
the card number one: a numeric id of 13-19 digits (snowflake ids, account numbers) passes the Luhn
check one time in ten.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from memvault.errors import SecretDetected

__all__ = ["DETECTORS", "Policy", "apply_policy", "check_id_secrets", "find_secrets", "redact_text"]

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
    """One kind of secret. Every detector runs in time linear in the text (see the module doc).

    ``pattern`` is searched with ``finditer``; ``group`` is the part of a match that is secret;
    ``valid`` refuses matches that only look like secrets. A block detector also has ``end``: the
    block runs from a ``pattern`` match (its header) to the first ``end`` match after it.
    """

    kind: str
    pattern: re.Pattern[str]
    group: int = 0
    valid: Callable[[re.Match[str]], bool] | None = None
    end: re.Pattern[str] | None = None

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        if self.end is None:
            for match in self.pattern.finditer(text):
                if self.valid is None or self.valid(match):
                    yield match.span(self.group)
            return
        # A lazy ``header.*?footer`` re-scans the rest of the text from every header when there
        # is no footer: quadratic. Here each header looks for its footer once, and a header with
        # no footer after it means no later header has one either.
        position = 0
        while (header := self.pattern.search(text, position)) is not None:
            footer = self.end.search(text, header.end())
            if footer is None:
                return
            yield header.start(), footer.end()
            position = footer.end()


# Base64url, the alphabet of JWT segments and of most API keys.
_B64 = "[A-Za-z0-9_-]"
# The words of a PEM label before PRIVATE KEY ("RSA", "ENCRYPTED", "OPENSSH", "PGP" ...): bounded,
# so a long run of words costs a bounded amount per header.
_PEM_WORDS = "(?:[A-Z0-9]{1,32} ){0,8}"

DETECTORS: tuple[Detector, ...] = (
    Detector(
        "private_key",
        re.compile(rf"-----BEGIN {_PEM_WORDS}PRIVATE KEY(?: BLOCK)?-----"),
        end=re.compile(rf"-----END {_PEM_WORDS}PRIVATE KEY(?: BLOCK)?-----"),
    ),
    # A JWT starts at a word boundary before "eyJ" inside a run of base64url characters. Which
    # such "eyJ" of a run it starts at cannot change whether it matches (the first segment runs
    # to the end of the run either way), so only the first one is tried: the match may start
    # only where a run starts (the lookbehind), and the atomic group walks to the run's first
    # "eyJ" and never back. Without that, every "eyJ" of "eyJ-eyJ-eyJ-..." re-scanned the rest.
    Detector(
        "jwt",
        re.compile(
            rf"(?<!{_B64})(?>{_B64}*?\b(?=eyJ))"
            rf"(eyJ{_B64}{{8,}}+\.eyJ{_B64}{{8,}}+\.{_B64}{{8,}}+)"
        ),
        group=1,
    ),
    Detector("memvault_key", re.compile(r"\bmvk_[a-z0-9]{12}_[A-Za-z0-9_-]{49}\b")),
    Detector("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    Detector(
        "github_token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}+|github_pat_[A-Za-z0-9_]{22,}+)\b"),
    ),
    Detector("anthropic_key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}+")),
    Detector("openai_key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}+")),
    Detector("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}+")),
    Detector("stripe_key", re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}+\b")),
    Detector("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    # scheme://user:password@ -- the scheme is the rest of a run of scheme characters from its
    # first letter after a word boundary; as for JWTs only that first letter is tried (in
    # "a-a-a-...", every "a" used to re-scan the rest of the run looking for "://"). The user and
    # password parts cannot contain what ends them, so they never give characters back.
    Detector(
        "url_password",
        re.compile(
            r"(?<![a-zA-Z0-9+.-])(?>[a-zA-Z0-9+.-]*?\b(?=[a-zA-Z]))[a-zA-Z0-9+.-]*+"
            r"://[^\s:/@]++:([^\s@/]++)@"
        ),
        group=1,
    ),
    # 13 to 19 digits, single spaces or dashes between them: at most 37 characters per try.
    Detector("card_number", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), valid=_card),
)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    start: int
    end: int


def find_secrets(text: str) -> list[Finding]:
    """Non-overlapping findings, in order (the first detector wins an overlap)."""
    found: list[Finding] = []  # sorted by start; disjoint, so sorted by end too
    starts: list[int] = []
    for detector in DETECTORS:
        for start, end in detector.spans(text):
            at = bisect.bisect_right(starts, start)
            if (at and found[at - 1].end > start) or (at < len(found) and found[at].start < end):
                continue
            found.insert(at, Finding(detector.kind, start, end))
            starts.insert(at, start)
    return found


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
        return _walk_object(value, policy, kinds, where)
    if isinstance(value, list):
        return [_walk(v, policy, kinds, where) for v in value]
    return value


def _walk_object(
    value: dict[str, Any], policy: Policy, kinds: list[str], where: str
) -> dict[str, Any]:
    """An object with its keys cleaned as well as its values (see the module doc)."""
    names: dict[str, str] = {}
    for key in value:
        cleaned, found = redact_text(key)
        if found and policy == "reject":
            raise SecretDetected(
                f"{where} has a key holding a secret ({', '.join(sorted(set(found)))}); not stored"
            )
        kinds.extend(found)
        names[key] = cleaned
    taken = {key for key, cleaned in names.items() if cleaned == key}
    for key, cleaned in names.items():
        if cleaned == key:
            continue
        candidate, number = cleaned, 1
        while candidate in taken:  # two secrets redacted alike, or a key already named so
            number += 1
            candidate = f"{cleaned}#{number}"
        taken.add(candidate)
        names[key] = candidate
    return {names[k]: _walk(v, policy, kinds, where) for k, v in value.items()}


_ID_DETECTORS = tuple(d for d in DETECTORS if d.kind != "card_number")


def check_id_secrets(value: str | None, policy: Policy, field: str) -> str | None:
    """An id stored in the clear (``actor_id``, a message ``name``) must not hold a secret.

    Refused under ``reject`` and ``redact`` alike (an id cannot be redacted: see the module
    doc); ``allow`` stores it. The message names the field and the kind, never the id.
    """
    if value is None or policy == "allow":
        return value
    kinds = sorted({d.kind for d in _ID_DETECTORS if next(d.spans(value), None) is not None})
    if kinds:
        raise SecretDetected(f"{field} holds a secret ({', '.join(kinds)}); not stored")
    return value


def apply_policy(value: Any, policy: Policy, where: str) -> tuple[Any, list[str]]:
    """Redact (or refuse) secrets in a text or in every string of a JSON value."""
    if policy == "allow":
        return value, []
    kinds: list[str] = []
    return _walk(value, policy, kinds, where), kinds
