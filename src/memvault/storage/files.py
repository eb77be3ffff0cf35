"""Private files and SQLite connections with the durability settings of DESIGN.md section 4."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from memvault.errors import StorageError

__all__ = ["create_private_file", "ensure_private_dir", "open_sqlite"]

# SQL is never built from a value (tests/security/test_sql_splicing.py): one statement per level.
_SYNCHRONOUS = {"FULL": "PRAGMA synchronous=FULL", "NORMAL": "PRAGMA synchronous=NORMAL"}


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` 0700 (and tighten it if it exists with wider rights)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def create_private_file(path: Path, content: bytes) -> None:
    """Write a new file readable by its owner only; refuse to overwrite one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def _touch_private(path: Path) -> None:
    """SQLite creates files with the umask; create them 0600 first so no moment is wider."""
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if not candidate.exists():
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT, 0o600))
        elif candidate.stat().st_mode & 0o077:
            candidate.chmod(0o600)


def open_sqlite(path: Path, *, synchronous: str) -> sqlite3.Connection:
    """A connection in WAL mode with secure_delete and foreign keys, in autocommit mode.

    Transactions are explicit (``BEGIN IMMEDIATE`` ... ``COMMIT``): a write is acknowledged only
    after its commit returned.
    """
    if synchronous not in _SYNCHRONOUS:
        raise StorageError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
    ensure_private_dir(path.parent)
    _touch_private(path)
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(_SYNCHRONOUS[synchronous])
        db.execute("PRAGMA secure_delete=ON")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=30000")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {path.name}: {exc}") from exc
    return db
