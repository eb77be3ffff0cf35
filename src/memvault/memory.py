"""``Memory``: mem0's call shapes on an encrypted embedded store.

    >>> from memvault import Memory
    >>> with Memory(embedder="hash", home=tmp) as m:
    ...     m.add("Alice prefers green tea", user_id="alice")
    ...     m.search("what does alice drink?", user_id="alice")["results"][0]["memory"]
    'Alice prefers green tea'

Thread-safe: one ``Memory`` may serve many threads (``AsyncMemory`` does exactly that).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from pydantic import SecretStr

from memvault.access import AccessRecorder
from memvault.clock import iso, now_iso
from memvault.codec import Codec
from memvault.config import Settings
from memvault.core import changes, entities, infer, reads, rekey, reseal, rights, webhooks
from memvault.core import jobs as queue
from memvault.core.changes import Add, Change, Delete, Update
from memvault.core.engine import Engine
from memvault.core.rules import changed_rules
from memvault.embedding import Embedder, check_embedder_name, create_embedder
from memvault.embedding.batching import QueryBatcher
from memvault.errors import (
    EmbedderError,
    EmbeddingModelMismatch,
    InvalidConfig,
    InvalidInput,
)
from memvault.filters import FilterNode, parse_filter
from memvault.llm import LLM, OpenAIChat
from memvault.llm.prompts import Instructions
from memvault.lru import ByteLRU, text_size
from memvault.retrieval import ann
from memvault.retrieval.graph_files import GraphFiles
from memvault.retrieval.hybrid import HybridSearcher, Mode, Techniques
from memvault.retrieval.ranking import Clock, RankingAdjustments, system_clock
from memvault.retrieval.vector_index import VectorCache
from memvault.security.apikeys import ApiKeyStore
from memvault.security.audit import AuditLog
from memvault.security.crypto import derive_key
from memvault.security.keyring import KeyRing, load_master_key
from memvault.security.keyscope import API_KEYS, AUDIT
from memvault.security.poisoning import flag_metadata
from memvault.security.redact import apply_policy, check_id_secrets
from memvault.storage import StoreConfig, backend_for
from memvault.storage.base import DataStore, KeyStore
from memvault.storage.files import ensure_private_dir
from memvault.storage.rows import KeyStoreStatus, StoreStatus
from memvault.validation import (
    Message,
    Scope,
    check_count,
    check_id,
    check_importance,
    check_memory_type,
    check_metadata,
    check_namespace,
    check_text,
    check_top_k,
    parse_datetime,
    parse_messages,
)

__all__ = ["Memory"]

BATCH_SIZE = 256
# A default TTL past this is no TTL at all, and would overflow a datetime: 100 years.
_ADD_KEYS = frozenset(
    {
        "messages",
        "user_id",
        "agent_id",
        "run_id",
        "metadata",
        "memory_type",
        "expiration_date",
        "infer",
        "actor_id",
        "importance",
        # Times the memory was first and last written elsewhere (an import, mem0's timestamp):
        # accepted by add_many only, never later than now.
        "created_at",
        "updated_at",
    }
)
# A clock a little ahead of this one is not an error; a time further ahead is.
CLOCK_SKEW = timedelta(minutes=5)
_INFERENCE_KEYS = (_ADD_KEYS - {"infer"}) | {"observed_at", "job_id"}
# Existing memories of the scope shown to the model per fact when reconciling.
SIMILAR_PER_FACT = 5


QueryKey = tuple[str, str | None, str | None, str | None, str]
# Query vectors by (namespace, query scope, text): an entry holds up to a 32 KB query text.
QUERY_CACHE_BYTES = 16 * 1024 * 1024
QUERY_CACHE_ENTRIES = 1024


_PURPOSE_MAX = 64
_PURPOSE_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


class Memory:
    """Long-term memory for agents: add, search, get, update, delete, history."""

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        embedder: str | Embedder | None = None,
        namespace: str | None = None,
        settings: Settings | None = None,
        config_file: str | Path | None = None,
        llm: LLM | None = None,
        ranking_clock: Clock | None = None,
        **options: Any,
    ) -> None:
        name = embedder if isinstance(embedder, str) else None
        self.settings = settings or Settings.load(
            Path(config_file) if config_file else None,
            home=home,
            namespace=namespace,
            embedder=name,
            **options,
        )
        self.home = ensure_private_dir(Path(self.settings.home).expanduser())
        self.namespace = self.settings.namespace
        config = StoreConfig(
            home=self.home,
            database_url=_secret(self.settings.database_url),
            keys_database_url=_secret(self.settings.keys_database_url),
            synchronous=self.settings.synchronous,
            max_filter_seconds=self.settings.max_filter_seconds,
            pool_size=self.settings.database_pool_size,
            busy_timeout_seconds=self.settings.sqlite_busy_timeout_seconds,
            pool_timeout_seconds=self.settings.database_pool_timeout_seconds,
        )
        backend = backend_for(config.database_url)
        keys: KeyStore = backend.open_keys(config)
        try:
            secret = _secret(self.settings.master_key)
            master = load_master_key(self.home, secret, create=not keys.master_checks())
            self._keyring = KeyRing(keys, master)
        except BaseException:
            keys.close()
            raise
        self._codec = Codec(self._keyring, self.namespace)
        try:
            self._store: DataStore = backend.open_data(config, self._codec.metadata_json)
            self._codec.store = self._store
            self._embedder: Embedder | None = None
            self._embedder_lock = threading.Lock()
            # (model id, dimension) once checked against the store's (written once, never
            # changed): later embeddings skip the two reads of store_meta.
            self._settled_model: tuple[str, int] | None = None
            if embedder is not None and not isinstance(embedder, str):
                self._check_model(embedder)
                self._embedder = embedder
            else:
                check_embedder_name(self.settings.embedder)
        except BaseException:
            self._keyring.close()
            if hasattr(self, "_store"):
                self._store.close()
            raise
        files = None
        if self.settings.ann_threshold > 0 and ann.available():
            # Built graphs are kept sealed beside the store (the node's home, for Postgres too).
            files = GraphFiles(
                self.home / "ann",
                lambda: self.sealing_key("ann-graph-names"),
                self._keyring.cipher,
            )
        # A scope on the graph path keeps no float vectors: its candidates are re-scored with
        # their vectors read from the store.
        self._cache = VectorCache(self.settings.vector_cache_bytes, files, compact=True)
        self._llm: LLM | None = llm
        self._owns_llm = llm is None
        self._llm_lock = threading.Lock()
        self._engine = Engine(
            self.settings,
            self.namespace,
            self._store,
            self._keyring,
            self._codec,
            self._cache,
            self._embed,
        )
        # A key destroyed by another process (erase, reset): its plaintext goes from here too.
        self._keyring.on_forget(self._forget_scopes)
        self._searcher: HybridSearcher | None = None
        # What recency decay measures ages against; a benchmark replaying old conversations
        # (or a test) passes a fixed one. Nothing else reads it.
        self._ranking_clock = ranking_clock or system_clock
        self._searcher_lock = threading.Lock()
        self._access = AccessRecorder(self._store.touch)
        # Query text -> vector, per caller: keyed by namespace, query scope and text, so a hit
        # (no model call: faster) never tells one tenant or user what another one searched for.
        self._query_vectors: ByteLRU[QueryKey, npt.NDArray[np.float32]] = ByteLRU(
            max_bytes=QUERY_CACHE_BYTES,
            max_entries=QUERY_CACHE_ENTRIES,
            size=lambda key, vector: text_size(key) + vector.nbytes,
        )
        self._query_batcher = QueryBatcher(
            self._embed, max_running=self.settings.max_concurrent_searches
        )
        self._closed = False
        self._owns_resources = True
        # add(infer=True) queues a job (core/jobs.py) instead of running the LLM work inline.
        self.async_mode = bool(self.settings.async_mode)
        self._job_handler: queue.Handler | None = None
        self._job_worker: queue.JobWorker | None = None
        self._webhook_worker: webhooks.WebhookWorker | None = None
        # One search at a time per core: more at once only thrash the GIL and the caches.
        # Extra callers wait their turn (their query embeddings are batched meanwhile).
        self._search_slots = threading.BoundedSemaphore(self.settings.max_concurrent_searches)
        audit_cipher = self._keyring.cipher_for(AUDIT)
        self.audit = AuditLog(
            self._store,
            derive_key(audit_cipher.data_key, "memvault/v1/audit"),
            self.settings.audit_jsonl,
        )
        # Rows of an older version move to the current seal format now, batch by batch (other
        # processes keep working between batches); a no-op once done.
        if self.settings.reseal_on_open:
            self.reseal_legacy()

    def namespaced(self, namespace: str) -> Memory:
        """This store seen from another namespace, sharing files, keys, model and caches.

        Cheap (no file is opened): the server makes one per request's namespace. Closing a view
        closes only the view; the resources stay with the ``Memory`` they came from.
        """
        check_namespace(namespace)
        if namespace == self.namespace:
            return self
        view = object.__new__(Memory)
        view.__dict__.update(self.__dict__)
        view.namespace = namespace
        view._engine = self._engine.view(namespace)
        view._codec = view._engine.codec
        view._searcher = None
        view._searcher_lock = threading.Lock()
        view._owns_resources = False
        return view

    @property
    def api_keys(self) -> ApiKeyStore:
        """The store's API keys (used by the server and ``memvault keys``)."""
        cipher = self._keyring.cipher_for(API_KEYS)
        return ApiKeyStore(self._store, derive_key(cipher.data_key, "memvault/v1/api-keys"))

    def sealing_key(self, purpose: str) -> bytes:
        """A 256-bit secret for one named purpose, the same on every node of this store.

        Derived from a data key the master key wraps, so it survives a master key rotation and
        nobody without the master key can compute it (the dashboard seals its cookies with it).
        ``purpose`` is 1 to 64 of ``a-z``, ``0-9`` and ``-``: a name of memvault's own, never a
        caller's text, so no two purposes can spell the same derivation input.
        """
        if (
            not isinstance(purpose, str)
            or not 1 <= len(purpose) <= _PURPOSE_MAX
            or not set(purpose) <= _PURPOSE_ALPHABET
        ):
            raise InvalidInput("purpose must be 1 to 64 characters of a-z, 0-9 and '-'")
        cipher = self._keyring.cipher_for(API_KEYS)
        return derive_key(cipher.data_key, f"memvault/v1/sealing/{purpose}")

    def stats(self) -> list[dict[str, Any]]:
        """How many live memories each (user, agent, memory type) of this namespace holds.

        Ids only, from the owner columns: no memory is decrypted (the dashboard's overview)."""
        rows = self._store.scope_stats(self.namespace, now_iso())
        return [
            {"user_id": user, "agent_id": agent, "memory_type": kind, "memories": count}
            for user, agent, kind, count in rows
        ]

    def namespaces(self) -> list[dict[str, Any]]:
        """Every namespace that holds memories or keys, with counts."""
        return self._store.namespace_stats()

    @property
    def engine(self) -> Engine:
        """The core behind this facade (its stores, key ring and caches), for memvault's own
        tools that work below the API: ``memvault migrate``, ``memvault db status``."""
        return self._engine

    def ping(self) -> None:
        """Ask both stores a trivial question (``/readyz``): raises ``StorageError`` /
        ``StorageBusy`` when either does not answer."""
        self._store.get_meta("embedding_model")
        self._store.check_writes()
        self._keyring.store.changes()

    def store_status(self) -> StoreStatus:
        """The backend, its location, schema version and sizes (``memvault db status``)."""
        return self._store.status()

    def key_store_status(self) -> KeyStoreStatus:
        """Where the wrapped data keys live and how many there are (``memvault db status``)."""
        return self._keyring.store.status()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Memory:
        """Build from a plain dict of settings (the same names as ``MEMVAULT_*``, lower case)."""
        values = dict(config)
        embedder = values.pop("embedder", None)
        return cls(embedder=embedder, **values)

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Flush pending read counters and close files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self._owns_resources:
            return
        self.stop_jobs()
        self.stop_webhooks()
        self._access.close()
        self.audit.flush()
        self._store.close()
        self._keyring.close()
        closer = getattr(self._embedder, "close", None)
        if callable(closer):
            closer()
        llm_closer = getattr(self._llm, "close", None) if self._owns_llm else None
        if callable(llm_closer):
            llm_closer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Memory(home={str(self.home)!r}, namespace={self.namespace!r})"

    @property
    def embedder(self) -> Embedder:
        """The embedding model, loaded on first use (listing keys or memories never loads it)."""
        if self._embedder is None:
            with self._embedder_lock:
                if self._embedder is None:
                    made = create_embedder(self.settings.embedder, self.settings)
                    self._check_model(made)
                    self._embedder = made
        return self._embedder

    @property
    def llm(self) -> LLM | None:
        """The chat model of ``add(infer=True)``: the one passed as ``llm=``, else an
        OpenAI-compatible client of ``llm_base_url`` and ``llm_model``; None when unset."""
        settings = self.settings
        if self._llm is None and settings.llm_base_url and settings.llm_model:
            with self._llm_lock:
                if self._llm is None:
                    self._llm = OpenAIChat(
                        settings.llm_base_url,
                        settings.llm_model,
                        api_key=_secret(settings.llm_api_key),
                        timeout=settings.llm_timeout_seconds,
                        max_attempts=settings.llm_max_attempts,
                        backoff=settings.llm_backoff_seconds,
                    )
        return self._llm

    def _require_llm(self) -> LLM:
        llm = self.llm
        if llm is None:
            raise InvalidConfig(
                "infer=True extracts facts with an LLM and none is configured: set"
                " MEMVAULT_LLM_BASE_URL and MEMVAULT_LLM_MODEL (or llm_base_url and llm_model),"
                " or pass infer=False to store the messages as they are"
            )
        return llm

    # --- model bookkeeping --------------------------------------------------------------------

    def _check_model(self, embedder: Embedder) -> None:
        stored = self._store.get_meta("embedding_model")
        if stored is not None and stored != embedder.model_id:
            raise EmbeddingModelMismatch(
                f"this store holds vectors of {stored!r}; the embedder is "
                f"{embedder.model_id!r}. Use the same model or a new home."
            )

    def _embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        vectors = self.embedder.embed_batch(texts)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise EmbedderError("the embedder returned the wrong number of vectors")
        if self._settled_model == (self.embedder.model_id, vectors.shape[1]):
            return vectors  # checked before: the store's model and dimension never change
        model = self._store.get_meta("embedding_model") or self._store.set_meta_once(
            "embedding_model", self.embedder.model_id
        )
        dims = self._store.get_meta("embedding_dimensions") or self._store.set_meta_once(
            "embedding_dimensions", str(vectors.shape[1])
        )
        if model != self.embedder.model_id or int(dims) != vectors.shape[1]:
            raise EmbeddingModelMismatch(
                f"this store holds {dims}-d vectors of {model!r}; got {vectors.shape[1]}-d"
                f" vectors of {self.embedder.model_id!r}"
            )
        self._settled_model = (model, int(dims))
        return vectors

    def _forget_scopes(self, scope_ids: list[str]) -> None:
        """Keys another process destroyed: drop their vector indexes and decrypted metadata."""
        for scope_id in scope_ids:
            self._cache.drop(scope_id)
        self._store.forget_decrypted()

    def _embed_query(self, text: str, scope: Scope) -> npt.NDArray[np.float32]:
        # The batcher embeds every caller's text itself (it batches, never shares a result),
        # so only this cache could answer one caller from another's query.
        key = (self.namespace, scope.user_id, scope.agent_id, scope.run_id, text)
        cached = self._query_vectors.get(key)
        if cached is not None:
            return cached
        vector = self._query_batcher.embed(text)
        self._query_vectors.put(key, vector)
        return vector

    def _get_searcher(self) -> HybridSearcher:
        with self._searcher_lock:
            if self._searcher is None:
                self._searcher = HybridSearcher(
                    self._store,
                    self._codec,
                    self._cache,
                    lambda: self.embedder.dimensions,
                    fusion=self.settings.fusion,
                    bm25_weights=(1.0, self.settings.context_weight),
                    vector_weight=self.settings.vector_weight,
                    ann_threshold=self.settings.ann_threshold,
                    adjustments=RankingAdjustments(
                        {
                            str(kind): days
                            for kind, days in self.settings.recency_half_life_days.items()
                        },
                        self.settings.recency_weight,
                        self.settings.reinforcement_weight,
                    ),
                    clock=self._ranking_clock,
                    techniques=Techniques(
                        expand_seeds=self.settings.expand_seeds,
                        expand_per_seed=self.settings.expand_per_seed,
                        expand_weight=self.settings.expand_weight,
                        feedback_seeds=self.settings.feedback_seeds,
                        feedback_terms=self.settings.feedback_terms,
                        feedback_weight=self.settings.feedback_weight,
                        diversity=self.settings.diversity,
                        vector_feedback_seeds=self.settings.vector_feedback_seeds,
                        vector_feedback_weight=self.settings.vector_feedback_weight,
                        expand_sources=self.settings.expand_sources,
                    ),
                    link_sources=[entities.EntityLinks(self._engine)],
                )
            return self._searcher

    # --- add ----------------------------------------------------------------------------------

    def add(
        self,
        messages: str | Mapping[str, Any] | list[Mapping[str, Any]],
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        memory_type: str | None = None,
        expiration_date: str | datetime | None = None,
        infer: bool = False,
        actor_id: str | None = None,
        importance: float | None = None,
    ) -> dict[str, Any]:
        """Store ``messages`` (a text or mem0's ``[{"role", "content"}]``) in a scope.

        Returns ``{"results": [{"id", "memory", "event"}]}``; ``event`` is ``ADD``, or ``NONE``
        with the existing id when the same text is already stored in the same scope.

        ``infer=True`` (an LLM configured: ``llm_base_url`` and ``llm_model``) extracts facts
        from the messages and reconciles them with the scope's memories: events ``ADD``,
        ``UPDATE``, ``DELETE``, ``NONE``, applied in one transaction (``process_inference``).
        With ``async_mode`` on (the server's default), the request is checked, queued sealed, and
        the answer is ``{"results": [], "job": {"id", "status": "queued"}}`` (see ``job``); a
        worker runs ``process_inference`` on it.
        """
        item = {
            "messages": messages,
            "user_id": user_id,
            "agent_id": agent_id,
            "run_id": run_id,
            "metadata": metadata,
            "memory_type": memory_type,
            "expiration_date": expiration_date,
            "infer": infer,
            "actor_id": actor_id,
            "importance": importance,
        }
        if infer and self.async_mode:
            return self._enqueue_add(item)
        return self.add_many([item])

    def add_many(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        batch_size: int = BATCH_SIZE,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """Bulk load: each item has ``add``'s arguments; one embedding call and one transaction
        per batch. Every item is validated before anything is written (an invalid one raises
        with ``item`` set to its index, and its message begins ``item N:``); results keep the
        order. An item may also carry ``created_at`` and ``updated_at`` (ISO 8601, not in the
        future): an import keeps its source's times, instead of now.

        Each batch is committed before the next starts, so an interrupted load keeps every
        batch it reported through ``on_progress(done, total)``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInput("batch_size must be a positive integer")
        if on_progress is not None and not callable(on_progress):
            raise InvalidInput("on_progress must be a function of (done, total)")
        if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
            raise InvalidInput("items must be a list of objects with add()'s arguments")
        rules = self._store.namespace_settings(self.namespace)
        validated = []
        for index, item in enumerate(items):
            try:
                validated.append((item, self._validate(item, rules)))
            except InvalidInput as exc:  # which item: a batch may hold a thousand
                raise exc.for_item(index) from None
        if any(item.get("infer") for item, _ in validated):
            self._require_llm()
            return {"results": self._add_inferring(validated, rules, batch_size)}
        pending: list[Change] = [p for _, adds in validated for p in adds]
        results: list[dict[str, Any]] = []
        for start in range(0, len(pending), batch_size):
            results.extend(self._write_batch(pending[start : start + batch_size]))
            if on_progress is not None:
                on_progress(min(start + batch_size, len(pending)), len(pending))
        return {"results": results}

    def _add_inferring(
        self,
        validated: list[tuple[Mapping[str, Any], list[Add]]],
        rules: Mapping[str, Any],
        batch_size: int,
    ) -> list[dict[str, Any]]:
        """Items in order: plain ones written in batches, ``infer`` ones inferred one by one."""
        results: list[dict[str, Any]] = []
        plain: list[Change] = []

        def flush() -> None:
            for start in range(0, len(plain), batch_size):
                results.extend(self._write_batch(plain[start : start + batch_size]))
            plain.clear()

        for item, adds in validated:
            if item.get("infer"):
                flush()
                results.extend(self._infer(adds, rules, _observed(adds), None))
            else:
                plain.extend(adds)
        flush()
        return results

    def process_inference(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Run ``add(infer=True)``'s work now, synchronously: for a worker of a job queue.

        ``payload`` holds ``add``'s arguments as plain JSON values: ``messages`` (required),
        ``user_id`` / ``agent_id`` / ``run_id`` (one at least), and optionally ``metadata``,
        ``memory_type`` (ignored: the model types each fact), ``expiration_date``,
        ``importance``, ``actor_id``; plus ``observed_at`` (ISO 8601 or datetime: when the
        messages were sent, the date relative times resolve against; default now) and
        ``job_id`` (recorded in each memory's provenance). ``infer`` may be present and is
        ignored. It is validated exactly as ``add`` validates (raises ``InvalidInput``).

        Returns ``{"results": [...]}`` as ``add`` does, each result with ``inferred``; when the
        LLM failed (``LLMUnavailable`` / ``LLMBadOutput`` after retries and the repair retry),
        the messages were stored as they are and each result has ``"inferred": False`` and
        ``"error": {"code", "message"}``: the call itself only raises for invalid input, a
        missing LLM (``InvalidConfig``) or a storage failure. Running a payload twice stores
        its raw messages once (same-text dedup) but may ask the model twice.
        """
        return self._process_inference(payload, queued=False)

    def _run_job(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The queue's default handler: ``process_inference`` for a job that must still exist
        when its changes commit (an erase of its user meanwhile deletes it: nothing is written)."""
        return self._process_inference(payload, queued=True)

    def _process_inference(self, payload: Mapping[str, Any], *, queued: bool) -> dict[str, Any]:
        if not isinstance(payload, Mapping):
            raise InvalidInput("payload must be an object with add()'s arguments")
        unknown = set(payload) - _INFERENCE_KEYS - {"infer"}
        if unknown:
            raise InvalidInput(f"unknown keys {sorted(unknown)}; known: {sorted(_INFERENCE_KEYS)}")
        item = {k: v for k, v in payload.items() if k in _ADD_KEYS and k != "infer"}
        observed = parse_datetime("observed_at", payload.get("observed_at"))
        job_id = payload.get("job_id")
        if job_id is not None:
            job_id = check_id("job_id", job_id)
        self._require_llm()
        rules = self._store.namespace_settings(self.namespace)
        raw = self._validate(item, rules)
        live_job = job_id if queued else None
        return {"results": self._infer(raw, rules, observed or _observed(raw), job_id, live_job)}

    def _infer(
        self,
        raw: list[Add],
        rules: Mapping[str, Any],
        observed_at: datetime,
        job_id: str | None,
        live_job: str | None = None,
    ) -> list[dict[str, Any]]:
        """Infer ``raw``'s facts; ``rules`` are the namespace's, already read to validate."""
        scope = raw[0].scope

        owners = (scope.user_id, scope.agent_id, scope.run_id)

        def similar(text: str, vector: npt.NDArray[np.float32], k: int) -> list[tuple[str, str]]:
            # The caller's own scope, exactly (not counted as reads): a search by agent_id alone
            # also finds every user's memories with that agent, and the model must never see
            # (nor update or delete) another scope's memories.
            found, _ = self._search(text, vector, scope, _exactly(scope), k, None)
            return [
                (hit["id"], hit["memory"])
                for hit in found
                if (hit["user_id"], hit["agent_id"], hit["run_id"]) == owners
            ]

        return infer.infer(
            self._engine,
            raw,
            similar=similar,
            llm=self._require_llm(),
            observed_at=observed_at,
            metadata=raw[0].metadata,
            job_id=job_id,
            live_job=live_job,
            top_k=SIMILAR_PER_FACT,
            instructions=Instructions.of(rules),
        )

    def _validate(self, item: Mapping[str, Any], rules: Mapping[str, Any]) -> list[Add]:
        if not isinstance(item, Mapping):
            raise InvalidInput("each item must be an object with add()'s arguments")
        unknown = set(item) - _ADD_KEYS
        if unknown:
            raise InvalidInput(f"unknown keys {sorted(unknown)}; known: {sorted(_ADD_KEYS)}")
        scope = Scope.of(item.get("user_id"), item.get("agent_id"), item.get("run_id"))
        limits = self.settings
        metadata = check_metadata(item.get("metadata"), limits.max_metadata_bytes)
        memory_type = check_memory_type(item.get("memory_type"))
        expires = parse_datetime("expiration_date", item.get("expiration_date"))
        if expires is None and rules["default_ttl_seconds"]:
            expires = datetime.now(UTC) + timedelta(seconds=rules["default_ttl_seconds"])
        importance = check_importance(item.get("importance"))
        created, updated = _written_times(item.get("created_at"), item.get("updated_at"))
        actor = item.get("actor_id")
        if actor is not None:
            actor = check_id("actor_id", actor)
        policy = rules["secret_policy"]
        actor = check_id_secrets(actor, policy, "actor_id")  # ids are refused, never redacted
        metadata, metadata_secrets = apply_policy(metadata, policy, "metadata")
        pending = []
        for message in parse_messages(item.get("messages"), limits.max_text_bytes):
            check_id_secrets(message.name, policy, "a message name")
            content, secrets = apply_policy(message.content, policy, "the text")
            pending.append(
                Add(
                    Message(content, message.role, message.name),
                    scope,
                    metadata,
                    memory_type,
                    None if expires is None else iso(expires),
                    importance,
                    actor if actor is not None else message.name,
                    sorted(set(secrets + metadata_secrets)),
                    created_at=created,
                    updated_at=updated,
                )
            )
        return pending

    def _write_batch(self, batch: list[Change]) -> list[dict[str, Any]]:
        adds = [change for change in batch if isinstance(change, Add)]
        for add in adds:  # text that reads as instructions to a model is flagged, not refused
            add.metadata = flag_metadata(add.metadata, add.message.content)
        vectors = self._embed([add.message.content for add in adds])
        for add, vector in zip(adds, vectors, strict=True):
            add.vector = vector
        return changes.apply(self._engine, batch)

    # --- the job queue ------------------------------------------------------------------------

    def _enqueue_add(self, item: dict[str, Any]) -> dict[str, Any]:
        """Check the request as a plain add would (scope, texts, metadata, secret policy), then
        queue it sealed; ``{"results": [], "job": {"id", "status"}}``."""
        if self._job_handler is None:
            self._require_llm()  # refused now, not as a dead job later
        rules = self._store.namespace_settings(self.namespace)
        self._validate({**item, "infer": False}, rules)
        payload = dict(item)
        expires = payload.get("expiration_date")
        if isinstance(expires, datetime):
            payload["expiration_date"] = iso(expires)
        payload = {k: v for k, v in payload.items() if v is not None}
        job = queue.enqueue(self._engine, payload, max_attempts=self.settings.job_max_attempts)
        if self._job_worker is not None:
            self._job_worker.notify()
        return {"results": [], "job": {"id": job.id, "status": job.status}}

    def job(self, job_id: str, *, user_id: str | None = None) -> dict[str, Any]:
        """A job of this namespace: its status, attempts, error code and, once done, its result.
        ``user_id``: only a job of that user (another user's job is ``NotFound``)."""
        row = queue.get_job(self._engine, job_id, user_id=user_id)
        return queue.public(self._engine, row)

    def jobs(
        self, *, status: str | None = None, user_id: str | None = None, limit: int = 100
    ) -> dict[str, list[dict[str, Any]]]:
        """This namespace's jobs, newest first, by ``status`` and/or ``user_id``."""
        rows = queue.list_jobs(self._engine, status=status, user_id=user_id, limit=limit)
        return {"results": [queue.public(self._engine, row) for row in rows]}

    def retry_job(self, job_id: str, *, user_id: str | None = None) -> dict[str, Any]:
        """Queue a dead (or failed) job again, its attempts reset. ``user_id``: only a job of
        that user (another user's job is ``NotFound``)."""
        row = queue.retry_job(self._engine, job_id, user_id=user_id)
        if self._job_worker is not None:
            self._job_worker.notify()
        return queue.public(self._engine, row)

    def _handler_for(self, namespace: str) -> queue.Handler:
        """The handler a job of ``namespace`` runs: the one given to ``start_jobs``, else this
        store's ``process_inference`` (seen from that namespace), looked up now."""
        if self._job_handler is not None:
            return self._job_handler
        return self.namespaced(namespace)._run_job

    def start_jobs(
        self, workers: int | None = None, *, handler: queue.Handler | None = None
    ) -> queue.JobWorker:
        """Start the worker pool of the job queue in this process (the server does it at
        start). ``handler``: what runs a job's request (default: ``process_inference``)."""
        if workers is not None:
            check_count("workers", workers, 256)
        if self._job_worker is not None:
            return self._job_worker
        if handler is not None:
            if not callable(handler):
                raise InvalidInput("handler must be a function of (request) -> result")
            self._job_handler = handler
        settings = self.settings
        self._job_worker = queue.JobWorker(
            self._store,
            self._engine.view,
            self._handler_for,
            workers=settings.job_workers if workers is None else workers,
            lease_seconds=settings.job_lease_seconds,
            retry_seconds=settings.job_retry_seconds,
            poll_seconds=settings.job_poll_seconds,
        ).start()
        return self._job_worker

    def stop_jobs(self, grace_seconds: float = 10.0) -> None:
        """Stop the worker pool: running jobs finish (for ``grace_seconds``) or go back to the
        queue. Idempotent."""
        if (
            isinstance(grace_seconds, bool)
            or not isinstance(grace_seconds, int | float)
            or not 0 <= grace_seconds <= 3600  # also refuses NaN
        ):
            raise InvalidInput("grace_seconds must be a number of seconds from 0 to 3600")
        worker, self._job_worker = self._job_worker, None
        if worker is not None:
            worker.stop(grace_seconds)

    # --- webhooks ----------------------------------------------------------------------------

    def configure_webhook(self, url: str, *, include_text: bool = False) -> dict[str, Any]:
        """Send this namespace's memory events (added, updated, deleted, user erased) to
        ``url``, signed (see docs/webhooks.md); ``include_text`` adds the memory's text to added
        and updated events. The URL must be one the operator's allow-list permits
        (``MEMVAULT_WEBHOOK_ALLOWED_HOSTS``), else ``DestinationRefused``. A new webhook's
        signing ``secret`` is in this answer and never shown again; changing the URL or the
        flag keeps it."""
        return webhooks.configure(self._engine, url, include_text=include_text)

    def webhook(self) -> dict[str, Any]:
        """This namespace's webhook (URL, include_text, times; never its secret), or
        ``NotFound``."""
        return webhooks.webhook(self._engine)

    def remove_webhook(self) -> dict[str, Any]:
        """Stop sending events; those not yet delivered (and dead ones) are dropped."""
        return webhooks.remove(self._engine)

    def rotate_webhook_secret(self, *, overlap_seconds: int = 0) -> dict[str, Any]:
        """A new signing secret, in this answer only. The old one signs nothing from now on, or,
        with ``overlap_seconds`` (up to 7 days), signs beside the new one for that long (a
        second ``v1=`` in each signature), so receivers can switch without refusing one."""
        return webhooks.rotate_secret(self._engine, overlap_seconds=overlap_seconds)

    def webhook_deliveries(
        self, *, status: str | None = None, limit: int = 100
    ) -> dict[str, list[dict[str, Any]]]:
        """This namespace's outbox, newest first: ``pending``, ``sending``, ``delivered`` or
        ``dead`` (the dead letters), with attempts and the last error code; never text."""
        rows = webhooks.deliveries(self._engine, status=status, limit=limit)
        return {"results": [webhooks.public_delivery(row) for row in rows]}

    def retry_webhook_delivery(self, delivery_id: str) -> dict[str, Any]:
        """Send a dead delivery again, its attempts reset."""
        row = webhooks.retry_delivery(self._engine, delivery_id)
        if self._webhook_worker is not None:
            self._webhook_worker.notify()
        return webhooks.public_delivery(row)

    def webhook_worker(self, *, clock: webhooks.Clock | None = None) -> webhooks.WebhookWorker:
        """A delivery worker over this store, not started: ``deliver_due()`` sends what is due
        now by ``clock`` (tests pass their own), ``start()`` runs it in threads."""
        return webhooks.WebhookWorker(self._store, self._engine.view, self.settings, clock=clock)

    def start_webhooks(self, workers: int | None = None) -> webhooks.WebhookWorker:
        """Start delivering webhook events in this process (the server does it at start)."""
        if workers is not None:
            check_count("workers", workers, 16)
        if self._webhook_worker is None:
            count = workers if workers is not None else max(1, self.settings.webhook_workers)
            self._webhook_worker = self.webhook_worker().start(count)
        return self._webhook_worker

    def stop_webhooks(self) -> None:
        """Stop the delivery threads (a delivery being sent finishes). Idempotent."""
        worker, self._webhook_worker = self._webhook_worker, None
        if worker is not None:
            worker.stop()

    # --- search and read ----------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        filters: Mapping[str, Any] | None = None,
        top_k: int = 10,
        threshold: float | None = None,
        explain: bool = False,
        mode: Mode = "hybrid",
    ) -> dict[str, list[dict[str, Any]]]:
        """The ``top_k`` memories of the scope closest to ``query`` by meaning and by words.

        Each hit's ``score`` is a relevance in [0, 1] with fixed constants (a logistic of the
        cosine similarity combined with the saturated BM25 score; see
        ``memvault.retrieval.relevance``), never rising down the list. ``threshold`` drops the
        hits whose shown ``score`` is lower; ``explain`` adds each hit's raw parts (``fused``,
        the cosine ``vector``, ``bm25``, their ranks and ``relevance``; with recency decay or
        reinforcement on, also ``unadjusted``, ``adjusted``, ``decay``, ``recency`` and
        ``reinforcement``); ``mode`` ``vector`` or ``bm25`` uses one side only.
        """
        check_text(query, self.settings.max_text_bytes, "query")
        scope, node = reads.query_scope(user_id, agent_id, run_id, filters)
        top_k = check_top_k(top_k)
        if mode not in ("hybrid", "vector", "bm25"):
            raise InvalidInput("mode must be hybrid, vector or bm25")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int | float)
        ):
            raise InvalidInput("threshold must be a number")
        needs_vector = mode != "bm25"
        # Outside the search slots, so that queries waiting for a slot are embedded together.
        query_vector = self._embed_query(query, scope) if needs_vector else None

        results, ids = self._search(
            query, query_vector, scope, node, top_k, threshold, explain=explain, mode=mode
        )
        self._access.record(self.namespace, ids)
        return {"results": results}

    def _search(
        self,
        query: str,
        query_vector: npt.NDArray[np.float32] | None,
        scope: Scope,
        node: FilterNode | None,
        top_k: int,
        threshold: float | None,
        *,
        explain: bool = False,
        mode: Mode = "hybrid",
    ) -> tuple[list[dict[str, Any]], list[str]]:
        def run() -> tuple[list[dict[str, Any]], list[str]]:
            with self._search_slots:
                hits = self._get_searcher().search(
                    (lambda: query_vector) if query_vector is not None else None,
                    query,
                    scope,
                    node,
                    top_k=top_k,
                    threshold=threshold,
                    mode=mode,
                )
            found = reads.search_results(self._engine, hits, explain=explain)
            return found, [hit.row.id for hit in hits]

        return reads.settled(self._engine, run)

    def get(self, memory_id: str) -> dict[str, Any] | None:
        """One memory of this namespace by id, or None (also for expired memories)."""
        return reads.get(self._engine, memory_id)

    def get_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        filters: Mapping[str, Any] | None = None,
        top_k: int = 100,
        offset: int = 0,
    ) -> dict[str, list[dict[str, Any]]]:
        """The scope's memories that match ``filters``, newest first, at most ``top_k``
        (after skipping ``offset``, for pages)."""
        scope, node = reads.query_scope(user_id, agent_id, run_id, filters)
        return {"results": reads.rows(self._engine, scope, node, top_k=top_k, offset=offset)}

    def get_page(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        filters: Mapping[str, Any] | None = None,
        top_k: int = 100,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """``get_all``'s page and ``count``'s total, the filter run once for both."""
        scope, node = reads.query_scope(user_id, agent_id, run_id, filters)
        return reads.page(self._engine, scope, node, top_k=top_k, offset=offset)

    def count(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> int:
        """How many memories of the scope match ``filters`` (expired ones are not counted)."""
        scope, node = reads.query_scope(user_id, agent_id, run_id, filters)
        return reads.count(self._engine, scope, node)

    def history(self, memory_id: str) -> list[dict[str, Any]]:
        """Every change to a memory, oldest first, kept after the memory is deleted."""
        return reads.history(self._engine, memory_id)

    # --- entities -----------------------------------------------------------------------------

    def entities(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
    ) -> dict[str, list[dict[str, Any]]]:
        """The people, places, things, dates and titles the scope's memories name, the most
        named first: ``{"results": [{"name", "memories"}]}`` (``memories``: how many live
        memories name it). Found by rules when a memory is written (see
        ``memvault.retrieval.entities``), sealed with the scope's key.

        >>> memory.entities(user_id="alice")["results"][:1]  # doctest: +SKIP
        [{'name': 'Lisbon', 'memories': 3}]
        """
        scope = Scope.of(user_id, agent_id, run_id)
        found = reads.settled(self._engine, lambda: entities.entities(self._engine, scope, limit))
        return {"results": found}

    def related(self, memory_id: str, *, limit: int = 10) -> dict[str, list[dict[str, Any]]]:
        """The memories that name the same entities as ``memory_id`` (in the same scope), best
        first: each as ``get`` shows it, with ``score`` (the share of the memory's entity weight
        they share, rare entities weighing more, in [0, 1]) and ``entities`` (the shared names).
        Raises ``NotFound`` for a memory this namespace does not hold."""
        found = reads.settled(
            self._engine, lambda: entities.related(self._engine, memory_id, limit)
        )
        return {"results": found}

    def rebuild_entities(
        self, *, batch: int = 200, on_progress: Callable[[int], None] | None = None
    ) -> dict[str, Any]:
        """Extract the entities of memories written before entities existed (a batch per
        transaction; ``on_progress(done so far)``); a no-op once every memory has them."""
        result = entities.rebuild(self._engine, batch=batch, on_progress=on_progress)
        return {"namespace": self.namespace, **result}

    # --- update and delete --------------------------------------------------------------------

    def update(
        self,
        memory_id: str,
        text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        data: str | None = None,
    ) -> dict[str, Any]:
        """Replace a memory's text and/or metadata; the old text goes to its history.

        ``data`` is mem0's name for ``text``.
        """
        text = text if text is not None else data
        if text is None and metadata is None:
            raise InvalidInput("update needs text or metadata")
        if text is not None:
            check_text(text, self.settings.max_text_bytes)
        new_metadata = (
            None if metadata is None else check_metadata(metadata, self.settings.max_metadata_bytes)
        )
        # The namespace's secret policy applies to an update as to an add.
        policy = self._store.namespace_settings(self.namespace)["secret_policy"]
        if text is not None:
            text = apply_policy(text, policy, "the text")[0]
        if new_metadata is not None:
            new_metadata = apply_policy(new_metadata, policy, "metadata")[0]
        vector = self._embed([text])[0] if text is not None else None
        # Instruction-like text is flagged as in add: the flag follows the memory's new text.
        change = Update(check_id("memory_id", memory_id), text, new_metadata, vector, flag=True)
        result = changes.apply(self._engine, [change])[0]
        for extra in ("event", "previous_memory"):
            result.pop(extra)
        return {"message": "Memory updated successfully!", "result": result}

    def delete(self, memory_id: str) -> dict[str, str]:
        """Delete one memory; its history stays (with a DELETE event) until the user is erased."""
        result = changes.apply(self._engine, [Delete(check_id("memory_id", memory_id))])[0]
        return {"message": "Memory deleted successfully!", "id": result["id"]}

    def delete_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Delete every memory of a scope (a scope id is required: this never empties a store)."""
        scope = Scope.of(user_id, agent_id, run_id)
        ids = self._store.ids_matching(self.namespace, scope, None, None)
        plan: list[Change] = [Delete(memory_id, missing_ok=True) for memory_id in sorted(ids)]
        results = changes.apply(self._engine, plan) if plan else []
        return {
            "message": "Memories deleted successfully!",
            "deleted": sum(result["event"] == "DELETE" for result in results),
        }

    # --- a user's rights --------------------------------------------------------------------

    def erase_user(self, user_id: str) -> dict[str, Any]:
        """GDPR erase: destroy the user's data key, then delete their memories and history.

        Copies of the database made before (backups, replicas) cannot be decrypted afterwards.
        Raises ``NotFound`` for a user this namespace never had.
        """
        return rights.erase_user(self._engine, user_id)

    def export_user(self, user_id: str) -> Iterator[dict[str, Any]]:
        """GDPR export: every memory of the user with metadata and history, as JSON-ready dicts."""
        return rights.export_user(self._engine, user_id)

    def namespace_settings(self) -> dict[str, Any]:
        """This namespace's rules: ``secret_policy``, ``default_ttl_seconds``,
        ``extraction_instructions`` and ``reconciliation_instructions``."""
        return self._store.namespace_settings(self.namespace)

    def configure_namespace(
        self,
        *,
        secret_policy: str | None = None,
        default_ttl_seconds: float | bool | None = False,
        extraction_instructions: str | None = None,
        reconciliation_instructions: str | None = None,
    ) -> dict[str, Any]:
        """Set the secret policy (``redact``, ``reject``, ``allow``), the default TTL of new
        memories (seconds; ``None`` for none), and the operator's instructions added to the
        inference prompts of this namespace (up to 4,000 characters each; ``""`` removes them):
        what to extract, what to leave out, how to merge. They come after memvault's rules and
        before the answer format, so the model still answers in the shape memvault parses and
        still treats the conversation as data. Unnamed settings keep their value."""
        rules = changed_rules(
            self.namespace_settings(),
            secret_policy=secret_policy,
            default_ttl_seconds=default_ttl_seconds,
            extraction_instructions=extraction_instructions,
            reconciliation_instructions=reconciliation_instructions,
        )
        self._store.set_namespace_settings(self.namespace, rules)
        return self.namespace_settings()

    def rotate_user_key(self, user_id: str) -> dict[str, Any]:
        """Re-encrypt every memory, history event and job (request and result) of a user under
        a new data key, in batches, while reads, writes and job workers go on; the old key is
        destroyed at the end."""
        return rekey.rotate_user_key(self._engine, user_id)

    def rotate_master_key(self, *, retire_old: bool = False) -> dict[str, Any]:
        """Rewrap every data key under a new master key version, without stopping readers.

        With the key file (the embedded default) a new random version is added to the file and
        becomes current; with ``MEMVAULT_MASTER_KEY`` the first version listed is current and
        the old ones must still be listed until this has run. ``retire_old`` then forgets every
        other version, so old key material no longer opens the store.
        """
        return rekey.rotate_master_key(self._keyring, retire_old=retire_old)

    def reseal_legacy(
        self, *, batch: int = 200, on_progress: Callable[[int, int], None] | None = None
    ) -> dict[str, int]:
        """Move rows written by an older version to the current seal format (owner columns
        bound), ``batch`` rows per transaction; ``on_progress(memories, events)`` after each.
        Runs on open; safe to call again (a no-op once done)."""
        return reseal.reseal_legacy(self._engine, batch=batch, on_progress=on_progress)

    def purge_expired(self) -> int:
        """Delete expired memories of every namespace now (the server also does it hourly)."""
        return rights.purge_expired(self._engine)

    def reset(self) -> None:
        """Erase this namespace: its data keys first (so copies become unreadable), then rows."""
        with self._store.transaction() as tx:  # the namespace's lock first, alone
            self._engine.lock_owners(tx, [], alone=True)
            destroyed = self._keyring.destroy_all(self.namespace)
            tx.delete_namespace(self.namespace)
            tx.delete_jobs(self.namespace)
            # Its waiting events name its users and memories: they go too (the webhook stays).
            tx.delete_deliveries(self.namespace)
        for scope_id in destroyed:  # each scope's sealed graph file too
            self._cache.drop(scope_id)
        self._cache.drop()
        self._store.forget_decrypted()


def _written_times(created: object, updated: object) -> tuple[str | None, str | None]:
    """An add item's ``created_at``/``updated_at`` in stored form: not in the future (past a
    little clock skew), and the update not before the creation."""
    first = parse_datetime("created_at", created)
    last = parse_datetime("updated_at", updated)
    latest = datetime.now(UTC) + CLOCK_SKEW
    for name, moment in (("created_at", first), ("updated_at", last)):
        if moment is not None and moment > latest:
            raise InvalidInput(f"{name} is in the future")
    if first is not None and last is not None and last < first:
        raise InvalidInput("updated_at is before created_at")
    if first is None and last is not None:
        raise InvalidInput("updated_at needs created_at")
    return (None if first is None else iso(first)), (None if last is None else iso(last))


def _observed(adds: Sequence[Add]) -> datetime:
    """When an add's messages were sent: its ``created_at`` if given, else now (relative times
    in the messages resolve against it)."""
    given = adds[0].created_at if adds else None
    return datetime.fromisoformat(given) if given else datetime.now(UTC)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _exactly(scope: Scope) -> FilterNode | None:
    """A filter that the owner columns a scope leaves unnamed are absent (None when it names
    all three): a search by agent only then finds no user's memories of that agent."""
    absent = [name for name in ("user_id", "agent_id", "run_id") if getattr(scope, name) is None]
    if not absent:
        return None
    return parse_filter({"AND": [{"NOT": [{name: "*"}]} for name in absent]})
