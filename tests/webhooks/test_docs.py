"""The verification snippet of docs/webhooks.md runs, and accepts exactly what memvault signs."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from memvault.errors import Unauthorized
from memvault.webhooks import new_secret, sign, verify

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def test_the_documented_verification_accepts_only_a_true_signature() -> None:
    (snippet,) = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    scope: dict[str, Any] = {}
    exec(compile(snippet, str(DOC), "exec"), scope)
    verify = scope["verify_memvault"]
    secret, body, now = new_secret(), b'{"type":"memory.added"}', int(time.time())
    header = sign(secret, body, now)
    assert verify(secret, body, header)
    assert not verify(secret, body + b" ", header)
    assert not verify(new_secret(), body, header)
    assert not verify(secret, body, sign(secret, body, now - 3600))  # replayed
    assert not verify(secret, body, header.replace("t=", "t=1"))
    assert not verify(secret, body, "v1=" + header.split("v1=")[1])


HOSTILE_HEADERS = [
    "t=\u00b2,v1=00",  # a digit to str.isdigit, not to int()
    "t=" + "9" * 5000 + ",v1=00",  # past int()'s digit limit
    "t={now},v1=\u00e9",  # compare_digest refuses non-ASCII text
    "t={now},v1=" + "\u0661" * 64,
    "t=\u0661\u0662\u0663,v1=00",  # Arabic-Indic digits: never what memvault signs
]


def test_hostile_signature_headers_are_refused_not_raised() -> None:
    """A receiver's verification answers "not signed" to any header, never an exception (an
    exception is a 500 in the receiver, or worse, a handler that skips the check)."""
    (snippet,) = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    scope: dict[str, Any] = {}
    exec(compile(snippet, str(DOC), "exec"), scope)
    documented = scope["verify_memvault"]
    secret, body, now = new_secret(), b"{}", int(time.time())
    for template in HOSTILE_HEADERS:
        header = template.replace("{now}", str(now))
        assert documented(secret, body, header) is False
        with pytest.raises(Unauthorized):
            verify(secret, body, header, now=now)
