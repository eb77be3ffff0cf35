"""The one public API, and the only places where a surface may leave part of it out.

``Memory`` is the API. ``AsyncMemory`` has every one of its methods (awaited); ``Client`` and
``AsyncClient`` have every one the REST API offers, with the same names and parameters. What a
surface leaves out is declared here with the reason, and nowhere else:
tests/unit/test_surfaces.py compares the four with ``inspect.signature`` against these tables, so
a method added to ``Memory`` alone fails it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["ASYNC_ONLY", "ATTRIBUTES", "LOCAL_ONLY", "NOT_AWAITED"]

_OPERATOR = "the operator's, run where the store is"

LOCAL_ONLY: Final[Mapping[str, str]] = MappingProxyType(
    {
        "from_config": "builds an embedded store from settings; a client is a URL and a key",
        "namespaced": "a client's namespace is its API key's: use a key of the other namespace",
        "start_jobs": "the server runs its own job workers (MEMVAULT_JOB_WORKERS)",
        "stop_jobs": "the server runs its own job workers (MEMVAULT_JOB_WORKERS)",
        "start_webhooks": "the server runs its own delivery threads (MEMVAULT_WEBHOOK_WORKERS)",
        "stop_webhooks": "the server runs its own delivery threads (MEMVAULT_WEBHOOK_WORKERS)",
        "webhook_worker": "a delivery worker over the embedded store: the server runs its own",
        "process_inference": "a queue worker's entry point: over REST, add(infer=True) queues it",
        "purge_expired": "crosses every namespace, so no tenant's key may run it: the server "
        "does it hourly, `memvault gc` on demand",
        "rotate_master_key": "the master key never travels over the API: "
        + _OPERATOR
        + " (`memvault keys rotate-master`)",
        "reseal_legacy": "store maintenance that runs when a store opens: " + _OPERATOR,
        "rebuild_entities": "store maintenance after an upgrade: "
        + _OPERATOR
        + " (`memvault entities rebuild`)",
        "store_status": "where the files and databases are is "
        + _OPERATOR
        + " (`memvault db status`)",
        "key_store_status": "where the wrapped keys are is "
        + _OPERATOR
        + " (`memvault db status`)",
        "stats": "the dashboard's counts per user, agent and type, read where the store is; "
        "over REST, the dashboard at /ui shows them",
        "sealing_key": "a secret derived from a wrapped data key never leaves the store's "
        "process: " + _OPERATOR,
        "reset": "destroys every key of a namespace at once: not offered to API keys; erase "
        "users one by one (erase_user) or reset locally",
    }
)
"""``Memory`` methods the clients do not have: the REST API does not offer them."""

ATTRIBUTES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "api_keys": "the embedded store's key table (REST: /v1/keys/); AsyncMemory: .sync.api_keys",
        "engine": "the core below the API, for memvault's own tools; AsyncMemory: .sync.engine",
        "embedder": "loads the model on first use (blocking); AsyncMemory: .sync.embedder",
        "llm": "the configured chat model object; AsyncMemory: .sync.llm",
    }
)
"""``Memory`` properties: objects of the embedded store, not calls; no other surface has them."""

NOT_AWAITED: Final[Mapping[str, str]] = MappingProxyType(
    {
        "from_config": "a constructor, as AsyncMemory(...) itself",
        "from_memory": "a constructor over an open Memory",
        "namespaced": "a view over the same open store: no I/O",
    }
)
"""``AsyncMemory`` methods that are plain calls (every other one is awaited)."""

ASYNC_ONLY: Final[Mapping[str, str]] = MappingProxyType(
    {"from_memory": "wraps a Memory that is already open (the server and MCP share one)"}
)
"""``AsyncMemory`` methods ``Memory`` does not have."""
