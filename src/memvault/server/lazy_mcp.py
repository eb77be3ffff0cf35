"""``/mcp``, loaded on its first request: the MCP SDK builds ~640 pydantic models when imported
(about 1.5 CPU-seconds, half of a node's start), and a REST-only deployment never needs them.

The gateway (``memvault.mcp.http.McpGateway``) is imported and built in a worker thread by the
first request to ``/mcp``; its session managers then run in a task of the app's lifespan until
shutdown. Requests that arrive meanwhile wait for the same build.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from starlette.types import Receive, Scope, Send

from memvault.config import Settings
from memvault.errors import StorageBusy
from memvault.memory import Memory
from memvault.security.policy import Action
from memvault.server.auth import Gate
from memvault.server.errors import error_response

__all__ = ["LazyMcp"]


class LazyMcp:
    """The ASGI app at ``/mcp``; the real gateway is made on first use."""

    # As ``McpGateway``'s: the least any caller needs to get in (each tool then asks for its own).
    action = Action.MEMORIES_READ

    def __init__(self, memory: Memory, gate: Gate, settings: Settings) -> None:
        self._memory = memory
        self._gate = gate
        self._settings = settings
        self._gateway: Any = None
        self._lock = anyio.Lock()
        self._tasks: TaskGroup | None = None
        self._stop = anyio.Event()

    @staticmethod
    def available() -> bool:
        """Whether the ``mcp`` extra is installed (asked without importing it)."""
        return importlib.util.find_spec("mcp") is not None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The app's lifespan: a task group for the gateway's session managers, once made."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            try:
                yield
            finally:
                self._stop.set()
                self._tasks = None

    def _build(self) -> Any:
        from memvault.mcp.http import McpGateway

        return McpGateway(self._memory, self._gate, self._settings)

    async def _serve(self, gateway: Any, ready: anyio.Event) -> None:
        async with gateway.lifespan():
            ready.set()
            await self._stop.wait()

    async def _ready_gateway(self) -> Any:
        async with self._lock:
            if self._gateway is None:
                tasks = self._tasks
                if tasks is None:
                    raise StorageBusy("the server is starting or stopping: retry shortly")
                gateway = await anyio.to_thread.run_sync(self._build)
                ready = anyio.Event()
                tasks.start_soon(self._serve, gateway, ready)
                await ready.wait()
                self._gateway = gateway
        return self._gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            gateway = await self._ready_gateway()
        except StorageBusy as exc:
            await error_response(exc)(scope, receive, send)
            return
        await gateway(scope, receive, send)
