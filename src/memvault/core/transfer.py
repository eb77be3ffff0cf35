"""``memvault migrate``: copy a whole store to another backend, as raw sealed rows.

Rows are sealed by the core with associated data that names the namespace, the owner columns, the
row id and the field, never the store, so a row copied byte for byte opens wherever it lands, as
long as its data key comes along (wrapped by the same master key). So the copy moves the key store
first (``KEY_TABLES``), then the data (``DATA_TABLES``), each table in batches through
``Exportable``; nothing is decrypted on the way.

Resumable: every insert is insert-if-absent by primary key, so a second run after an interruption
skips what is there and copies the rest (history and audit entries keep their ids and seqs, so
nothing is doubled). A row the target already holds under the same key must be the same row
(``_COMPARED``): anything else means the target is another store (or the source changed after
that row was copied) and the copy stops with ``InvalidConfig`` before writing more. A target key
store whose master key checks the source's master key cannot open is refused before anything is
written.

At the end: every table holds as many rows on the target as in the source, and a random sample of
memories (and of deleted memories' histories) and of queued jobs (state, result and request) read
through ``Memory`` on both sides is equal. Jobs are copied in whatever state they are in: a queued
job is run by the target's workers, so an ``infer=True`` add waiting in the queue is not lost.

Run it with writers stopped. Rows added to the source after a run are picked up by running it
again; rows changed or deleted in the source after they were copied are not (the first are
refused as a clash, the second stay on the target and fail the count check).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import SecretStr

from memvault.core import jobs as queue
from memvault.errors import IntegrityError, InvalidConfig, InvalidInput, StorageError
from memvault.memory import Memory
from memvault.security.keyring import KEY_FILE_NAME
from memvault.storage import StoreConfig, backend_for
from memvault.storage.base import DATA_TABLES, KEY_TABLES, Exportable
from memvault.storage.files import create_private_file, ensure_private_dir
from memvault.storage.rows import ExportRow

__all__ = ["Reporter", "Target", "migrate_store", "parse_target"]

BATCH_SIZE = 500
SAMPLE_SIZE = 50

# What must be equal for a row the target already holds to be "the same row" (beside the
# primary key). Empty: any row under the key is fine (master checks are verified by opening them
# with the master key first; scope versions only grow, the larger one is kept).
_COMPARED: dict[str, tuple[str, ...]] = {
    "master_checks": (),
    "data_keys": ("kek_version", "wrapped", "format"),
    "key_generations": ("current", "previous"),
    "scope_generations": ("current", "previous"),
    "store_meta": ("value",),
    "namespace_settings": (
        "secret_policy",
        "default_ttl_seconds",
        "extraction_instructions",
        "reconciliation_instructions",
    ),
    "scope_versions": (),
    "api_keys": ("namespace", "role", "user_id", "secret_hash", "created_at"),
    "memories": (
        "namespace",
        "scope_id",
        "user_id",
        "agent_id",
        "run_id",
        "hash",
        "text_box",
        "metadata_box",
        "created_at",
        "updated_at",
        "seal_version",
        "entities_box",
    ),
    "history": (
        "memory_id",
        "namespace",
        "event",
        "old_box",
        "new_box",
        "created_at",
        "meta_box",
    ),
    # A job's state is compared too: one that moved on in the source after it was copied is a
    # clash (stop the workers while migrating), never a stale state left on the target.
    "jobs": (
        "namespace",
        "scope_id",
        "user_id",
        "agent_id",
        "run_id",
        "kind",
        "status",
        "payload_box",
        "result_box",
        "created_at",
        "updated_at",
    ),
    # A delivery's state is compared as a job's is: stop the webhook workers while migrating.
    "webhooks": ("url", "include_text", "secret_box", "created_at", "updated_at"),
    "webhook_outbox": ("namespace", "event", "memory_id", "status", "text_box", "updated_at"),
    "audit_log": ("hash", "prev_hash"),
}
_KEYS: dict[str, tuple[str, ...]] = {
    "master_checks": ("version",),
    "data_keys": ("scope_id",),
    "key_generations": ("namespace", "kind", "owner"),
    "scope_generations": ("base",),
    "store_meta": ("key",),
    "namespace_settings": ("namespace",),
    "scope_versions": ("scope_id",),
    "api_keys": ("id",),
    "memories": ("id",),
    "history": ("id",),
    "jobs": ("id",),
    "webhooks": ("namespace",),
    "webhook_outbox": ("id",),
    "audit_log": ("seq",),
}


@dataclass(frozen=True, slots=True)
class Target:
    """Where to copy to: a Postgres URL, or a SQLite home directory."""

    database_url: str | None
    home: Path | None
    keys_database_url: str | None = None

    def describe(self) -> str:
        if self.home is not None:
            return f"sqlite:{self.home}"
        from memvault.storage.postgres.store import masked_url

        assert self.database_url is not None
        return masked_url(self.database_url)


def parse_target(to: str, keys_url: str | None = None) -> Target:
    """``postgresql://...`` (or ``postgres://``), or ``sqlite:PATH`` for a SQLite home directory
    (``sqlite:///abs/path`` works too)."""
    scheme = urlsplit(to).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return Target(to, None, keys_url)
    if scheme == "sqlite":
        if keys_url:
            raise InvalidInput("--to-keys is for a Postgres target; a SQLite home has keys.db")
        path = to[len("sqlite:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise InvalidInput("--to sqlite:PATH needs the home directory to copy to")
        return Target(None, Path(path).expanduser().resolve(), None)
    raise InvalidInput(
        "--to must be postgresql://user:password@host/db or sqlite:PATH (a home directory)"
    )


class Reporter(Protocol):
    """Progress of a copy (the CLI draws a bar per table)."""

    def start(self, table: str, total: int) -> None: ...

    def advance(self, table: str, rows: int) -> None: ...


class _Quiet:
    def start(self, table: str, total: int) -> None:
        pass

    def advance(self, table: str, rows: int) -> None:
        pass


def _no_decryption(*_args: Any) -> str:
    raise StorageError("a store opened for copying decrypts nothing")


class _Sample:
    """A uniform random sample of (namespace, memory id), reservoir style."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: list[tuple[str, str]] = []
        self.seen = 0
        self._random = random.Random()  # noqa: S311  (which rows to re-read, not a secret)

    def offer(self, item: tuple[str, str]) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
            return
        slot = self._random.randrange(self.seen)
        if slot < self.size:
            self.items[slot] = item


def _target_settings(source: Memory, target: Target) -> Any:
    update: dict[str, Any] = {"reseal_on_open": False}
    if target.home is not None:
        update.update(home=target.home, database_url=None, keys_database_url=None)
    else:
        update.update(
            database_url=SecretStr(target.database_url or ""),
            keys_database_url=SecretStr(target.keys_database_url)
            if target.keys_database_url
            else None,
        )
    return source.settings.model_copy(update=update)


def _refuse_same_store(source: Memory, target: Target) -> None:
    source_url = source.settings.database_url
    if target.home is not None:
        if source_url is None and target.home == Path(source.home).resolve():
            raise InvalidInput("the target is the source store itself")
    elif source_url is not None and source_url.get_secret_value() == target.database_url:
        raise InvalidInput("the target is the source store itself")


def _bring_master_key(source: Memory, target: Target) -> None:
    """A file master key goes along to a SQLite target home (0600), unless one is there: then it
    must be the same key."""
    if target.home is None or source.settings.master_key is not None:
        return
    ring_path = source.engine.keyring.master.path
    if ring_path is None:
        return
    ensure_private_dir(target.home)
    there = target.home / KEY_FILE_NAME
    if there.exists():
        if there.read_bytes() != ring_path.read_bytes():
            raise InvalidConfig(
                f"{there} holds another master key: the target home belongs to another store"
            )
        return
    create_private_file(there, ring_path.read_bytes())


def _check_master(source: Memory, checks: list[ExportRow]) -> None:
    ring = source.engine.keyring.master
    for check in checks:
        key = ring.keys.get(int(check["version"]))
        try:
            if key is None:
                raise IntegrityError("unknown version")
            key.unwrap(bytes(check["check_box"]), "check")
        except IntegrityError:
            raise InvalidConfig(
                f"the target's key store has master key version {check['version']}, which the"
                " source's master key does not open: the target holds another store"
            ) from None


def _copy_table(
    table: str,
    source: Exportable,
    target: Exportable,
    *,
    batch_size: int,
    reporter: Reporter,
    on_rows: Callable[[list[ExportRow]], None] | None,
    tick: Callable[[], None],
) -> dict[str, int]:
    total = source.count_rows(table)
    reporter.start(table, total)
    copied = present = 0
    after = None
    while True:
        rows, after = source.export_batch(table, after, batch_size)
        if not rows:
            break
        if on_rows is not None:
            on_rows(rows)
        done = target.import_batch(table, rows)
        for row, held in done.present:
            same = held is not None and all(row[c] == held[c] for c in _COMPARED[table])
            if not same:
                key = ", ".join(str(row[c]) for c in _KEYS[table])
                raise InvalidConfig(
                    f"the target holds another {table} row under {key}"
                    + (" (or one that clashes with it)" if held is None else "")
                    + ": it is another store, or the source changed after that row was copied"
                    " (run migrate with writers stopped)"
                )
        copied += done.inserted
        present += len(done.present)
        reporter.advance(table, len(rows))
        tick()
    return {"source": total, "copied": copied, "already_there": present}


def migrate_store(
    source: Memory,
    target: Target,
    *,
    batch_size: int = BATCH_SIZE,
    sample_size: int = SAMPLE_SIZE,
    reporter: Reporter | None = None,
    fail_after_batches: int | None = None,
) -> dict[str, Any]:
    """Copy ``source``'s whole store (every namespace) to ``target``, then verify the copy.

    ``fail_after_batches`` (tests): raise ``StorageError`` after that many batches, as an
    interruption would."""
    if batch_size < 1:
        raise InvalidInput("batch_size must be at least 1")
    started = time.monotonic()
    reporter = reporter or _Quiet()
    _refuse_same_store(source, target)
    _bring_master_key(source, target)
    settings = _target_settings(source, target)
    home = ensure_private_dir(Path(settings.home).expanduser())
    config = StoreConfig(
        home=home,
        database_url=settings.database_url.get_secret_value() if settings.database_url else None,
        keys_database_url=settings.keys_database_url.get_secret_value()
        if settings.keys_database_url
        else None,
        synchronous=settings.synchronous,
        max_filter_seconds=settings.max_filter_seconds,
        pool_size=2,
    )
    backend = backend_for(config.database_url)
    batches = 0

    def tick() -> None:
        nonlocal batches
        batches += 1
        if fail_after_batches is not None and batches >= fail_after_batches:
            raise StorageError(f"interrupted after {batches} batches (test hook)")

    sample = _Sample(sample_size)
    deleted = _Sample(max(1, sample_size // 5))

    def sample_memories(rows: list[ExportRow]) -> None:
        for row in rows:
            sample.offer((str(row["namespace"]), str(row["id"])))

    def sample_history(rows: list[ExportRow]) -> None:
        for row in rows:
            if row["event"] == "DELETE":
                deleted.offer((str(row["namespace"]), str(row["memory_id"])))

    queued = _Sample(max(1, sample_size // 5))

    def sample_jobs(rows: list[ExportRow]) -> None:
        for row in rows:
            queued.offer((str(row["namespace"]), str(row["id"])))

    source_keys: Exportable = source.engine.keyring.store
    source_data: Exportable = source.engine.store
    tables: dict[str, dict[str, int]] = {}
    target_keys = backend.open_keys(config)
    try:
        _check_master(source, _all_rows(target_keys, "master_checks"))
        for table in KEY_TABLES:
            tables[table] = _copy_table(
                table,
                source_keys,
                target_keys,
                batch_size=batch_size,
                reporter=reporter,
                on_rows=None,
                tick=tick,
            )
        target_data = backend.open_data(config, _no_decryption)
        try:
            for table in DATA_TABLES:
                hooks = {
                    "memories": sample_memories,
                    "history": sample_history,
                    "jobs": sample_jobs,
                }
                hook = hooks.get(table)
                tables[table] = _copy_table(
                    table,
                    source_data,
                    target_data,
                    batch_size=batch_size,
                    reporter=reporter,
                    on_rows=hook,
                    tick=tick,
                )
            for table in DATA_TABLES:
                tables[table]["target"] = target_data.count_rows(table)
        finally:
            target_data.close()
        for table in KEY_TABLES:
            tables[table]["target"] = target_keys.count_rows(table)
    finally:
        target_keys.close()
    # Counts from the source again: a writer that slipped in shows up here.
    for table, counts in tables.items():
        store = source_keys if table in KEY_TABLES else source_data
        counts["source"] = store.count_rows(table)
    wrong = [t for t, c in tables.items() if c["source"] != c["target"]]
    if wrong:
        detail = ", ".join(
            f"{t}: {tables[t]['source']} in the source, {tables[t]['target']} on the target"
            for t in wrong
        )
        raise StorageError(f"the copy is not complete ({detail}); run migrate again")
    verified, verified_jobs = _verify_sample(
        source, settings, [*sample.items, *deleted.items], queued.items
    )
    return {
        "source": source.store_status().location,
        "target": target.describe(),
        "tables": tables,
        "verified_memories": verified,
        "verified_jobs": verified_jobs,
        "seconds": round(time.monotonic() - started, 3),
    }


def _all_rows(store: Exportable, table: str) -> list[ExportRow]:
    found: list[ExportRow] = []
    after = None
    while True:
        rows, after = store.export_batch(table, after, BATCH_SIZE)
        if not rows:
            return found
        found.extend(rows)


def _verify_sample(
    source: Memory,
    settings: Any,
    sample: list[tuple[str, str]],
    job_sample: list[tuple[str, str]],
) -> tuple[int, int]:
    """Open the sampled memories (text, metadata, history) and jobs (state, result and the
    sealed request) through ``Memory`` on both sides; how many of each were compared."""
    checked = jobs_checked = 0
    with Memory(settings=settings) as copy:
        for namespace, job_id in dict.fromkeys(job_sample):
            mine, theirs = source.namespaced(namespace), copy.namespaced(namespace)
            if mine.job(job_id) != theirs.job(job_id) or _request(mine, job_id) != _request(
                theirs, job_id
            ):
                raise StorageError(
                    f"verification failed: job {job_id} of namespace {namespace} reads"
                    " differently on the target"
                )
            jobs_checked += 1
        for namespace, memory_id in dict.fromkeys(sample):
            mine, theirs = source.namespaced(namespace), copy.namespaced(namespace)
            if mine.get(memory_id) != theirs.get(memory_id) or mine.history(
                memory_id
            ) != theirs.history(memory_id):
                raise StorageError(
                    f"verification failed: memory {memory_id} of namespace {namespace} reads"
                    " differently on the target"
                )
            checked += 1
    return checked, jobs_checked


def _request(memory: Memory, job_id: str) -> dict[str, Any]:
    """A job's request, opened with the data key of ``memory``'s key store."""
    engine = memory.engine
    return queue.open_payload(engine, queue.get_job(engine, job_id))
