"""``Exportable`` for the SQLite stores: raw sealed rows out and in (``memvault migrate``).

Every statement is a constant of this module, picked by a table name of ``DATA_TABLES`` or
``KEY_TABLES`` (anything else is refused before a statement is chosen); values are bound by name.
Export pages by key (``rowid`` for memories and history, which is their insertion order; a job's
time-ordered id), so a page costs the same wherever it starts. A job is copied in the state it
is in (a running job's lease runs out on the target and a worker there takes it again).
Import is insert-if-absent (``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from memvault.storage.base import COUNT_ROWS, Cursor
from memvault.storage.rows import ExportRow, Imported

__all__ = ["count_rows", "export_batch", "import_batch"]

_MEMORY = (
    "id, namespace, scope_id, user_id, agent_id, run_id, actor_id, role, memory_type, hash,"
    " text_box, metadata_box, vector_box, context_box, created_at, updated_at, expires_at,"
    " importance, access_count, last_accessed_at, seal_version, entities_box, terms_entities"
)
_MEMORY_VALUES = (
    ":id, :namespace, :scope_id, :user_id, :agent_id, :run_id, :actor_id, :role, :memory_type,"
    " :hash, :text_box, :metadata_box, :vector_box, :context_box, :created_at, :updated_at,"
    " :expires_at, :importance, :access_count, :last_accessed_at, :seal_version,"
    " :entities_box, :terms_entities"
)
_HISTORY = (
    "id, memory_id, namespace, scope_id, user_id, agent_id, run_id, event, old_box, new_box,"
    " actor_id, role, created_at, seal_version, meta_box"
)
_API_KEYS = (
    "id, namespace, role, name, user_id, secret_hash, created_at, expires_at, revoked_at,"
    " last_used_at"
)
_JOBS = (
    "id, namespace, user_id, agent_id, run_id, scope_id, kind, status, attempts, max_attempts,"
    " lease_owner, lease_until, run_after, payload_box, result_box, error_code, created_at,"
    " updated_at"
)
_JOBS_VALUES = (
    ":id, :namespace, :user_id, :agent_id, :run_id, :scope_id, :kind, :status, :attempts,"
    " :max_attempts, :lease_owner, :lease_until, :run_after, :payload_box, :result_box,"
    " :error_code, :created_at, :updated_at"
)
_WEBHOOKS = "namespace, url, include_text, secret_box, created_at, updated_at"
_OUTBOX = (
    "id, namespace, event, memory_id, user_id, agent_id, run_id, scope_id, text_box, status,"
    " attempts, max_attempts, lease_owner, lease_until, run_after, last_error, last_status,"
    " created_at, updated_at"
)
_WEBHOOKS_VALUES = ":namespace, :url, :include_text, :secret_box, :created_at, :updated_at"
_OUTBOX_VALUES = (
    ":id, :namespace, :event, :memory_id, :user_id, :agent_id, :run_id, :scope_id,"
    " :text_box, :status, :attempts, :max_attempts, :lease_owner, :lease_until,"
    " :run_after, :last_error, :last_status, :created_at, :updated_at"
)
_AUDIT = "seq, at, namespace, key_id, action, user_id, memory_ids, source, outcome, prev_hash, hash"
_MEMORY_SELECT = (
    "SELECT m.rowid AS _k0, m.id, m.namespace, m.scope_id, m.user_id, m.agent_id, m.run_id,"
    " m.actor_id, m.role, m.memory_type, m.hash, m.text_box, m.metadata_box, m.vector_box,"
    " m.context_box, m.created_at, m.updated_at, m.expires_at, m.importance, m.access_count,"
    " m.last_accessed_at, m.seal_version, m.entities_box, m.terms_entities,"
    " f.body AS terms_body, f.context AS terms_context"
    " FROM memories m LEFT JOIN memories_fts f ON f.rowid = m.rowid"
)

# table -> (first page, next page (the key after a cursor), cursor columns). Every page is in
# key order; the columns named _k<n> are the key, dropped from the rows handed out.
_EXPORT: dict[str, tuple[str, str, int]] = {
    "store_meta": (
        "SELECT key AS _k0, key, value FROM store_meta ORDER BY key LIMIT ?",
        "SELECT key AS _k0, key, value FROM store_meta WHERE key > ? ORDER BY key LIMIT ?",
        1,
    ),
    "namespace_settings": (
        "SELECT namespace AS _k0, namespace, secret_policy, default_ttl_seconds,"
        " extraction_instructions, reconciliation_instructions"
        " FROM namespace_settings ORDER BY namespace LIMIT ?",
        "SELECT namespace AS _k0, namespace, secret_policy, default_ttl_seconds,"
        " extraction_instructions, reconciliation_instructions"
        " FROM namespace_settings WHERE namespace > ? ORDER BY namespace LIMIT ?",
        1,
    ),
    "scope_versions": (
        "SELECT scope_id AS _k0, scope_id, version FROM scope_versions ORDER BY scope_id LIMIT ?",
        "SELECT scope_id AS _k0, scope_id, version FROM scope_versions WHERE scope_id > ?"
        " ORDER BY scope_id LIMIT ?",
        1,
    ),
    "api_keys": (
        f"SELECT id AS _k0, {_API_KEYS} FROM api_keys ORDER BY id LIMIT ?",
        f"SELECT id AS _k0, {_API_KEYS} FROM api_keys WHERE id > ? ORDER BY id LIMIT ?",
        1,
    ),
    "memories": (
        f"{_MEMORY_SELECT} ORDER BY m.rowid LIMIT ?",
        f"{_MEMORY_SELECT} WHERE m.rowid > ? ORDER BY m.rowid LIMIT ?",
        1,
    ),
    "history": (
        f"SELECT rowid AS _k0, {_HISTORY} FROM history ORDER BY rowid LIMIT ?",
        f"SELECT rowid AS _k0, {_HISTORY} FROM history WHERE rowid > ? ORDER BY rowid LIMIT ?",
        1,
    ),
    "jobs": (
        f"SELECT id AS _k0, {_JOBS} FROM jobs ORDER BY id LIMIT ?",
        f"SELECT id AS _k0, {_JOBS} FROM jobs WHERE id > ? ORDER BY id LIMIT ?",
        1,
    ),
    "webhooks": (
        f"SELECT namespace AS _k0, {_WEBHOOKS} FROM webhooks ORDER BY namespace LIMIT ?",
        f"SELECT namespace AS _k0, {_WEBHOOKS} FROM webhooks WHERE namespace > ?"
        f" ORDER BY namespace LIMIT ?",
        1,
    ),
    "webhook_outbox": (
        f"SELECT id AS _k0, {_OUTBOX} FROM webhook_outbox ORDER BY id LIMIT ?",
        f"SELECT id AS _k0, {_OUTBOX} FROM webhook_outbox WHERE id > ? ORDER BY id LIMIT ?",
        1,
    ),
    "audit_log": (
        f"SELECT seq AS _k0, {_AUDIT} FROM audit_log ORDER BY seq LIMIT ?",
        f"SELECT seq AS _k0, {_AUDIT} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
        1,
    ),
    "master_checks": (
        "SELECT version AS _k0, version, check_box, created_at FROM master_checks"
        " ORDER BY version LIMIT ?",
        "SELECT version AS _k0, version, check_box, created_at FROM master_checks"
        " WHERE version > ? ORDER BY version LIMIT ?",
        1,
    ),
    "data_keys": (
        "SELECT scope_id AS _k0, scope_id, kek_version, wrapped, created_at, format"
        " FROM data_keys ORDER BY scope_id LIMIT ?",
        "SELECT scope_id AS _k0, scope_id, kek_version, wrapped, created_at, format"
        " FROM data_keys WHERE scope_id > ? ORDER BY scope_id LIMIT ?",
        1,
    ),
    "key_generations": (
        "SELECT namespace AS _k0, kind AS _k1, owner AS _k2, namespace, kind, owner, current,"
        " previous FROM key_generations ORDER BY namespace, kind, owner LIMIT ?",
        "SELECT namespace AS _k0, kind AS _k1, owner AS _k2, namespace, kind, owner, current,"
        " previous FROM key_generations WHERE (namespace, kind, owner) > (?, ?, ?)"
        " ORDER BY namespace, kind, owner LIMIT ?",
        3,
    ),
    "scope_generations": (
        "SELECT base AS _k0, base, current, previous FROM scope_generations ORDER BY base LIMIT ?",
        "SELECT base AS _k0, base, current, previous FROM scope_generations WHERE base > ?"
        " ORDER BY base LIMIT ?",
        1,
    ),
}

_INSERT: dict[str, str] = {
    "store_meta": "INSERT INTO store_meta (key, value) VALUES (:key, :value)"
    " ON CONFLICT DO NOTHING",
    "namespace_settings": "INSERT INTO namespace_settings"
    " (namespace, secret_policy, default_ttl_seconds, extraction_instructions,"
    " reconciliation_instructions) VALUES (:namespace, :secret_policy, :default_ttl_seconds,"
    " :extraction_instructions, :reconciliation_instructions) ON CONFLICT DO NOTHING",
    # Versions only grow: the larger one holds, so no cache anywhere takes a later state for one
    # it has seen.
    "scope_versions": "INSERT INTO scope_versions (scope_id, version) VALUES (:scope_id, :version)"
    " ON CONFLICT (scope_id) DO UPDATE SET version = max(version, excluded.version)",
    "api_keys": "INSERT INTO api_keys (id, namespace, role, name, user_id, secret_hash,"
    " created_at, expires_at, revoked_at, last_used_at) VALUES (:id, :namespace, :role, :name,"
    " :user_id, :secret_hash, :created_at, :expires_at, :revoked_at, :last_used_at)"
    " ON CONFLICT DO NOTHING",
    "memories": f"INSERT INTO memories ({_MEMORY}) VALUES ({_MEMORY_VALUES})"
    " ON CONFLICT DO NOTHING",
    # seq orders a memory's events: the next one of that memory, as add_history numbers them.
    "history": f"INSERT INTO history (seq, {_HISTORY}) VALUES ((SELECT coalesce(max(seq), 0) + 1"
    " FROM history WHERE namespace = :namespace AND memory_id = :memory_id), :id, :memory_id,"
    " :namespace, :scope_id, :user_id, :agent_id, :run_id, :event, :old_box, :new_box,"
    " :actor_id, :role, :created_at, :seal_version, :meta_box) ON CONFLICT DO NOTHING",
    "jobs": f"INSERT INTO jobs ({_JOBS}) VALUES ({_JOBS_VALUES}) ON CONFLICT DO NOTHING",
    "webhooks": f"INSERT INTO webhooks ({_WEBHOOKS}) VALUES ({_WEBHOOKS_VALUES})"
    " ON CONFLICT DO NOTHING",
    "webhook_outbox": f"INSERT INTO webhook_outbox ({_OUTBOX}) VALUES ({_OUTBOX_VALUES})"
    " ON CONFLICT DO NOTHING",
    "audit_log": f"INSERT INTO audit_log ({_AUDIT}) VALUES (:seq, :at, :namespace, :key_id,"
    " :action, :user_id, :memory_ids, :source, :outcome, :prev_hash, :hash)"
    " ON CONFLICT DO NOTHING",
    "master_checks": "INSERT INTO master_checks (version, check_box, created_at)"
    " VALUES (:version, :check_box, :created_at) ON CONFLICT DO NOTHING",
    "data_keys": "INSERT INTO data_keys (scope_id, kek_version, wrapped, created_at, format)"
    " VALUES (:scope_id, :kek_version, :wrapped, :created_at, :format) ON CONFLICT DO NOTHING",
    "key_generations": "INSERT INTO key_generations (namespace, kind, owner, current, previous)"
    " VALUES (:namespace, :kind, :owner, :current, :previous) ON CONFLICT DO NOTHING",
    "scope_generations": "INSERT INTO scope_generations (base, current, previous)"
    " VALUES (:base, :current, :previous) ON CONFLICT DO NOTHING",
}

_EXISTING: dict[str, str] = {
    "store_meta": "SELECT key, value FROM store_meta WHERE key = :key",
    "namespace_settings": "SELECT namespace, secret_policy, default_ttl_seconds,"
    " extraction_instructions, reconciliation_instructions"
    " FROM namespace_settings WHERE namespace = :namespace",
    "scope_versions": "SELECT scope_id, version FROM scope_versions WHERE scope_id = :scope_id",
    "api_keys": f"SELECT {_API_KEYS} FROM api_keys WHERE id = :id",
    "memories": f"SELECT {_MEMORY} FROM memories WHERE id = :id",
    "history": f"SELECT {_HISTORY} FROM history WHERE id = :id",
    "jobs": f"SELECT {_JOBS} FROM jobs WHERE id = :id",
    "webhooks": f"SELECT {_WEBHOOKS} FROM webhooks WHERE namespace = :namespace",
    "webhook_outbox": f"SELECT {_OUTBOX} FROM webhook_outbox WHERE id = :id",
    "audit_log": f"SELECT {_AUDIT} FROM audit_log WHERE seq = :seq",
    "master_checks": "SELECT version, check_box, created_at FROM master_checks"
    " WHERE version = :version",
    "data_keys": "SELECT scope_id, kek_version, wrapped, created_at, format FROM data_keys"
    " WHERE scope_id = :scope_id",
    "key_generations": "SELECT namespace, kind, owner, current, previous FROM key_generations"
    " WHERE namespace = :namespace AND kind = :kind AND owner = :owner",
    "scope_generations": "SELECT base, current, previous FROM scope_generations WHERE base = :base",
}


def _as_dict(cursor: sqlite3.Cursor, row: Sequence[Any]) -> ExportRow:
    names = [column[0] for column in cursor.description]
    return {
        name: bytes(value) if isinstance(value, memoryview) else value
        for name, value in zip(names, row, strict=True)
    }


def export_batch(
    db: sqlite3.Connection, table: str, after: Cursor, limit: int
) -> tuple[list[ExportRow], Cursor]:
    first, following, width = _EXPORT[table]
    if after is None:
        cursor = db.execute(first, (limit,))
    else:
        cursor = db.execute(following, (*after[:width], limit))
    rows = [_as_dict(cursor, row) for row in cursor.fetchall()]
    if not rows:
        return [], after
    last = rows[-1]
    position = tuple(last[f"_k{i}"] for i in range(width))
    for row in rows:
        for i in range(width):
            del row[f"_k{i}"]
    return rows, position


def import_batch(db: sqlite3.Connection, table: str, rows: Sequence[ExportRow]) -> Imported:
    """Inside the caller's transaction."""
    done = Imported()
    for row in rows:
        cursor = db.execute(_INSERT[table], row)
        if cursor.rowcount == 1:
            done.inserted += 1
            if table == "memories":
                db.execute(
                    "INSERT INTO memories_fts (rowid, body, context) VALUES (?, ?, ?)",
                    (cursor.lastrowid, row["terms_body"], row["terms_context"]),
                )
            continue
        found = db.execute(_EXISTING[table], row)
        held = found.fetchone()
        done.present.append((row, None if held is None else _as_dict(found, held)))
    return done


def count_rows(db: sqlite3.Connection, table: str) -> int:
    return int(db.execute(COUNT_ROWS[table]).fetchone()[0])
