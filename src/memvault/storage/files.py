"""Private files and SQLite connections with the durability settings of DESIGN.md section 4."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import IO, Literal, overload

from memvault.errors import StorageError

__all__ = ["create_private_file", "ensure_private_dir", "open_private", "open_sqlite"]

# SQL is never built from a value (tests/security/test_sql_splicing.py): one statement per level.
_SYNCHRONOUS = {"FULL": "PRAGMA synchronous=FULL", "NORMAL": "PRAGMA synchronous=NORMAL"}


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` 0700 (and tighten it if it exists with wider rights)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


_OPEN_FLAGS = {
    # "x": a new file, never an existing one nor a symlink (O_EXCL does not follow links).
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    # "a": append, creating the file if needed.
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
}


@overload
def open_private(path: Path | str, mode: Literal["x", "a"]) -> IO[str]: ...
@overload
def open_private(path: Path | str, mode: Literal["xb", "ab"]) -> IO[bytes]: ...
def open_private(path: Path | str, mode: str) -> IO[str] | IO[bytes]:
    """Open a file memvault writes outside SQLite, readable by its owner only from its first byte.

    Every such file goes through here (exports, the audit JSONL sink, key files): it is created
    with ``os.open(..., 0o600)`` -- never with the umask and a ``chmod`` afterwards, which leaves
    a window (and a world-readable file when the write fails half-way). An existing file opened
    for appending is tightened to 0600 with ``fchmod`` on the open descriptor. ``mode`` is ``x``
    (create, refuse an existing path) or ``a`` (append), ``b`` for bytes; text is UTF-8.
    """
    if mode not in ("x", "a", "xb", "ab"):
        raise ValueError(f"open_private mode must be x, a, xb or ab, not {mode!r}")
    fd = os.open(path, _OPEN_FLAGS[mode[0]], 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
        if mode.endswith("b"):
            return os.fdopen(fd, "wb" if mode[0] == "x" else "ab")
        return os.fdopen(fd, "w" if mode[0] == "x" else "a", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def create_private_file(path: Path, content: bytes) -> None:
    """Write a new file readable by its owner only; refuse to overwrite one."""
    with open_private(path, "xb") as handle:
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


def open_sqlite(
    path: Path, *, synchronous: str, busy_timeout_seconds: float = 30.0
) -> sqlite3.Connection:
    """A connection in WAL mode with secure_delete and foreign keys, in autocommit mode.

    Transactions are explicit (``BEGIN IMMEDIATE`` ... ``COMMIT``): a write is acknowledged only
    after its commit returned.
    """
    if synchronous not in _SYNCHRONOUS:
        raise StorageError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
    ensure_private_dir(path.parent)
    _touch_private(path)
    try:
        # ``timeout`` is SQLite's busy timeout (sqlite3_busy_timeout): a writer waits this long
        # for another process's write lock before SQLITE_BUSY.
        db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_seconds
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(_SYNCHRONOUS[synchronous])
        db.execute("PRAGMA secure_delete=ON")
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {path.name}: {exc}") from exc
    return db
