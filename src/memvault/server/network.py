"""Who is on the other end, and which names the server answers to.

``Proxies``: the client address used for rate limits and the audit log is the socket peer, unless
the peer is a proxy listed in ``forwarded_allow_ips``; only then is ``X-Forwarded-For`` read. A
client that may choose its own address dodges the failed-login limit, locks out an address of
its choice and writes what it likes into the audit log.

``HostGuard``: on a loopback address (or when ``allowed_hosts`` is set) a request naming another
``Host`` is refused with 421 ``host_not_allowed``, and a browser ``Origin`` that is neither such a
host nor a CORS origin with 403 ``origin_not_allowed``. Otherwise a web page whose name was rebound
to 127.0.0.1 could use the API (with ``MEMVAULT_AUTH=false``, every memory). It guards every
route, ``/mcp`` included: the MCP SDK's own check is off, so there is one rule for both.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from memvault.errors import HostNotAllowed, InvalidConfig, MemvaultError, OriginNotAllowed

__all__ = ["UNVERIFIED_ADDRESS", "HostGuard", "HostPolicy", "Proxies", "is_loopback"]

# The address of a request whose peer was replaced, before memvault saw it, by a header value
# memvault does not trust (a server runner's own proxy-header handling): such requests share one
# budget, as they would share a proxy's address, instead of each naming its own.
UNVERIFIED_ADDRESS = "unverified-forwarded"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ip(value: str) -> str | None:
    """The IP address in ``1.2.3.4``, ``1.2.3.4:80``, ``::1`` or ``[::1]:80``, normalized."""
    value = value.strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class Proxies:
    def __init__(self, allowed: Iterable[str]) -> None:
        self.networks: list[Network] = []
        for entry in allowed:
            try:
                self.networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise InvalidConfig(
                    "forwarded_allow_ips lists proxy IP addresses or networks (10.0.0.0/8);"
                    " '*' and names are refused"
                ) from None

    def trusts(self, address: str | None) -> bool:
        ip = _ip(address) if address else None
        return ip is not None and any(ipaddress.ip_address(ip) in n for n in self.networks)

    def client_address(self, scope: Scope) -> str:
        client = scope.get("client")
        if not client:
            return "unknown"  # a Unix socket: no address (the same for every client)
        seen = _ip(str(client[0]))
        if seen is None:
            # Not an IP: a runner replaced the peer with a header value (``nobody-1``). Each
            # such value would be a fresh failed-login budget and a made-up audit ``source``.
            return UNVERIFIED_ADDRESS
        values = [v for k, v in scope.get("headers") or () if k == b"x-forwarded-for"]
        if not values:
            return seen
        chain = [_ip(part) for part in b",".join(values).decode("latin-1").split(",")]
        if self.trusts(seen):
            # A listed proxy: the nearest address it did not add itself is the client's.
            for ip in reversed(chain):
                if ip is None:
                    return seen  # a garbled header from our own proxy: blame the proxy
                if not self.trusts(ip):
                    return ip
            return chain[0] or seen
        if not self.networks and seen in chain:
            return UNVERIFIED_ADDRESS
        return seen


def _host_and_port(value: str) -> tuple[str, str] | None:
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return host, rest[1:]
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, ""
    if not port.isdigit() or ":" in host:
        return None
    return host, port


class HostPolicy:
    def __init__(self, bind_host: str, allowed_hosts: Iterable[str], cors_origins: Iterable[str]):
        extra = [parsed for h in allowed_hosts if (parsed := _host_and_port(h)) is not None]
        self.active = is_loopback(bind_host) or bool(extra)
        self._allowed = [(name, "") for name in (*LOOPBACK_NAMES, bind_host.lower())] + extra
        self._origins = {o.rstrip("/").lower() for o in cors_origins}

    def allows_host(self, value: str | None) -> bool:
        parsed = _host_and_port(value) if value else None
        if parsed is None:
            return False
        host, port = parsed
        return any(host == name and (not want or port == want) for name, want in self._allowed)

    def allows_origin(self, origin: str) -> bool:
        if origin.rstrip("/").lower() in self._origins:
            return True
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and self.allows_host(parts.netloc)


class HostGuard:
    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.policy.active:
            headers = dict(scope.get("headers") or ())
            host = headers.get(b"host")
            origin = headers.get(b"origin")
            refusal: MemvaultError | None = None
            if not self.policy.allows_host(host.decode("latin-1") if host else None):
                refusal = HostNotAllowed("this server does not answer to that Host name")
            elif origin is not None and not self.policy.allows_origin(origin.decode("latin-1")):
                refusal = OriginNotAllowed("requests from that Origin are not allowed")
            if refusal is not None:
                if scope["type"] == "http":
                    # Imported here: server.checks loads this module before FastAPI is imported.
                    from memvault.server.errors import error_response

                    await error_response(refusal)(scope, receive, send)
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)
