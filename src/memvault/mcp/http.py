"""``/mcp`` on the REST server: streamable HTTP behind the same API keys, rate limits and roles.

A small ASGI gateway passes the REST server's ``Gate`` (the same rate limiter and failure audit)
before any MCP message is read, then hands the request to one of two MCP servers: keys the policy
does not permit ``memories.write`` reach a server that only has the read tools (so they do not
even see the others), the others reach the full one. Tools resolve the caller again from the
request's headers, ask the same policy, and work inside the key's namespace (and user). Host and
Origin checks are the server's ``HostGuard``'s, so the SDK's own are off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Receive, Scope, Send

from memvault.config import Settings
from memvault.errors import MemvaultError
from memvault.mcp.tools import build_server
from memvault.memory import Memory
from memvault.security.policy import Action, authorize, permits
from memvault.security.principal import Principal
from memvault.server.auth import Gate, bearer
from memvault.server.errors import error_response

__all__ = ["McpGateway"]


class McpGateway:
    """The ASGI app mounted at ``/mcp``."""

    # The least any caller needs to get in; each tool then asks for its own action.
    action = Action.MEMORIES_READ

    def __init__(self, memory: Memory, gate: Gate, settings: Settings) -> None:
        self._memory = memory
        self._gate = gate
        self._auth = settings.auth
        self._servers = {w: build_server(self._resolve, writable=w) for w in (False, True)}

    def _resolve(self, ctx: Context) -> Principal:
        if not self._auth:
            return Principal(self._memory)
        headers = dict(ctx.headers or {})
        key = self._memory.api_keys.authenticate(bearer(headers.get("authorization")))
        return Principal.of_key(self._memory, key)

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Run the session managers while the app runs (a manager runs once: make new ones)."""
        async with AsyncExitStack() as stack:
            for server in self._servers.values():
                server.streamable_http_app(
                    streamable_http_path="/",
                    transport_security=TransportSecuritySettings(
                        enable_dns_rebinding_protection=False
                    ),
                )
                await stack.enter_async_context(server.session_manager.run())
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        principal = Principal(self._memory)
        if self._auth:
            headers = dict(scope["headers"])
            authorization = headers.get(b"authorization", b"").decode("latin-1") or None
            state = scope.setdefault("state", {})
            address = state.get("client_address") or "unknown"
            try:
                # Before any byte of the body is read, off the event loop (as for REST).
                key = await anyio.to_thread.run_sync(
                    self._gate.authenticate, authorization, address, f"{scope['method']} /mcp"
                )
                state.update(key_id=key.id, namespace=key.namespace, bound_user=key.user_id)
                principal = Principal.of_key(self._memory, key)
                authorize(principal, self.action)
            except MemvaultError as exc:
                await error_response(exc)(scope, receive, send)
                return
        writable = permits(principal, Action.MEMORIES_WRITE)
        await self._servers[writable].session_manager.handle_request(scope, receive, send)
