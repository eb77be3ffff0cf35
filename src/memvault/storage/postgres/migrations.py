"""Named migrations of the Postgres data schema, applied in order, each in its own transaction.

The same rule as ``storage/migrations.py``: a released migration is never edited; a change is a
new function appended to ``MIGRATIONS``, and applied names are recorded in ``migrations``.

Nodes that start together do not race: :func:`migrate` holds a session-level advisory lock (on
``hashtextextended('memvault.migrate.<schema>', 0)``) while it creates the schema and applies
what is missing, and releases it after. The schema name reaches SQL only as an identifier
composed by ``psycopg.sql.Identifier``.

Column types: sealed fields are ``bytea``; timestamps are ``text`` holding ISO-8601 strings,
compared as text exactly as in SQLite; ``rowid`` is an identity (insertion order, newest first);
``history.seq`` is one global identity, so concurrent writers never race on ``max(seq) + 1`` and
a memory's events are ordered by it. The keyword index entry of a memory (keyed token hashes,
never words) is two text columns of ``memories`` (``terms_body``, ``terms_context``): BM25 runs
in process over a scope's entries (``scope_vectors``), so Postgres needs no full-text index.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from psycopg import sql

__all__ = ["MIGRATIONS", "applied", "migrate"]

Migration = Callable[[psycopg.Connection[tuple[object, ...]]], None]


def _run(conn: psycopg.Connection[tuple[object, ...]], script: str) -> None:
    for statement in script.split(";\n"):
        if statement.strip():
            conn.execute(statement.encode())


def m001_create_tables(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    _run(
        conn,
        """
        CREATE TABLE store_meta (key text PRIMARY KEY, value text NOT NULL);
        CREATE TABLE memories (
            rowid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL UNIQUE,
            namespace text NOT NULL,
            scope_id text NOT NULL,
            user_id text, agent_id text, run_id text, actor_id text, role text,
            memory_type text NOT NULL,
            hash text NOT NULL,
            text_box bytea NOT NULL,
            metadata_box bytea NOT NULL,
            vector_box bytea NOT NULL,
            context_box bytea NOT NULL,
            created_at text COLLATE "C" NOT NULL,
            updated_at text COLLATE "C" NOT NULL,
            expires_at text COLLATE "C",
            importance double precision,
            access_count bigint NOT NULL DEFAULT 0,
            last_accessed_at text COLLATE "C",
            seal_version integer NOT NULL DEFAULT 2,
            terms_body text NOT NULL DEFAULT '',
            terms_context text NOT NULL DEFAULT ''
        );
        CREATE UNIQUE INDEX memories_dedup ON memories (
            namespace, coalesce(user_id, ''), coalesce(agent_id, ''), coalesce(run_id, ''), hash);
        CREATE INDEX memories_user ON memories (namespace, user_id, rowid);
        CREATE INDEX memories_agent ON memories (namespace, agent_id, rowid);
        CREATE INDEX memories_run ON memories (namespace, run_id, rowid);
        CREATE INDEX memories_scope ON memories (scope_id, rowid);
        CREATE INDEX memories_expiry ON memories (expires_at) WHERE expires_at IS NOT NULL;
        CREATE INDEX memories_legacy_seal ON memories (rowid) WHERE seal_version = 1;
        CREATE TABLE history (
            id text COLLATE "C" PRIMARY KEY,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            memory_id text NOT NULL,
            namespace text NOT NULL,
            scope_id text NOT NULL,
            user_id text, agent_id text, run_id text,
            event text NOT NULL,
            old_box bytea,
            new_box bytea,
            actor_id text,
            role text,
            created_at text COLLATE "C" NOT NULL,
            seal_version integer NOT NULL DEFAULT 2
        );
        CREATE INDEX history_memory ON history (namespace, memory_id, seq);
        CREATE INDEX history_user ON history (namespace, user_id);
        CREATE INDEX history_scope ON history (scope_id);
        CREATE INDEX history_legacy_seal ON history (id) WHERE seal_version = 1;
        CREATE TABLE scope_versions (scope_id text PRIMARY KEY, version bigint NOT NULL);
        CREATE TABLE api_keys (
            id text PRIMARY KEY,
            namespace text NOT NULL,
            role text NOT NULL,
            name text,
            user_id text,
            secret_hash text NOT NULL,
            created_at text COLLATE "C" NOT NULL,
            expires_at text COLLATE "C",
            revoked_at text COLLATE "C",
            last_used_at text COLLATE "C"
        );
        CREATE INDEX api_keys_namespace ON api_keys (namespace);
        CREATE TABLE audit_log (
            seq bigint PRIMARY KEY,
            at text COLLATE "C" NOT NULL,
            namespace text,
            key_id text,
            action text NOT NULL,
            user_id text,
            memory_ids text NOT NULL,
            source text,
            outcome text NOT NULL,
            prev_hash text NOT NULL,
            hash text NOT NULL
        );
        CREATE INDEX audit_log_namespace ON audit_log (namespace, seq);
        CREATE TABLE namespace_settings (
            namespace text PRIMARY KEY,
            secret_policy text NOT NULL DEFAULT 'redact',
            default_ttl_seconds double precision
        )
        """,
    )


def m002_jobs(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """The durable job queue (``core/jobs.py``); claims use ``FOR UPDATE SKIP LOCKED`` over
    ``jobs_claim``."""
    _run(
        conn,
        """
        CREATE TABLE jobs (
            id text COLLATE "C" PRIMARY KEY,
            namespace text NOT NULL,
            user_id text, agent_id text, run_id text,
            scope_id text NOT NULL,
            kind text NOT NULL,
            status text NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            max_attempts integer NOT NULL,
            lease_owner text,
            lease_until text COLLATE "C",
            run_after text COLLATE "C" NOT NULL,
            payload_box bytea NOT NULL,
            result_box bytea,
            error_code text,
            created_at text COLLATE "C" NOT NULL,
            updated_at text COLLATE "C" NOT NULL
        );
        CREATE INDEX jobs_claim ON jobs (status, run_after, id);
        CREATE INDEX jobs_namespace ON jobs (namespace, user_id, id)
        """,
    )


def m003_history_provenance(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """A sealed field per history event (``meta_box``): where an inferred change came from
    (job, source message hashes, actor, model, prompt version). NULL for other events."""
    _run(conn, "ALTER TABLE history ADD COLUMN meta_box bytea")


def m004_inference_instructions(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Per-namespace instructions added to the inference prompts (operator configuration, like
    the secret policy; NULL: none)."""
    _run(
        conn,
        "ALTER TABLE namespace_settings ADD COLUMN extraction_instructions text,"
        " ADD COLUMN reconciliation_instructions text",
    )


