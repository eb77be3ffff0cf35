"""A tamper-evident audit log: append-only, each entry chained to the one before by an HMAC.

Each entry records who (API key id), what (action, memory ids, user_id, namespace), when, from
where (client address) and the outcome; never memory text. ``hash`` is HMAC-SHA256, under a key
sealed in ``keys.db``, of the previous entry's hash and this entry's canonical JSON: someone who
can write the database but does not hold the key store cannot edit, delete or reorder entries
without ``verify`` finding the first broken link. Cutting entries off the end is only visible
against a copy of the head kept elsewhere (the optional JSONL sink, a SIEM).

Requests queue their entries and one thread appends them in batches, so an audited read does not
wait for a disk sync; a crash can lose the last moment's entries, never reorder or alter others.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from memvault.clock import now_iso
from memvault.errors import MemvaultError
from memvault.storage.base import AuditRecords
from memvault.storage.files import open_private
from memvault.storage.rows import AuditRow

__all__ = ["AuditEntry", "AuditLog", "Verification"]

log = logging.getLogger("memvault.audit")
GENESIS = "0" * 64
BATCH_SECONDS = 0.2  # the longest an entry waits in the queue while others keep coming


@dataclass(frozen=True, slots=True)
class AuditEntry:
    action: str
    outcome: str
    namespace: str | None = None
    key_id: str | None = None
    user_id: str | None = None
    memory_ids: tuple[str, ...] = ()
    source: str | None = None
    at: str = field(default_factory=now_iso)

    def canonical(self) -> bytes:
        body = asdict(self)
        body["memory_ids"] = list(self.memory_ids)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str | None = None


class AuditLog:
    def __init__(self, store: AuditRecords, key: bytes, sink: Path | None = None) -> None:
        self._store = store
        self._key = key
        self._sink = sink
        self._queue: queue.Queue[AuditEntry | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _chain(self, previous: str, entry: AuditEntry) -> str:
        return hmac.new(
            self._key, previous.encode() + entry.canonical(), hashlib.sha256
        ).hexdigest()

    def record(self, entry: AuditEntry) -> None:
        """Queue an entry; it is appended by the writer thread within about a second."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="memvault-audit", daemon=True
                )
                self._thread.start()
        self._queue.put(entry)

    def append(self, entries: list[AuditEntry]) -> None:
        """Append now, in order, in one transaction (the chain continues from the stored head)."""
        if not entries:
            return

        def chained(seq: int, previous: str) -> list[AuditRow]:
            previous = previous or GENESIS
            rows = []
            for entry in entries:
                seq += 1
                digest = self._chain(previous, entry)
                rows.append(
                    AuditRow(
                        seq,
                        entry.at,
                        entry.namespace,
                        entry.key_id,
                        entry.action,
                        entry.user_id,
                        json.dumps(list(entry.memory_ids)),
                        entry.source,
                        entry.outcome,
                        previous,
                        digest,
                    )
                )
                previous = digest
            return rows

        written = self._store.append_audit(chained)
        lines = [
            {"seq": row.seq, **asdict(entry), "hash": row.hash}
            for row, entry in zip(written, entries, strict=True)
        ]
        if self._sink is not None:
            with open_private(self._sink, "a") as handle:  # 0600, tightened if wider
                for line in lines:
                    handle.write(json.dumps(line, sort_keys=True) + "\n")

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[AuditEntry] = []
            item = self._queue.get()
            # A batch is written 0.2 s after its first entry at the latest: steady traffic
            # (a request every few ms) must not hold entries back until 500 have queued.
            deadline = time.monotonic() + BATCH_SECONDS
            while True:
                if item is None:
                    stop = True
                    break
                batch.append(item)
                if len(batch) >= 500:
                    break
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            try:
                self.append(batch)
            except (MemvaultError, OSError) as exc:
                log.error("audit entries could not be written: %s", type(exc).__name__)

    def flush(self) -> None:
        """Write every queued entry now and stop the writer (it restarts on the next record)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)

    def entries(
        self, namespace: str | None, *, limit: int = 100, before: int | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; ``before`` pages back from a sequence number."""
        rows = self._store.audit_rows(namespace, limit=limit, before=before)
        return [
            {
                "seq": row.seq,
                "at": row.at,
                "namespace": row.namespace,
                "key_id": row.key_id,
                "action": row.action,
                "user_id": row.user_id,
                "memory_ids": json.loads(row.memory_ids),
                "source": row.source,
                "outcome": row.outcome,
                "hash": row.hash,
            }
            for row in rows
        ]

    def verify(self) -> Verification:
        """Walk the whole chain; report the first entry that was edited, removed or moved."""
        previous, expected_seq, count = GENESIS, 1, 0
        for row in self._store.audit_chain():
            count += 1
            seq = row.seq
            if seq != expected_seq:
                return Verification(False, count, expected_seq, "an entry is missing")
            entry = AuditEntry(
                action=row.action,
                outcome=row.outcome,
                namespace=row.namespace,
                key_id=row.key_id,
                user_id=row.user_id,
                memory_ids=tuple(json.loads(row.memory_ids)),
                source=row.source,
                at=row.at,
            )
            if row.prev_hash != previous:
                return Verification(False, count, seq, "an entry was removed, inserted or moved")
            if not hmac.compare_digest(row.hash, self._chain(previous, entry)):
                return Verification(False, count, seq, "an entry was modified")
            previous = row.hash
            expected_seq += 1
        return Verification(True, count)
