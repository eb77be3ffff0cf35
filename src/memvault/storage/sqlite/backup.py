"""Online snapshots of the SQLite files, and putting one back (``memvault backup`` / ``restore``).

A snapshot is taken with SQLite's backup API in one step (``Connection.backup`` with every page at
once): it reads the source inside one read transaction, so it is the database as of one commit,
while writers go on (WAL mode lets them commit beside a reader). A copy in several steps would
restart each time another connection writes, and might never finish under load. The copy is then
switched to the rollback journal (one self-contained file, no ``-wal`` beside it), checked with
``PRAGMA integrity_check`` and synced.

Restoring writes the snapshot *through* SQLite into the home's database (the backup API again, the
other way): the file keeps its 0600 mode, and a ``-wal`` file left in the home can never be
replayed onto pages it does not belong to, as it could if a file were renamed over the database.

Every statement is a constant of this module; table names come from the fixed tuples of
``storage.base``, never from a caller.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from memvault.errors import StorageError
from memvault.storage.base import COUNT_ROWS, DATA_TABLES, KEY_TABLES
from memvault.storage.files import create_private_file, open_sqlite
from memvault.storage.rows import Snapshot
from memvault.storage.sqlite.errors import translated

__all__ = ["counts", "restore_file", "snapshot_file"]


def counts(db: sqlite3.Connection, tables: Sequence[str]) -> dict[str, int]:
    return {table: int(db.execute(COUNT_ROWS[table]).fetchone()[0]) for table in tables}


def snapshot_file(source: sqlite3.Connection, target: Path, *, keys: bool) -> Snapshot:
    """Copy ``source``'s database to the new file ``target`` (0600), consistent as of one commit."""
    create_private_file(target, b"")  # 0600 from the start; refuses an existing path
    with translated("taking a snapshot"):
        copy = sqlite3.connect(target, isolation_level=None)
        try:
            source.backup(copy)  # pages=-1: one step, one read transaction on the source
            copy.execute("PRAGMA journal_mode=DELETE")
            verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise StorageError(f"the snapshot {target.name} failed its integrity check")
            tables = counts(copy, KEY_TABLES if keys else DATA_TABLES)
            migrations: tuple[str, ...] = ()
            if not keys:
                rows = copy.execute("SELECT name FROM migrations ORDER BY rowid").fetchall()
                migrations = tuple(str(row[0]) for row in rows)
        finally:
            copy.close()
    _fsync(target)
    return Snapshot(files=(target.name,), tables=tables, migrations=migrations)


def restore_file(snapshot: Path, target: Path, *, synchronous: str) -> None:
    """Write the database in ``snapshot`` over the one at ``target`` (created 0600 if absent)."""
    with translated("restoring a snapshot"):
        source = sqlite3.connect(f"{snapshot.resolve().as_uri()}?mode=ro", uri=True)
        try:
            db = open_sqlite(target, synchronous=synchronous)
            try:
                source.backup(db)
                # The snapshot was in rollback-journal mode; the store runs in WAL mode.
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                db.close()
        finally:
            source.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
