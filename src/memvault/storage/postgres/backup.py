"""Backups of a Postgres store with ``pg_dump`` / ``pg_restore`` (``memvault backup``/``restore``).

A snapshot opens a ``REPEATABLE READ, READ ONLY`` transaction, exports its snapshot
(``pg_export_snapshot``), counts the rows and reads the migrations in it, and runs
``pg_dump --snapshot`` on that very snapshot: the dump and the manifest's counts describe the
same moment, while writers go on. The dump (custom format) of one schema is written into a file
memvault creates 0600, from pg_dump's standard output.

The tools are found on ``PATH``; they must be of the server's major version or newer (pg_dump
refuses an older client). The password never appears on a command line (other users can read
those): it is taken out of the URL and handed over in ``PGPASSWORD``. pg_dump's own messages can
quote the database's contents, so only its exit status is reported.

Restoring drops the schema and runs ``pg_restore --single-transaction`` into the empty database:
if pg_restore fails, the schema is left absent (run the restore again), never half-written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from memvault.errors import MissingDependency, StorageError
from memvault.storage.base import COUNT_ROWS
from memvault.storage.files import open_private
from memvault.storage.postgres.errors import guard
from memvault.storage.rows import Snapshot

__all__ = ["DATA_DUMP", "KEYS_DUMP", "restore_schema", "snapshot_schema"]

DATA_DUMP = "memvault.dump"
KEYS_DUMP = "memvault_keys.dump"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise MissingDependency(
            f"{name} is not on PATH: install the PostgreSQL client tools of the server's major"
            " version (or newer) to back up or restore a Postgres store"
        )
    return found


def _without_password(url: str) -> tuple[str, dict[str, str]]:
    """The connection string without its password, and the environment that carries it."""
    params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    password = params.pop("password", None)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    return make_conninfo(**params), env


def snapshot_schema(
    url: str, schema: str, target: Path, tables: Sequence[str], *, migrations: bool
) -> Snapshot:
    """Dump ``schema`` into the new file ``target`` (0600), with its row counts at that moment."""
    pg_dump = _tool("pg_dump")
    conninfo, env = _without_password(url)
    with guard("taking a snapshot"), psycopg.connect(url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        exported = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert exported is not None
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        counts = {}
        for table in tables:
            found = conn.execute(COUNT_ROWS[table]).fetchone()
            counts[table] = int(found[0]) if found else 0
        names: tuple[str, ...] = ()
        if migrations:
            rows = conn.execute("SELECT name FROM migrations ORDER BY seq").fetchall()
            names = tuple(str(row[0]) for row in rows)
        with open_private(target, "xb") as out:
            done = subprocess.run(  # noqa: S603  (a fixed tool, arguments of our own)
                [
                    pg_dump,
                    "--format=custom",
                    f"--schema={schema}",
                    f"--snapshot={exported[0]}",
                    "--no-owner",
                    "--no-privileges",
                    f"--dbname={conninfo}",
                ],
                stdout=out,
                stderr=subprocess.DEVNULL,
                env=env,
                check=False,
            )
            out.flush()
            os.fsync(out.fileno())
        conn.rollback()
    if done.returncode != 0:
        target.unlink(missing_ok=True)
        raise StorageError(
            f"pg_dump failed (exit {done.returncode}) on schema {schema}: run it by hand to see"
            " why (a client older than the server is refused)"
        )
    return Snapshot(files=(target.name,), tables=counts, migrations=names)


def restore_schema(url: str, schema: str, dump: Path) -> None:
    """Replace ``schema`` by the one in ``dump``."""
    pg_restore = _tool("pg_restore")
    conninfo, env = _without_password(url)
    with guard("dropping the schema to restore"), psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    done = subprocess.run(  # noqa: S603  (a fixed tool, arguments of our own)
        [
            pg_restore,
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            f"--dbname={conninfo}",
            str(dump),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise StorageError(
            f"pg_restore failed (exit {done.returncode}) on schema {schema}; the schema is absent:"
            " run the restore again (or pg_restore by hand to see why)"
        )
