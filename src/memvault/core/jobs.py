"""The durable job queue: an ``infer=True`` add waits here, sealed, until a worker runs it.

A job is a row of the store's ``jobs`` table (``storage.base.JobStore``). Its request (the add's
messages, scope and options) is sealed with the data key of the scope's owner, the associated
data bound to the namespace, the owner columns and the job id, exactly as a memory's fields are:
an erase destroys that key, so a queued job of an erased user can never be opened again, and the
erase deletes the rows too. The result is sealed the same way.

``JobWorker`` runs N threads. Each claims the oldest claimable job with a lease
(``lease_seconds``), opens its request, runs the handler, seals and stores the result. A keeper
thread renews the lease of every running job every third of a lease, so a slow job is not taken
away while its worker lives; a worker that dies (SIGKILL, power loss) stops renewing, its lease
expires and any worker of any node takes the job again. A failure is retried with exponential
backoff; after ``max_attempts`` the job is ``dead`` (visible, and ``retry`` queues it again).
Errors are stored as codes (``MemvaultError.code``), never as text: a message can quote the
request. On ``stop`` the pool lets running jobs finish for a grace period and gives the claims
of the rest back.

The handler is ``Callable[[dict], dict]``: the request in (the add's arguments plus the
``job_id``), a JSON-ready result out. The pool
asks ``resolve(namespace)`` for it when it runs a job (``Memory`` resolves to its
``process_inference`` at call time, or to a handler given to ``start_jobs``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from memvault.clock import iso, now_iso, uuid7
from memvault.core.engine import Engine
from memvault.errors import InvalidInput, JobNotRetryable, MemvaultError, NotFound
from memvault.security.crypto import Binding, ScopeCipher
from memvault.storage.base import DataStore
from memvault.storage.rows import JOB_STATUSES, JobRow
from memvault.validation import Scope, check_count, check_id

__all__ = [
    "INFER",
    "Handler",
    "JobWorker",
    "enqueue",
    "get_job",
    "list_jobs",
    "open_payload",
    "public",
    "reseal",
    "retry_job",
]

log = logging.getLogger("memvault.jobs")

Handler = Callable[[dict[str, Any]], dict[str, Any]]
INFER = "infer"
MAX_BACKOFF_SECONDS = 300.0
# How often a worker reads a job again when a key rotation moved it while its handler ran.
_REKEY_TRIES = 3
_PAYLOAD = "job_payload"
_RESULT = "job_result"


def _binding(job: JobRow) -> Binding:
    return Binding(job.namespace, job.user_id, job.agent_id, job.run_id, job.id)


def _later(seconds: float) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


def enqueue(
    engine: Engine, payload: dict[str, Any], *, max_attempts: int, kind: str = INFER
) -> JobRow:
    """Seal ``payload`` (an add request: its ``user_id``/``agent_id``/``run_id`` name the scope)
    with the owner's current data key and queue it; under the owner's lock, so an erase that
    commits first makes this seal with the new generation (and one that commits after deletes
    the job)."""
    scope = Scope.of(payload.get("user_id"), payload.get("agent_id"), payload.get("run_id"))
    now = now_iso()
    plain = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    with engine.store.transaction() as tx:
        engine.lock_owners(tx, [engine.key_scope(scope)])
        key_scope, cipher = engine.writer_key(scope)
        job = JobRow(
            id=uuid7(),
            namespace=engine.namespace,
            user_id=scope.user_id,
            agent_id=scope.agent_id,
            run_id=scope.run_id,
            scope_id=key_scope.id,
            kind=kind,
            status="queued",
            attempts=0,
            max_attempts=max_attempts,
            lease_owner=None,
            lease_until=None,
            run_after=now,
            payload_box=b"",
            result_box=None,
            error_code=None,
            created_at=now,
            updated_at=now,
        )
        job.payload_box = cipher.seal(_binding(job), _PAYLOAD, plain)
        tx.insert_job(job)
    return job


def open_payload(engine: Engine, job: JobRow) -> dict[str, Any]:
    """The request of a job; ``KeyMissing`` once its owner was erased."""
    cipher = engine.codec.reader(job.scope_id, job.id)
    value = json.loads(cipher.open(_binding(job), _PAYLOAD, job.payload_box))
    if not isinstance(value, dict):
        raise InvalidInput(f"the request of job {job.id} is not an object")
    return value


def reseal(job: JobRow, old: ScopeCipher, new: ScopeCipher) -> None:
    """Move a job's request (and result, if any) from ``old`` to ``new`` in place (a key
    rotation; the caller stores it with ``WriteTx.rewrite_job``)."""
    bound = _binding(job)  # owner columns and job id only: the same under both keys
    job.payload_box = new.seal(bound, _PAYLOAD, old.open(bound, _PAYLOAD, job.payload_box))
    if job.result_box is not None:
        job.result_box = new.seal(bound, _RESULT, old.open(bound, _RESULT, job.result_box))
    job.scope_id = new.scope_id


def _open_result(engine: Engine, job: JobRow) -> Any:
    if job.result_box is None:
        return None
    cipher = engine.codec.existing_cipher(job.scope_id)
    if cipher is None:
        return None
    return json.loads(cipher.open(_binding(job), _RESULT, job.result_box))


def public(engine: Engine, job: JobRow) -> dict[str, Any]:
    """A job as the API shows it: its state and, once done, its result (never its request)."""
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "user_id": job.user_id,
        "agent_id": job.agent_id,
        "run_id": job.run_id,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "error_code": job.error_code,
        "result": _open_result(engine, job) if job.status == "done" else None,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    }


def get_job(engine: Engine, job_id: str, *, user_id: str | None = None) -> JobRow:
    """A job of the engine's namespace; ``user_id``: only one of that user, compared as every
    id is (NFC: a decomposed spelling of the id names the same user), else ``NotFound``."""
    job_id = check_id("job_id", job_id)
    owner = None if user_id is None else check_id("user_id", user_id)
    job = engine.store.get_job(engine.namespace, job_id)
    if job is None or (owner is not None and job.user_id != owner):
        raise NotFound(f"no job {job_id} in this namespace")
    return job


def list_jobs(
    engine: Engine, *, status: str | None, user_id: str | None, limit: int
) -> list[JobRow]:
    if status is not None and status not in JOB_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(JOB_STATUSES)}")
    check_count("limit", limit, 1000)
    if user_id is not None:
        user_id = check_id("user_id", user_id)
    return engine.store.list_jobs(engine.namespace, status=status, user_id=user_id, limit=limit)


def retry_job(engine: Engine, job_id: str, *, user_id: str | None = None) -> JobRow:
    """Queue a ``dead`` (or ``failed``) job again with its attempts reset (``user_id``: as in
    ``get_job``)."""
    job = get_job(engine, job_id, user_id=user_id)
    retried = engine.store.retry_job(engine.namespace, job.id, now_iso())
    if retried is None:
        raise JobNotRetryable(f"job {job_id} is {job.status}: only a dead or failed job is retried")
    return retried


def _error_code(exc: BaseException) -> str:
    return exc.code if isinstance(exc, MemvaultError) else "handler_error"


def _permanent(exc: BaseException) -> bool:
    """A bad request or an erased owner: another attempt cannot do better."""
    from memvault.codec import KeyMissing

    return isinstance(exc, InvalidInput | KeyMissing)


class JobWorker:
    """A pool of worker threads over one store's queue (see the module's docstring)."""

    def __init__(
        self,
        store: DataStore,
        engine_for: Callable[[str], Engine],
        resolve: Callable[[str], Handler],
        *,
        workers: int = 2,
        lease_seconds: float = 60.0,
        retry_seconds: float = 2.0,
        poll_seconds: float = 1.0,
        name: str | None = None,
    ) -> None:
        if workers < 1:
            raise InvalidInput("a job worker pool needs at least one worker")
        self.store = store
        self._engine_for = engine_for
        self._resolve = resolve
        self._workers = workers
        self._lease = lease_seconds
        self._retry = retry_seconds
        self._poll = poll_seconds
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid7()[-12:]}"
        self._stop = threading.Event()
        self._finished = threading.Event()  # the workers are gone: the keeper stops too
        self._wake = threading.Condition()
        self._pending_wakes = 0
        self._threads: list[threading.Thread] = []
        self._running: dict[str, str] = {}  # job id -> worker name, while its handler runs
        self._running_lock = threading.Lock()

    def start(self) -> JobWorker:
        for index in range(self._workers):
            thread = threading.Thread(
                target=self._work, args=(f"{self.name}:{index}",), daemon=True, name=f"job-{index}"
            )
            thread.start()
            self._threads.append(thread)
        keeper = threading.Thread(target=self._keep_leases, daemon=True, name="job-leases")
        keeper.start()
        self._threads.append(keeper)
        return self

    def notify(self) -> None:
        """A job was queued here: wake an idle worker now instead of at its next poll."""
        with self._wake:
            self._pending_wakes += 1
            self._wake.notify()

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Claim nothing more; let running jobs finish for ``grace_seconds``, then give the
        claims still held back to the queue (another worker takes them at once)."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + grace_seconds
        keeper, workers = self._threads[-1:], self._threads[:-1]
        for thread in workers:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._finished.set()
        for thread in keeper:
            thread.join(timeout=5)
        with self._running_lock:
            left = dict(self._running)
        for job_id, worker in left.items():
            try:
                self.store.release(job_id, worker, now_iso())
            except MemvaultError as exc:
                log.warning("could not release job %s: %s", job_id, exc.code)

    # --- the threads --------------------------------------------------------------------------

    def _idle(self) -> None:
        with self._wake:
            if self._pending_wakes == 0 and not self._stop.is_set():
                self._wake.wait(self._poll)
            self._pending_wakes = max(0, self._pending_wakes - 1)

    def _work(self, worker: str) -> None:
        while not self._stop.is_set():
            try:
                job = self.store.claim(worker, _later(self._lease), now_iso())
            except MemvaultError as exc:
                log.warning("claiming a job failed: %s", exc.code)
                job = None
            if job is None:
                self._idle()
                continue
            with self._running_lock:
                self._running[job.id] = worker
            try:
                self._process(job, worker)
            except MemvaultError as exc:  # the store failed: the lease expiry brings it back
                log.warning("job %s: storing the outcome failed: %s", job.id, exc.code)
            finally:
                with self._running_lock:
                    self._running.pop(job.id, None)

    def _process(self, job: JobRow, worker: str) -> None:
        store = self.store
        try:
            engine = self._engine_for(job.namespace)
            # The job's id goes with its request: inference records it in each memory's
            # provenance.
            payload = {**self._open(engine, job), "job_id": job.id}
            result = self._resolve(job.namespace)(payload)
            plain = json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode()
        except Exception as exc:  # noqa: BLE001 - any failure of a handler is the job's outcome
            code = _error_code(exc)
            retry_at = None
            if not _permanent(exc) and job.attempts < job.max_attempts:
                delay = min(MAX_BACKOFF_SECONDS, self._retry * 2 ** (job.attempts - 1))
                retry_at = _later(delay)
            store.fail(job.id, worker, code, retry_at, now_iso())
            log.info("job %s failed (attempt %d): %s", job.id, job.attempts, code)
            return
        self._complete(engine, job, worker, plain)

    def _open(self, engine: Engine, job: JobRow) -> dict[str, Any]:
        """The job's request. A key rotation may have re-sealed the job since it was claimed
        and destroyed the key the claim named: then it is opened as it is stored now."""
        from memvault.codec import KeyMissing

        try:
            return open_payload(engine, job)
        except KeyMissing:
            current = self.store.get_job(job.namespace, job.id)
            if current is None or current.scope_id == job.scope_id:
                raise  # erased, or really missing: the job cannot run
            return open_payload(engine, current)

    def _complete(self, engine: Engine, job: JobRow, worker: str, plain: bytes) -> None:
        """Store the result sealed under the key the job is sealed with *now*: a key rotation
        can re-seal the job (and destroy its old key) while the handler runs. ``complete``
        refuses a result sealed for a key scope the job no longer has, so a rotation that
        commits in between makes this read the job again."""
        for _ in range(_REKEY_TRIES):
            current = self.store.get_job(job.namespace, job.id)
            if current is None or current.status != "running" or current.lease_owner != worker:
                log.warning("job %s: the claim was lost before it completed", job.id)
                return
            cipher = engine.codec.existing_cipher(current.scope_id)
            if cipher is None:
                continue  # the rotation just destroyed the key read: read the job again
            box = cipher.seal(_binding(current), _RESULT, plain)
            if self.store.complete(current.id, worker, box, now_iso(), scope_id=current.scope_id):
                return
        # Still moving after every try (or its key is gone): the lease expires and the job
        # runs again, where a missing key ends it as dead.
        log.warning("job %s: its key changed under every try to store the result", job.id)

    def _keep_leases(self) -> None:
        interval = max(0.1, self._lease / 3)
        while not self._finished.wait(interval):
            with self._running_lock:
                running = dict(self._running)
            for job_id, worker in running.items():
                try:
                    self.store.renew(job_id, worker, _later(self._lease))
                except MemvaultError as exc:
                    log.warning("renewing the lease of job %s failed: %s", job_id, exc.code)
