"""A deadline for receiving a whole request, which uvicorn does not have.

uvicorn's ``timeout_keep_alive`` closes a connection that is idle between requests, and nothing
else: a client that sends half a request head (or a head and half its body) and waits holds its
connection, a file descriptor and a task for ever (slowloris). The head never reaches the app, so
no middleware can time it out; it is done here, in uvicorn's HTTP protocol.

``deadline_protocol(seconds)`` is uvicorn's own HTTP protocol class (``httptools`` when installed,
else ``h11``) with one timer per connection: armed when the connection opens and again when a
response completes, it fires ``seconds`` later. If by then the server still waits for the request
head, or for the rest of a body, the client gets ``408`` (when no answer has started) and the
connection is closed. A request received in full is never cut off, however long the app takes.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["deadline_protocol"]

_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 24\r\n"
    b"\r\n"
    b"request not sent in time"
)


def _base_protocol() -> type[Any]:
    """The class uvicorn's ``http="auto"`` would pick."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return AutoHTTPProtocol


def deadline_protocol(seconds: float, base: type[Any] | None = None) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (or ``base``), closing a connection whose request is not fully
    received within ``seconds`` of the connection opening or of the previous answer."""
    parent: type[Any] = base or _base_protocol()

    class RequestDeadline(parent):  # type: ignore[misc]
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            transport: asyncio.Transport = self.transport
            if transport.is_closing() or transport.get_protocol() is not self:
                return  # closed already, or upgraded (a WebSocket has its own timeouts)
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete and not cycle.more_body:
                return  # the whole request is in: the app is working on it
            if cycle is not None and cycle.more_body and cycle.response_started:
                transport.close()  # answered (or answering) a body that never came: no 408
                return
            # Waiting for a head, or for the rest of a body nobody has answered yet.
            transport.write(_TIMEOUT_ANSWER)
            transport.close()

    RequestDeadline.__name__ = f"RequestDeadline{parent.__name__}"
    return RequestDeadline
