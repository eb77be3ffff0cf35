"""The verification snippet of docs/webhooks.md runs, and accepts exactly what memvault signs."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from memvault.webhooks import new_secret, sign

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
