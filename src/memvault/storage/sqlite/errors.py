"""SQLite's errors as memvault's: a stable message with the error's name, never its text.

SQLite's messages are mostly generic, but a constraint failure names columns and an extension's
message can carry anything: callers and logs get ``"<action> failed (SQLITE_CONSTRAINT_UNIQUE)"``
and the driver error stays chained as ``__cause__`` for a debugger, not for a response.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from memvault.errors import MemvaultError, StorageBusy, StorageError

__all__ = ["translate", "translated"]

# Another connection holds the lock past busy_timeout, the disk or memory ran out, or the file
# or its directory turned read-only: the request can be retried once the operator (or the other
# process) clears the fault, and nothing of it was applied.
_BUSY = frozenset(
    {
        "SQLITE_BUSY",
        "SQLITE_LOCKED",
        "SQLITE_FULL",
        "SQLITE_NOMEM",
        "SQLITE_IOERR",
        "SQLITE_READONLY",
        "SQLITE_CANTOPEN",
    }
)


def translate(exc: sqlite3.Error, action: str) -> StorageError:
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    if "_".join(name.split("_")[:2]) in _BUSY:  # SQLITE_BUSY_SNAPSHOT is SQLITE_BUSY
        return StorageBusy(f"{action} failed ({name}): the database is busy, retry shortly")
    return StorageError(f"{action} failed ({name})")


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Run a block; a driver error leaves it as ``translate``'s error (memvault's pass)."""
    try:
        yield
    except MemvaultError:
        raise
    except sqlite3.Error as exc:
        raise translate(exc, action) from exc
