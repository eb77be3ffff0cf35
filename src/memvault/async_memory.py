"""``AsyncMemory``: the same API for asyncio, each call run in a worker thread.

The sync ``Memory`` is the one implementation; this facade only moves its blocking work (SQLite,
the ONNX model, numpy) off the event loop, so other coroutines keep running while a search waits.
Methods are generated from ``Memory``'s, keeping their signatures for type checkers and for
``inspect.signature``; tests/unit/test_surfaces.py proves none is missing (``memvault.surface``
lists what differs, and why).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from types import GeneratorType, TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from memvault.embedding import Embedder
from memvault.memory import Memory

__all__ = ["AsyncMemory"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# Export lines read per worker-thread hop: one hop per line would cost more than the line.
EXPORT_CHUNK = 200


def _in_thread(
    method: Callable[Concatenate[Memory, P], R],
) -> Callable[Concatenate[AsyncMemory, P], Awaitable[R]]:
    async def call(self: AsyncMemory, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(method, self.sync, *args, **kwargs)

    # __wrapped__ makes inspect.signature (and help()) show Memory's own parameters.
    functools.update_wrapper(call, method)
    call.__qualname__ = f"AsyncMemory.{method.__name__}"
    return call


async def _in_chunks(lines: Iterator[T]) -> AsyncIterator[T]:
    """A lazy iterator read in a worker thread, a chunk per hop, never on the event loop."""
    try:
        while chunk := await asyncio.to_thread(list, itertools.islice(lines, EXPORT_CHUNK)):
            for line in chunk:
                yield line
    finally:
        if isinstance(lines, GeneratorType):
            # Left early: free the store's cursor now. A chunk still being read by a cancelled
            # hop cannot be closed from here ("already executing"); it ends with that thread.
            with contextlib.suppress(ValueError):
                lines.close()


class AsyncMemory:
    """``await m.add(...)``, ``await m.search(...)``: ``Memory`` for asyncio code."""

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        embedder: str | Embedder | None = None,
        namespace: str | None = None,
        **options: Any,
    ) -> None:
        self.sync = Memory(home, embedder=embedder, namespace=namespace, **options)

    @classmethod
    def from_memory(cls, memory: Memory) -> AsyncMemory:
        instance = cls.__new__(cls)
        instance.sync = memory
        return instance

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AsyncMemory:
        """Build from a plain dict of settings (the same names as ``MEMVAULT_*``, lower case)."""
        return cls.from_memory(Memory.from_config(config))

    def namespaced(self, namespace: str) -> AsyncMemory:
        """This store seen from another namespace (``Memory.namespaced``): no I/O, not awaited."""
        return AsyncMemory.from_memory(self.sync.namespaced(namespace))

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"

    # --- memories ---------------------------------------------------------------------------
    add = _in_thread(Memory.add)
    add_many = _in_thread(Memory.add_many)
    search = _in_thread(Memory.search)
    get = _in_thread(Memory.get)
    get_all = _in_thread(Memory.get_all)
    get_page = _in_thread(Memory.get_page)
    count = _in_thread(Memory.count)
    history = _in_thread(Memory.history)
    entities = _in_thread(Memory.entities)
    related = _in_thread(Memory.related)
    update = _in_thread(Memory.update)
    delete = _in_thread(Memory.delete)
    delete_all = _in_thread(Memory.delete_all)

    # --- a user's rights, the namespace's rules -----------------------------------------------
    erase_user = _in_thread(Memory.erase_user)
    rotate_user_key = _in_thread(Memory.rotate_user_key)
    namespace_settings = _in_thread(Memory.namespace_settings)
    configure_namespace = _in_thread(Memory.configure_namespace)
    namespaces = _in_thread(Memory.namespaces)

    async def export_user(self, user_id: str) -> AsyncIterator[dict[str, Any]]:
        """GDPR export, as ``Memory.export_user``: the ``await`` raises ``NotFound`` for an
        unknown user before any line; the lines are then read lazily, off the event loop::

            async for line in await m.export_user("alice"): ...
        """
        lines = await asyncio.to_thread(self.sync.export_user, user_id)
        return _in_chunks(lines)

    # --- the job queue --------------------------------------------------------------------------
    job = _in_thread(Memory.job)
    jobs = _in_thread(Memory.jobs)
    retry_job = _in_thread(Memory.retry_job)
    start_jobs = _in_thread(Memory.start_jobs)
    stop_jobs = _in_thread(Memory.stop_jobs)
    configure_webhook = _in_thread(Memory.configure_webhook)
    webhook = _in_thread(Memory.webhook)
    remove_webhook = _in_thread(Memory.remove_webhook)
    rotate_webhook_secret = _in_thread(Memory.rotate_webhook_secret)
    webhook_deliveries = _in_thread(Memory.webhook_deliveries)
    retry_webhook_delivery = _in_thread(Memory.retry_webhook_delivery)
    webhook_worker = _in_thread(Memory.webhook_worker)
    start_webhooks = _in_thread(Memory.start_webhooks)
    stop_webhooks = _in_thread(Memory.stop_webhooks)
    process_inference = _in_thread(Memory.process_inference)

    # --- operations -----------------------------------------------------------------------------
    ping = _in_thread(Memory.ping)
    store_status = _in_thread(Memory.store_status)
    key_store_status = _in_thread(Memory.key_store_status)
    stats = _in_thread(Memory.stats)
    sealing_key = _in_thread(Memory.sealing_key)
    purge_expired = _in_thread(Memory.purge_expired)
    rotate_master_key = _in_thread(Memory.rotate_master_key)
    reseal_legacy = _in_thread(Memory.reseal_legacy)
    rebuild_entities = _in_thread(Memory.rebuild_entities)
    reset = _in_thread(Memory.reset)
    close = _in_thread(Memory.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
