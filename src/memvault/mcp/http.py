"""``/mcp`` on the REST server: streamable HTTP behind the same API keys, rate limits and roles.

A small ASGI gateway authenticates the ``Authorization`` header before any MCP message is read,
then hands the request to one of two MCP servers: read keys reach a server that only has the read
tools (so they do not even see the others), write and admin keys reach the full one. Tools resolve
the caller again from the request's headers and work inside the key's namespace (and user).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from mcp.server.mcpserver import Context
from starlette.types import Receive, Scope, Send

from memvault.config import Settings
from memvault.errors import MemvaultError, RateLimited, Unauthorized
from memvault.mcp.tools import build_server
from memvault.memory import Memory
from memvault.security.principal import Principal
from memvault.server.ratelimit import RateLimiter

__all__ = ["McpGateway"]


def _bearer(headers: dict[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() in ("bearer", "token") and value.strip() else None


class McpGateway:
    """The ASGI app mounted at ``/mcp``."""

    def __init__(self, memory: Memory, limiter: RateLimiter, settings: Settings) -> None:
        self._memory = memory
        self._limiter = limiter
        self._auth = settings.auth
        self._host = settings.host
        self._servers = {w: build_server(self._resolve, writable=w) for w in (False, True)}

    def _resolve(self, ctx: Context) -> Principal:
        if not self._auth:
            return Principal(self._memory)
        key = self._memory.api_keys.authenticate(_bearer(dict(ctx.headers or {})))
        return Principal.of_key(self._memory, key)

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Run the session managers while the app runs (a manager runs once: make new ones)."""
        async with AsyncExitStack() as stack:
            for server in self._servers.values():
                server.streamable_http_app(streamable_http_path="/", host=self._host)
                await stack.enter_async_context(server.session_manager.run())
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        writable = True
        if self._auth:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            address = scope["client"][0] if scope.get("client") else "unknown"
            try:
                self._limiter.check_address(address)
                try:
                    key = self._memory.api_keys.authenticate(_bearer(headers))
                except Unauthorized:
                    self._limiter.fail(address)
                    raise
                self._limiter.spend(key.id)
            except MemvaultError as exc:
                await _refuse(send, exc)
                return
            scope.setdefault("state", {}).update(
                key_id=key.id, namespace=key.namespace, bound_user=key.user_id
            )
            writable = key.can("write")
        await self._servers[writable].session_manager.handle_request(scope, receive, send)


async def _refuse(send: Send, error: MemvaultError) -> None:
    body = json.dumps({"error": error.to_dict(), "detail": error.message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if isinstance(error, RateLimited):
        headers.append((b"retry-after", str(error.retry_after).encode()))
    if isinstance(error, Unauthorized):
        headers.append((b"www-authenticate", b'Bearer realm="memvault"'))
    await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
