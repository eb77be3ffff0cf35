"""Files the CLI writes: JSON lines, private from the first byte, never half-written in place."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from memvault.errors import InvalidInput
from memvault.storage.files import open_private

__all__ = ["write_jsonl"]


def write_jsonl(out: Path, lines: Iterable[dict[str, Any]], *, force: bool = False) -> int:
    """Write ``lines`` to ``out`` (created 0600); returns how many were memories.

    An existing ``out`` is refused unless ``force``; then the lines go to a new file beside it
    that replaces it only once complete, so a failure (an unknown user, a full disk) never leaves
    the old file truncated. Without ``force`` the file is created with ``O_EXCL`` (no race with
    another writer, no following a symlink planted there) and removed again on a failure.
    """
    target = out.with_name(f".{out.name}.{os.getpid()}.partial") if force else out
    try:
        handle = open_private(target, "x")
    except FileExistsError:
        if force:
            raise
        raise InvalidInput(
            f"{out} already exists: choose another --out, or add --force to replace it"
        ) from None
    memories = 0
    try:
        with handle:
            for line in lines:
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
                memories += line.get("type") == "memory"
        if force:
            os.replace(target, out)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return memories
