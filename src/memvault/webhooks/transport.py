"""One webhook POST to an address already checked: the connection goes to that address only
(the name is never resolved again), TLS still checks the certificate against the host name,
no proxy from the environment, no redirect followed (a 3xx is a failed attempt)."""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from memvault.webhooks.destination import Destination

__all__ = ["Answer", "post"]

# What is read of an answer: the status is all that matters, the body is not kept.
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    status: int


def post(
    destination: Destination,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    tls: ssl.SSLContext | None = None,
) -> Answer:
    """POST ``body`` to the destination's checked address; ``OSError`` (and ``http.client``'s
    errors, which are ``OSError`` or ``HTTPException``) when it cannot be done."""
    target = destination.target
    pinned = destination.address

    def connect(_address: Any, timeout_: Any = None, source: Any = None) -> socket.socket:
        return socket.create_connection((pinned, target.port), timeout_, source)

    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=tls or ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    connection._create_connection = connect  # type: ignore[attr-defined]  # the pinned address
    try:
        connection.request(
            "POST", target.path, body=body, headers={"Host": target.host_header, **headers}
        )
        response = connection.getresponse()
        response.read(MAX_ANSWER_BYTES)
        return Answer(response.status)
    finally:
        connection.close()
