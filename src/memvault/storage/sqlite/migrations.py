"""Named migrations for ``memvault.db``, applied in order, each in its own transaction.

A migration is never edited once released: a change to the schema is a new function appended to
``MIGRATIONS``. Applied names are recorded in ``migrations`` so ``memvault db status`` can list
them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["MIGRATIONS", "applied", "migrate"]


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Statement by statement: ``executescript`` would commit the open transaction first."""
    for statement in script.split(";\n"):
        if statement.strip():
            db.execute(statement)


def m001_create_tables(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE memories (
            rowid INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            namespace TEXT NOT NULL,
            scope_id TEXT NOT NULL,
            user_id TEXT, agent_id TEXT, run_id TEXT, actor_id TEXT, role TEXT,
            memory_type TEXT NOT NULL,
            hash TEXT NOT NULL,
            text_box BLOB NOT NULL,
            metadata_box BLOB NOT NULL,
            vector_box BLOB NOT NULL,
            context_box BLOB NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            expires_at TEXT,
            importance REAL,
            access_count INTEGER NOT NULL DEFAULT 0,
            last_accessed_at TEXT
        );
        CREATE UNIQUE INDEX memories_dedup ON memories (
            namespace, coalesce(user_id, ''), coalesce(agent_id, ''), coalesce(run_id, ''), hash);
        CREATE INDEX memories_user ON memories (namespace, user_id, rowid);
        CREATE INDEX memories_agent ON memories (namespace, agent_id, rowid);
        CREATE INDEX memories_run ON memories (namespace, run_id, rowid);
        CREATE INDEX memories_scope ON memories (scope_id);
        CREATE INDEX memories_expiry ON memories (expires_at) WHERE expires_at IS NOT NULL;
        -- Holds keyed token hashes only, never words; rowid is memories.rowid.
        CREATE VIRTUAL TABLE memories_fts USING fts5 (body, context, tokenize = 'ascii');
        CREATE TABLE history (
            id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            memory_id TEXT NOT NULL,
            namespace TEXT NOT NULL,
            scope_id TEXT NOT NULL,
            user_id TEXT, agent_id TEXT, run_id TEXT,
            event TEXT NOT NULL,
            old_box BLOB,
            new_box BLOB,
            actor_id TEXT,
            role TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX history_memory ON history (namespace, memory_id, seq);
        CREATE INDEX history_scope ON history (scope_id);
        -- Bumped by every write to a scope, so a node knows when its vector index is stale.
        CREATE TABLE scope_versions (scope_id TEXT PRIMARY KEY, version INTEGER NOT NULL);
        """,
    )


def m002_api_keys(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            role TEXT NOT NULL,
            name TEXT,
            user_id TEXT,
            secret_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            revoked_at TEXT,
            last_used_at TEXT
        );
        CREATE INDEX api_keys_namespace ON api_keys (namespace);
        """,
    )


def m003_audit_log(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            namespace TEXT,
            key_id TEXT,
            action TEXT NOT NULL,
            user_id TEXT,
            memory_ids TEXT NOT NULL,
            source TEXT,
            outcome TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE INDEX audit_log_namespace ON audit_log (namespace, seq);
        """,
    )


def m004_namespace_settings(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE namespace_settings (namespace TEXT PRIMARY KEY,"
        " secret_policy TEXT NOT NULL DEFAULT 'redact', default_ttl_seconds REAL)"
    )


def m005_covering_index_for_filters(db: sqlite3.Connection) -> None:
    """Filters on built-in fields read this index instead of every (large) row of the scope:
    measured at 10,000 memories, the filtered id set took 14 ms instead of 30 ms."""
    db.execute(
        "CREATE INDEX memories_fields ON memories (namespace, user_id, expires_at, memory_type,"
        " role, actor_id, agent_id, run_id, created_at, updated_at, importance, id)"
    )


def m006_seal_version(db: sqlite3.Connection) -> None:
    """Which associated-data format each row's sealed fields use: 1 for rows written before
    (scope id, row id, field), 2 from now on (namespace and owner columns bound too). Reads
    follow the column, so ``reseal.py`` can move old rows over in batches while the store works;
    the partial indexes find the rows still to move without a scan."""
    _run_script(
        db,
        """
        ALTER TABLE memories ADD COLUMN seal_version INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE history ADD COLUMN seal_version INTEGER NOT NULL DEFAULT 1;
        CREATE INDEX memories_legacy_seal ON memories (rowid) WHERE seal_version = 1;
        CREATE INDEX history_legacy_seal ON history (id) WHERE seal_version = 1;
        """,
    )


def m007_jobs(db: sqlite3.Connection) -> None:
    """The durable job queue (``core/jobs.py``): the request and result sealed with the owner's
    data key; ``jobs_claim`` finds the oldest claimable job without a scan."""
    _run_script(
        db,
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            user_id TEXT, agent_id TEXT, run_id TEXT,
            scope_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL,
            lease_owner TEXT,
            lease_until TEXT,
            run_after TEXT NOT NULL,
            payload_box BLOB NOT NULL,
            result_box BLOB,
            error_code TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX jobs_claim ON jobs (status, run_after, id);
        CREATE INDEX jobs_namespace ON jobs (namespace, user_id, id);
        """,
    )


def m008_history_provenance(db: sqlite3.Connection) -> None:
    """A sealed field per history event (``meta_box``): where an inferred change came from
    (job, source message hashes, actor, model, prompt version). NULL for other events."""
    db.execute("ALTER TABLE history ADD COLUMN meta_box BLOB")


def m009_inference_instructions(db: sqlite3.Connection) -> None:
    """Per-namespace instructions added to the inference prompts (operator configuration, like
    the secret policy; NULL: none)."""
    db.execute("ALTER TABLE namespace_settings ADD COLUMN extraction_instructions TEXT")
    db.execute("ALTER TABLE namespace_settings ADD COLUMN reconciliation_instructions TEXT")


def m010_webhooks(db: sqlite3.Connection) -> None:
    """Each namespace's webhook (its secret sealed) and the outbox of its events
    (``core/webhooks.py``), written in the transaction of the change an event reports;
    ``webhook_outbox_claim`` finds the oldest due delivery without a scan."""
    _run_script(
        db,
        """
        CREATE TABLE webhooks (
            namespace TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            include_text INTEGER NOT NULL,
            secret_box BLOB NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE webhook_outbox (
            id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            event TEXT NOT NULL,
            memory_id TEXT,
            user_id TEXT, agent_id TEXT, run_id TEXT,
            scope_id TEXT,
            text_box BLOB,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL,
            lease_owner TEXT,
            lease_until TEXT,
            run_after TEXT NOT NULL,
            last_error TEXT,
            last_status INTEGER,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX webhook_outbox_claim ON webhook_outbox (status, run_after, id);
        CREATE INDEX webhook_outbox_namespace ON webhook_outbox (namespace, user_id, id);
        """,
    )


def m011_entities(db: sqlite3.Connection) -> None:
    """Entity links (``core/entities.py``): a memory's entities sealed on its row
    (``entities_box``, NULL until extracted) with their keyed hashes (``terms_entities``,
    space-separated), and ``memory_entities``, the index from a hash to the memories that name
    it (with the row's key scope, so that counts and links read the index alone). Triggers keep
    the index equal to ``terms_entities`` on every insert, rewrite and delete of a row, whatever
    path deletes it (erase, expiry, reset, restore), in the same statement."""
    _run_script(
        db,
        """
        ALTER TABLE memories ADD COLUMN entities_box BLOB;
        ALTER TABLE memories ADD COLUMN terms_entities TEXT NOT NULL DEFAULT '';
        CREATE TABLE memory_entities (
            entity_hash TEXT NOT NULL,
            scope_id TEXT NOT NULL,
            memory_rowid INTEGER NOT NULL,
            PRIMARY KEY (entity_hash, scope_id, memory_rowid)
        ) WITHOUT ROWID;
        CREATE INDEX memory_entities_memory ON memory_entities (memory_rowid)
        """,
    )
    # One statement each (their bodies hold semicolons). The hashes are "t" and hex digits.
    db.execute(
        "CREATE TRIGGER memories_entities_insert AFTER INSERT ON memories"
        " WHEN new.terms_entities <> '' BEGIN"
        " INSERT OR IGNORE INTO memory_entities (entity_hash, scope_id, memory_rowid)"
        " SELECT value, new.scope_id, new.rowid FROM json_each('[\"' ||"
        " replace(new.terms_entities, ' ', '\",\"') || '\"]'); END"
    )
    db.execute(
        "CREATE TRIGGER memories_entities_update AFTER UPDATE OF terms_entities, scope_id"
        " ON memories BEGIN DELETE FROM memory_entities WHERE memory_rowid = old.rowid;"
        " INSERT OR IGNORE INTO memory_entities (entity_hash, scope_id, memory_rowid)"
        " SELECT value, new.scope_id, new.rowid FROM json_each('[\"' ||"
        " replace(new.terms_entities, ' ', '\",\"') || '\"]')"
        " WHERE new.terms_entities <> ''; END"
    )
    db.execute(
        "CREATE TRIGGER memories_entities_delete AFTER DELETE ON memories"
        " BEGIN DELETE FROM memory_entities WHERE memory_rowid = old.rowid; END"
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    m001_create_tables,
    m002_api_keys,
    m003_audit_log,
    m004_namespace_settings,
    m005_covering_index_for_filters,
    m006_seal_version,
    m007_jobs,
    m008_history_provenance,
    m009_inference_instructions,
    m010_webhooks,
    m011_entities,
]


def applied(db: sqlite3.Connection) -> list[str]:
    db.execute(
        "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    return [row[0] for row in db.execute("SELECT name FROM migrations ORDER BY rowid")]


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply what is missing; returns the names applied now."""
    done = set(applied(db))
    ran = []
    for migration in MIGRATIONS:
        if migration.__name__ in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while we waited for the lock.
            if db.execute(
                "SELECT 1 FROM migrations WHERE name = ?", (migration.__name__,)
            ).fetchone():
                db.execute("ROLLBACK")
                continue
            migration(db)
            db.execute(
                "INSERT INTO migrations VALUES (?, ?)",
                (migration.__name__, datetime.now(UTC).isoformat()),
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        ran.append(migration.__name__)
    return ran
