"""``Exportable`` for the Postgres stores: raw sealed rows out and in (``memvault migrate``).

Every statement is a constant of this module, picked by a table name of ``DATA_TABLES`` or
``KEY_TABLES`` (anything else is refused before a statement is chosen); values are bound by name.
Export pages by key (``rowid`` for memories, ``seq`` for history: their insertion order; a job's
time-ordered id), so a page costs the same wherever it starts. A job is copied in the state it
is in (a running job's lease runs out on the target and a worker there takes it again).
Import is insert-if-absent (``ON CONFLICT DO NOTHING``); a memory or an event gets the next
identity, so the order of the source is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from memvault.storage.base import COUNT_ROWS, Cursor
from memvault.storage.rows import ExportRow, Imported

__all__ = ["count_rows", "export_batch", "import_batch"]

Conn = psycopg.Connection[tuple[Any, ...]]

_MEMORY = (
    "id, namespace, scope_id, user_id, agent_id, run_id, actor_id, role, memory_type, hash,"
    " text_box, metadata_box, vector_box, context_box, created_at, updated_at, expires_at,"
    " importance, access_count, last_accessed_at, seal_version, entities_box, terms_entities"
)
_MEMORY_VALUES = (
    "%(id)s, %(namespace)s, %(scope_id)s, %(user_id)s, %(agent_id)s, %(run_id)s, %(actor_id)s,"
    " %(role)s, %(memory_type)s, %(hash)s, %(text_box)s, %(metadata_box)s, %(vector_box)s,"
    " %(context_box)s, %(created_at)s, %(updated_at)s,"
    " %(expires_at)s, %(importance)s, %(access_count)s, %(last_accessed_at)s, %(seal_version)s,"
    " %(entities_box)s, %(terms_entities)s"
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
    "%(id)s, %(namespace)s, %(user_id)s, %(agent_id)s, %(run_id)s, %(scope_id)s, %(kind)s,"
    " %(status)s, %(attempts)s, %(max_attempts)s, %(lease_owner)s, %(lease_until)s,"
    " %(run_after)s, %(payload_box)s, %(result_box)s, %(error_code)s, %(created_at)s,"
    " %(updated_at)s"
)
_WEBHOOKS = "namespace, url, include_text, secret_box, created_at, updated_at"
_OUTBOX = (
    "id, namespace, event, memory_id, user_id, agent_id, run_id, scope_id, text_box, status,"
    " attempts, max_attempts, lease_owner, lease_until, run_after, last_error, last_status,"
    " created_at, updated_at"
)
_WEBHOOKS_VALUES = (
    "%(namespace)s, %(url)s, %(include_text)s::int::boolean, %(secret_box)s,"
    " %(created_at)s, %(updated_at)s"
)
_OUTBOX_VALUES = (
    "%(id)s, %(namespace)s, %(event)s, %(memory_id)s, %(user_id)s, %(agent_id)s,"
    " %(run_id)s, %(scope_id)s, %(text_box)s, %(status)s, %(attempts)s,"
    " %(max_attempts)s, %(lease_owner)s, %(lease_until)s, %(run_after)s,"
    " %(last_error)s, %(last_status)s, %(created_at)s, %(updated_at)s"
)
_AUDIT = "seq, at, namespace, key_id, action, user_id, memory_ids, source, outcome, prev_hash, hash"
_MEMORY_SELECT = (
    "SELECT m.rowid AS _k0, m.id, m.namespace, m.scope_id, m.user_id, m.agent_id, m.run_id,"
    " m.actor_id, m.role, m.memory_type, m.hash, m.text_box, m.metadata_box, m.vector_box,"
    " m.context_box, m.created_at, m.updated_at, m.expires_at, m.importance, m.access_count,"
    " m.last_accessed_at, m.seal_version, m.entities_box, m.terms_entities, m.terms_body,"
    " m.terms_context FROM memories m"
)

# table -> (first page, next page (the key after a cursor), cursor columns). Every page is in
# key order; the columns named _k<n> are the key, dropped from the rows handed out.
_EXPORT: dict[str, tuple[str, str, int]] = {
    "store_meta": (
        "SELECT key AS _k0, key, value FROM store_meta ORDER BY key LIMIT %s",
        "SELECT key AS _k0, key, value FROM store_meta WHERE key > %s ORDER BY key LIMIT %s",
        1,
    ),
    "namespace_settings": (
        "SELECT namespace AS _k0, namespace, secret_policy, default_ttl_seconds,"
        " extraction_instructions, reconciliation_instructions"
        " FROM namespace_settings ORDER BY namespace LIMIT %s",
        "SELECT namespace AS _k0, namespace, secret_policy, default_ttl_seconds,"
        " extraction_instructions, reconciliation_instructions"
        " FROM namespace_settings WHERE namespace > %s ORDER BY namespace LIMIT %s",
        1,
    ),
    "scope_versions": (
        "SELECT scope_id AS _k0, scope_id, version FROM scope_versions ORDER BY scope_id LIMIT %s",
        "SELECT scope_id AS _k0, scope_id, version FROM scope_versions WHERE scope_id > %s"
        " ORDER BY scope_id LIMIT %s",
        1,
    ),
    "api_keys": (
        f"SELECT id AS _k0, {_API_KEYS} FROM api_keys ORDER BY id LIMIT %s",
        f"SELECT id AS _k0, {_API_KEYS} FROM api_keys WHERE id > %s ORDER BY id LIMIT %s",
        1,
    ),
    "memories": (
        f"{_MEMORY_SELECT} ORDER BY m.rowid LIMIT %s",
        f"{_MEMORY_SELECT} WHERE m.rowid > %s ORDER BY m.rowid LIMIT %s",
        1,
    ),
    "history": (
        f"SELECT seq AS _k0, {_HISTORY} FROM history ORDER BY seq LIMIT %s",
        f"SELECT seq AS _k0, {_HISTORY} FROM history WHERE seq > %s ORDER BY seq LIMIT %s",
        1,
    ),
    "jobs": (
        f"SELECT id AS _k0, {_JOBS} FROM jobs ORDER BY id LIMIT %s",
        f"SELECT id AS _k0, {_JOBS} FROM jobs WHERE id > %s ORDER BY id LIMIT %s",
        1,
    ),
    "webhooks": (
        f"SELECT namespace AS _k0, {_WEBHOOKS} FROM webhooks ORDER BY namespace LIMIT %s",
        f"SELECT namespace AS _k0, {_WEBHOOKS} FROM webhooks WHERE namespace > %s"
        f" ORDER BY namespace LIMIT %s",
        1,
    ),
    "webhook_outbox": (
        f"SELECT id AS _k0, {_OUTBOX} FROM webhook_outbox ORDER BY id LIMIT %s",
        f"SELECT id AS _k0, {_OUTBOX} FROM webhook_outbox WHERE id > %s ORDER BY id LIMIT %s",
        1,
    ),
    "audit_log": (
        f"SELECT seq AS _k0, {_AUDIT} FROM audit_log ORDER BY seq LIMIT %s",
        f"SELECT seq AS _k0, {_AUDIT} FROM audit_log WHERE seq > %s ORDER BY seq LIMIT %s",
        1,
    ),
    "master_checks": (
        "SELECT version AS _k0, version, check_box, created_at FROM master_checks"
        " ORDER BY version LIMIT %s",
        "SELECT version AS _k0, version, check_box, created_at FROM master_checks"
        " WHERE version > %s ORDER BY version LIMIT %s",
        1,
    ),
    "data_keys": (
        "SELECT scope_id AS _k0, scope_id, kek_version, wrapped, created_at, format"
        " FROM data_keys ORDER BY scope_id LIMIT %s",
        "SELECT scope_id AS _k0, scope_id, kek_version, wrapped, created_at, format"
        " FROM data_keys WHERE scope_id > %s ORDER BY scope_id LIMIT %s",
        1,
    ),
    "key_generations": (
        "SELECT namespace AS _k0, kind AS _k1, owner AS _k2, namespace, kind, owner, current,"
        " previous FROM key_generations ORDER BY namespace, kind, owner LIMIT %s",
        "SELECT namespace AS _k0, kind AS _k1, owner AS _k2, namespace, kind, owner, current,"
        " previous FROM key_generations WHERE (namespace, kind, owner) > (%s, %s, %s)"
        " ORDER BY namespace, kind, owner LIMIT %s",
        3,
    ),
    "scope_generations": (
        "SELECT base AS _k0, base, current, previous FROM scope_generations ORDER BY base LIMIT %s",
        "SELECT base AS _k0, base, current, previous FROM scope_generations WHERE base > %s"
        " ORDER BY base LIMIT %s",
        1,
    ),
}

_INSERT: dict[str, str] = {
    "store_meta": "INSERT INTO store_meta (key, value) VALUES (%(key)s, %(value)s)"
    " ON CONFLICT DO NOTHING",
    "namespace_settings": "INSERT INTO namespace_settings"
    " (namespace, secret_policy, default_ttl_seconds, extraction_instructions,"
    " reconciliation_instructions) VALUES (%(namespace)s, %(secret_policy)s,"
    " %(default_ttl_seconds)s, %(extraction_instructions)s, %(reconciliation_instructions)s)"
    " ON CONFLICT DO NOTHING",
    # Versions only grow: the larger one holds, so no cache anywhere takes a later state for one
    # it has seen.
    "scope_versions": "INSERT INTO scope_versions (scope_id, version)"
    " VALUES (%(scope_id)s, %(version)s) ON CONFLICT (scope_id)"
    " DO UPDATE SET version = greatest(scope_versions.version, excluded.version)",
    "api_keys": "INSERT INTO api_keys (id, namespace, role, name, user_id, secret_hash,"
    " created_at, expires_at, revoked_at, last_used_at) VALUES (%(id)s, %(namespace)s,"
    " %(role)s, %(name)s, %(user_id)s, %(secret_hash)s, %(created_at)s, %(expires_at)s,"
    " %(revoked_at)s, %(last_used_at)s)"
    " ON CONFLICT DO NOTHING",
    "memories": f"INSERT INTO memories ({_MEMORY}, terms_body, terms_context) VALUES"
    f" ({_MEMORY_VALUES}, %(terms_body)s, %(terms_context)s) ON CONFLICT DO NOTHING",
    # seq is an identity: the events keep the order they are imported in (the source's).
    "history": f"INSERT INTO history ({_HISTORY}) VALUES (%(id)s, %(memory_id)s, %(namespace)s,"
    " %(scope_id)s, %(user_id)s, %(agent_id)s, %(run_id)s, %(event)s, %(old_box)s,"
    " %(new_box)s, %(actor_id)s, %(role)s, %(created_at)s, %(seal_version)s, %(meta_box)s)"
    " ON CONFLICT DO NOTHING",
    "jobs": f"INSERT INTO jobs ({_JOBS}) VALUES ({_JOBS_VALUES}) ON CONFLICT DO NOTHING",
    "webhooks": f"INSERT INTO webhooks ({_WEBHOOKS}) VALUES ({_WEBHOOKS_VALUES})"
    " ON CONFLICT DO NOTHING",
    "webhook_outbox": f"INSERT INTO webhook_outbox ({_OUTBOX}) VALUES ({_OUTBOX_VALUES})"
    " ON CONFLICT DO NOTHING",
    "audit_log": f"INSERT INTO audit_log ({_AUDIT}) VALUES (%(seq)s, %(at)s, %(namespace)s,"
    " %(key_id)s, %(action)s, %(user_id)s, %(memory_ids)s, %(source)s, %(outcome)s,"
    " %(prev_hash)s, %(hash)s)"
    " ON CONFLICT DO NOTHING",
    "master_checks": "INSERT INTO master_checks (version, check_box, created_at)"
    " VALUES (%(version)s, %(check_box)s, %(created_at)s) ON CONFLICT DO NOTHING",
    "data_keys": "INSERT INTO data_keys (scope_id, kek_version, wrapped, created_at, format)"
    " VALUES (%(scope_id)s, %(kek_version)s, %(wrapped)s, %(created_at)s, %(format)s)"
    " ON CONFLICT DO NOTHING",
    "key_generations": "INSERT INTO key_generations (namespace, kind, owner, current, previous)"
    " VALUES (%(namespace)s, %(kind)s, %(owner)s, %(current)s, %(previous)s)"
    " ON CONFLICT DO NOTHING",
    "scope_generations": "INSERT INTO scope_generations (base, current, previous)"
    " VALUES (%(base)s, %(current)s, %(previous)s) ON CONFLICT DO NOTHING",
}

_EXISTING: dict[str, str] = {
    "store_meta": "SELECT key, value FROM store_meta WHERE key = %(key)s",
    "namespace_settings": "SELECT namespace, secret_policy, default_ttl_seconds,"
    " extraction_instructions, reconciliation_instructions"
    " FROM namespace_settings WHERE namespace = %(namespace)s",
    "scope_versions": "SELECT scope_id, version FROM scope_versions WHERE scope_id = %(scope_id)s",
    "api_keys": f"SELECT {_API_KEYS} FROM api_keys WHERE id = %(id)s",
    "memories": f"SELECT {_MEMORY} FROM memories WHERE id = %(id)s",
    "history": f"SELECT {_HISTORY} FROM history WHERE id = %(id)s",
    "jobs": f"SELECT {_JOBS} FROM jobs WHERE id = %(id)s",
    "webhooks": f"SELECT {_WEBHOOKS} FROM webhooks WHERE namespace = %(namespace)s",
    "webhook_outbox": f"SELECT {_OUTBOX} FROM webhook_outbox WHERE id = %(id)s",
    "audit_log": f"SELECT {_AUDIT} FROM audit_log WHERE seq = %(seq)s",
    "master_checks": "SELECT version, check_box, created_at FROM master_checks"
    " WHERE version = %(version)s",
    "data_keys": "SELECT scope_id, kek_version, wrapped, created_at, format FROM data_keys"
    " WHERE scope_id = %(scope_id)s",
    "key_generations": "SELECT namespace, kind, owner, current, previous FROM key_generations"
    " WHERE namespace = %(namespace)s AND kind = %(kind)s AND owner = %(owner)s",
    "scope_generations": "SELECT base, current, previous FROM scope_generations"
    " WHERE base = %(base)s",
}


def _as_dict(cursor: psycopg.Cursor[tuple[Any, ...]], row: Sequence[Any]) -> ExportRow:
    names = [column.name for column in cursor.description or ()]
    return {
        name: bytes(value) if isinstance(value, memoryview) else value
        for name, value in zip(names, row, strict=True)
    }


def export_batch(
    conn: Conn, table: str, after: Cursor, limit: int
) -> tuple[list[ExportRow], Cursor]:
    first, following, width = _EXPORT[table]
    if after is None:
        cursor = conn.execute(first, (limit,))
    else:
        cursor = conn.execute(following, (*after[:width], limit))
    rows = [_as_dict(cursor, row) for row in cursor.fetchall()]
    if not rows:
        return [], after
    last = rows[-1]
    position = tuple(last[f"_k{i}"] for i in range(width))
    for row in rows:
        for i in range(width):
            del row[f"_k{i}"]
    return rows, position


def import_batch(conn: Conn, table: str, rows: Sequence[ExportRow]) -> Imported:
    """Inside the caller's transaction."""
    done = Imported()
    for row in rows:
        cursor = conn.execute(_INSERT[table], row)
        if cursor.rowcount == 1:
            done.inserted += 1
            continue
        found = conn.execute(_EXISTING[table], row)
        held = found.fetchone()
        done.present.append((row, None if held is None else _as_dict(found, held)))
    return done


def count_rows(conn: Conn, table: str) -> int:
    found = conn.execute(COUNT_ROWS[table]).fetchone()
    return int(found[0]) if found else 0
