"""``AsyncMemory``: the same API for asyncio, each call run in a worker thread.

The sync ``Memory`` is the one implementation; this facade only moves its blocking work (SQLite,
the ONNX model, numpy) off the event loop, so other coroutines keep running while a search waits.
Methods are generated from ``Memory``'s, keeping their signatures for type checkers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from memvault.embedding import Embedder
from memvault.memory import Memory

__all__ = ["AsyncMemory"]

P = ParamSpec("P")
R = TypeVar("R")


def _in_thread(
    method: Callable[Concatenate[Memory, P], R],
) -> Callable[Concatenate[AsyncMemory, P], Awaitable[R]]:
    async def call(self: AsyncMemory, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(method, self.sync, *args, **kwargs)

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


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

    add = _in_thread(Memory.add)
    add_many = _in_thread(Memory.add_many)
    search = _in_thread(Memory.search)
    get = _in_thread(Memory.get)
    get_all = _in_thread(Memory.get_all)
    update = _in_thread(Memory.update)
    delete = _in_thread(Memory.delete)
    delete_all = _in_thread(Memory.delete_all)
    history = _in_thread(Memory.history)
    process_inference = _in_thread(Memory.process_inference)
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
