"""A blocking MCP session (the official client over streamable HTTP) for Hypothesis tests, and
the invariants of a tool's answer."""

from __future__ import annotations

import json
import re
from contextlib import AbstractContextManager, ExitStack
from types import TracebackType
from typing import Any

import httpx2
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError as McpError

from mcp import Client
from tests.fuzz.hostile import materialize
from tests.fuzz.rest import INTERNAL_CODES
from tests.server.conftest import RunningServer

# What only an unexpected exception (not a MemvaultError) leaves in a tool error's text.
INTERNAL_TEXT = re.compile(
    r"Traceback|internal error|RecursionError|UnicodeEncodeError|UnicodeDecodeError|sqlite3|"
    r"OperationalError|KeyError|TypeError|AttributeError|IndexError|OverflowError|"
    r"\[(" + "|".join(sorted(INTERNAL_CODES)) + r")\]",
    re.IGNORECASE,
)
MEMVAULT_ERROR = re.compile(r"^\[[a-z][a-z0-9_]*\] ")
# JSON-RPC errors a server may answer for a request it refuses (not -32603, internal error).
REFUSALS = {-32700, -32600, -32601, -32602}


UNSENDABLE = object()
# pydantic (in the client) refuses to serialize deeper documents; the REST tests send them.
CLIENT_MAX_DEPTH = 200


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((child, level + 1) for child in item)
    return deepest


class McpSession(AbstractContextManager["McpSession"]):
    """``session.call(tool, args)`` from synchronous code; one session for many calls."""

    def __init__(self, server: RunningServer, key: str) -> None:
        self._server = server
        self._key = key
        self._stack = ExitStack()
        self._portal: BlockingPortal | None = None
        self._client: Client | None = None

    def __enter__(self) -> McpSession:
        self._portal = self._stack.enter_context(start_blocking_portal())
        self._client = self._stack.enter_context(
            self._portal.wrap_async_context_manager(self._open())
        )
        return self

    def _open(self) -> Any:
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def opened() -> Any:
            headers = {"Authorization": f"Bearer {self._key}"}
            async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
                async with Client(
                    streamable_http_client(f"{self._server.base_url}/mcp/", http_client=http)
                ) as client:
                    yield client

        return opened()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.__exit__(exc_type, exc, tb)

    def tools(self) -> list[Any]:
        assert self._portal is not None and self._client is not None
        return list(self._portal.call(self._client.list_tools).tools)

    def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        """The tool's result, or the McpError the server answered (a JSON-RPC refusal), or
        ``UNSENDABLE`` for arguments the official client cannot send (it writes UTF-8 without
        escapes, so a lone surrogate kills its session; the REST tests send those)."""
        assert self._portal is not None and self._client is not None
        arguments = materialize(arguments)
        if _depth(arguments) > CLIENT_MAX_DEPTH:
            return UNSENDABLE
        try:
            json.dumps(arguments, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return UNSENDABLE
        try:
            return self._portal.call(self._client.call_tool, tool, arguments)
        except McpError as exc:
            return exc


def check_tool_result(result: Any, forbidden: list[str], what: str) -> None:
    """No internal error, no traceback text, no foreign canary in content or structured content."""
    if result is UNSENDABLE:
        return
    if isinstance(result, McpError):
        code = result.error.code
        assert code in REFUSALS, f"{what}: JSON-RPC error {code} {result.error.message[:300]}"
        text = result.error.message
    else:
        parts = [getattr(c, "text", "") or "" for c in result.content]
        text = "\n".join(parts)
        if result.structured_content is not None:
            text += json.dumps(result.structured_content, ensure_ascii=False, default=str)
        if result.is_error:
            bad = INTERNAL_TEXT.search(text)
            assert bad is None, f"{what}: internal error in the tool answer: {text[:400]!r}"
    leaked = [marker for marker in forbidden if marker in text]
    assert not leaked, f"{what}: leaked {leaked[:4]}"
