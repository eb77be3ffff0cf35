"""A request must arrive in full within ``request_timeout_seconds`` (slowloris): its head, and
the body of a request the app is reading. A request received in full is never cut off."""

from __future__ import annotations

import socket
import time

import httpx


def _half(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(data)
    sock.settimeout(5)
    return sock


def _answer_and_delay(sock: socket.socket) -> tuple[bytes, float]:
    started = time.monotonic()
    try:
        data = sock.recv(4096)
    finally:
        sock.close()
    return data, time.monotonic() - started


def test_a_half_sent_head_gets_408(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(request_timeout_seconds=1)
    sock = _half(server.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    data, waited = _answer_and_delay(sock)
    assert data.startswith(b"HTTP/1.1 408"), data
    assert waited < 3


def test_a_half_sent_body_of_a_valid_key_is_cut_off(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(request_timeout_seconds=1)
    key = server.key("write").encode()
    sock = _half(
        server.port,
        b"POST /v1/memories/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + key
        + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    data, waited = _answer_and_delay(sock)
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
    assert waited < 3
    with server.http() as http:  # the server carries on
        assert http.get("/healthz").status_code == 200


def test_keep_alive_requests_each_get_their_own_deadline(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(request_timeout_seconds=1)
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        for _ in range(3):
            assert http.get("/healthz").status_code == 200
            time.sleep(0.6)  # 1.8 s on one connection in all: each request is on time
