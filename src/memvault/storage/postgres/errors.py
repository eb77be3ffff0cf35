"""One translator from psycopg's errors to memvault's, used around every Postgres call.

A driver message is never passed on: Postgres puts row values into its messages and DETAIL lines
(``Key (id)=(...) already exists``), and those values may be ids, hashes or sealed bytes a caller
must not see and a log must not keep. The memvault error names the action and the SQLSTATE only,
and is raised ``from None`` so no traceback carries the driver's text either.

``StorageBusy`` (HTTP 503) is for what a retry may fix: the connection is gone or refused, the
server is starting or shutting down, out of resources, a serialization failure, a deadlock, a
lock not available. Everything else is a ``StorageError`` (500).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import psycopg_pool

from memvault.errors import MemvaultError, StorageBusy, StorageError

__all__ = ["guard", "translate"]


# SQLSTATE classes and codes a retry may fix.
_BUSY_CLASSES = ("08", "53", "57")
_BUSY_CODES = frozenset({"40001", "40P01", "55P03"})


def translate(exc: psycopg.Error, action: str) -> MemvaultError:
    """The memvault error for a driver error raised while doing ``action``: never its text."""
    sqlstate = exc.sqlstate or ""
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return StorageBusy(f"{action} failed: no database connection is free")
    if (
        isinstance(exc, psycopg.OperationalError)
        or sqlstate.startswith(_BUSY_CLASSES)
        or sqlstate in _BUSY_CODES
    ):
        return StorageBusy(
            f"{action} failed: the database is busy or unavailable (SQLSTATE {sqlstate or 'none'})"
        )
    return StorageError(f"{action} failed (SQLSTATE {sqlstate or 'none'})")


@contextmanager
def guard(action: str) -> Iterator[None]:
    """Translate every driver error raised inside the block (see :func:`translate`)."""
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc, action) from None
