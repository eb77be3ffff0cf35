"""No network but loopback, in the test process and in every Python process a test starts.

``tests/conftest.py`` imports this module (so the guard holds from collection on, session
fixtures included) and puts this folder first on ``PYTHONPATH``: Python imports
``sitecustomize`` at start-up, so a ``memvault serve``, a CLI run or a worker started by a test
is guarded too. Unix sockets (the embedded Postgres) are not network and pass.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0]
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConnectionRefusedError(f"tests may only reach loopback, not {host}")


def _loopback_only(self: socket.socket, address: Any) -> Any:
    _check(self, address)
    return _real_connect(self, address)


def _loopback_only_ex(self: socket.socket, address: Any) -> Any:
    _check(self, address)
    return _real_connect_ex(self, address)


socket.socket.connect = _loopback_only  # type: ignore[method-assign]
socket.socket.connect_ex = _loopback_only_ex  # type: ignore[method-assign]