def m005_webhooks(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Each namespace's webhook (its secret sealed) and the outbox of its events
    (``core/webhooks.py``), written in the transaction of the change an event reports; claims
    use ``FOR UPDATE SKIP LOCKED`` over ``webhook_outbox_claim``."""
    _run(
        conn,
        """
        CREATE TABLE webhooks (
            namespace text PRIMARY KEY,
            url text NOT NULL,
            include_text boolean NOT NULL,
            secret_box bytea NOT NULL,
            created_at text COLLATE "C" NOT NULL,
            updated_at text COLLATE "C" NOT NULL
        );
        CREATE TABLE webhook_outbox (
            id text COLLATE "C" PRIMARY KEY,
            namespace text NOT NULL,
            event text NOT NULL,
            memory_id text,
            user_id text, agent_id text, run_id text,
            scope_id text,
            text_box bytea,
            status text NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            max_attempts integer NOT NULL,
            lease_owner text,
            lease_until text COLLATE "C",
            run_after text COLLATE "C" NOT NULL,
            last_error text,
            last_status integer,
            created_at text COLLATE "C" NOT NULL,
            updated_at text COLLATE "C" NOT NULL
        );
        CREATE INDEX webhook_outbox_claim ON webhook_outbox (status, run_after, id);
        CREATE INDEX webhook_outbox_namespace ON webhook_outbox (namespace, user_id, id)
        """,
    )


def m006_inline_sealed_rows(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Keep a memory's row in its heap page: a row with a 384-dimension vector is about 2.1 kB,
    just over TOAST's default 2 kB target, so every insert tried to compress its sealed boxes
    (ciphertext does not compress) and then moved the vector out of line (a TOAST row and a
    TOAST index entry more per memory). Sealed boxes are stored uncompressed (``EXTERNAL``)
    and rows stay inline up to 4 kB. Table settings only: no row is rewritten."""
    _run(
        conn,
        """
        ALTER TABLE memories SET (toast_tuple_target = 4080);
        ALTER TABLE memories ALTER COLUMN text_box SET STORAGE EXTERNAL,
            ALTER COLUMN metadata_box SET STORAGE EXTERNAL,
            ALTER COLUMN vector_box SET STORAGE EXTERNAL,
            ALTER COLUMN context_box SET STORAGE EXTERNAL;
        ALTER TABLE history ALTER COLUMN old_box SET STORAGE EXTERNAL,
            ALTER COLUMN new_box SET STORAGE EXTERNAL,
            ALTER COLUMN meta_box SET STORAGE EXTERNAL
        """,
    )


def m007_entities(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Entity links (``core/entities.py``): a memory's entities sealed on its row
    (``entities_box``, NULL until extracted) with their keyed hashes (``terms_entities``,
    space-separated), and ``memory_entities``, the index from a hash to the memories that name
    it (with the row's key scope, so that counts and links read the index alone): a trigger
    keeps it equal to ``terms_entities`` on insert and rewrite, and the foreign key deletes its
    rows with their memory's, whatever path deletes it."""
    _run(
        conn,
        """
        ALTER TABLE memories ADD COLUMN entities_box bytea,
            ADD COLUMN terms_entities text NOT NULL DEFAULT '';
        ALTER TABLE memories ALTER COLUMN entities_box SET STORAGE EXTERNAL;
        CREATE TABLE memory_entities (
            entity_hash text COLLATE "C" NOT NULL,
            scope_id text COLLATE "C" NOT NULL,
            memory_rowid bigint NOT NULL REFERENCES memories (rowid) ON DELETE CASCADE,
            PRIMARY KEY (entity_hash, scope_id, memory_rowid)
        );
        CREATE INDEX memory_entities_memory ON memory_entities (memory_rowid)
        """,
    )
    # One statement (its body holds semicolons); the search path is the schema's, fixed now.
    conn.execute(
        "CREATE FUNCTION memories_entities_sync() RETURNS trigger LANGUAGE plpgsql"
        " SET search_path FROM CURRENT AS $$ BEGIN"
        " IF TG_OP = 'UPDATE' THEN DELETE FROM memory_entities WHERE memory_rowid = OLD.rowid;"
        " END IF;"
        " INSERT INTO memory_entities (entity_hash, scope_id, memory_rowid)"
        " SELECT DISTINCT h, NEW.scope_id, NEW.rowid"
        " FROM unnest(string_to_array(NEW.terms_entities, ' ')) AS h WHERE h <> '';"
        " RETURN NULL; END $$"
    )
    conn.execute(
        "CREATE TRIGGER memories_entities AFTER INSERT OR UPDATE OF terms_entities, scope_id"
        " ON memories"
        " FOR EACH ROW EXECUTE FUNCTION memories_entities_sync()"
    )


MIGRATIONS: list[Migration] = [
    m001_create_tables,
    m002_jobs,
    m003_history_provenance,
    m004_inference_instructions,
    m005_webhooks,
    m006_inline_sealed_rows,
    m007_entities,
]


def _lock_key(schema: str) -> str:
    return f"memvault.migrate.{schema}"


def applied(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Names applied so far, in order (the search path names the schema)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS migrations (seq bigint GENERATED ALWAYS AS IDENTITY,"
        " name text PRIMARY KEY, applied_at text NOT NULL)"
    )
    return [str(row[0]) for row in conn.execute("SELECT name FROM migrations ORDER BY seq")]


def migrate(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> list[str]:
    """Create ``schema`` if missing and apply what is missing; the names applied now.

    ``conn`` is an autocommit connection; its search path is set to ``schema`` on return."""
    key = _lock_key(schema)
    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
    try:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        done = set(applied(conn))
        ran = []
        for migration in MIGRATIONS:
            if migration.__name__ in done:
                continue
            with conn.transaction():
                migration(conn)
                conn.execute(
                    "INSERT INTO migrations (name, applied_at) VALUES (%s, %s)",
                    (migration.__name__, datetime.now(UTC).isoformat()),
                )
            ran.append(migration.__name__)
        return ran
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
