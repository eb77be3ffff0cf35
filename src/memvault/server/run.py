"""``memvault serve``: uvicorn on the app, and the first admin key on first start.

FastAPI and uvicorn are imported inside ``serve``, after the model has started loading in the
background (``server.warmup``), so the load runs beside them rather than in the first search."""

from __future__ import annotations

import errno
import gc
import importlib.util
import socket
from typing import Any

from rich.console import Console
from rich.panel import Panel

from memvault.config import Settings
from memvault.errors import AddressUnavailable, MissingDependency
from memvault.memory import Memory
from memvault.server.checks import check_settings
from memvault.server.warmup import ModelWarmup

__all__ = ["KEEP_ALIVE_SECONDS", "first_start_key", "listen", "serve", "uvicorn_options"]

# How long an idle keep-alive connection stays open. A client must stop reusing an idle
# connection before that (memvault's own clients drop theirs after 2 s: client.py), or a
# request it sends as the server closes the connection is lost to a reset.
KEEP_ALIVE_SECONDS = 5


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How ``serve`` runs uvicorn. Proxy headers are read only from ``forwarded_allow_ips``:
    uvicorn's own default believes ``X-Forwarded-For`` from 127.0.0.1, so any local process
    could pick the address its failed logins count against and the audit log records."""
    from memvault.server.deadline import deadline_protocol

    proxies = [entry.strip() for entry in settings.forwarded_allow_ips]
    return {
        # Limits against clients that hold connections: a whole request must arrive within
        # request_timeout_seconds (uvicorn has no head or body timeout: see server.deadline),
        # idle connections close after 5 s, at most max_connections are served at once, and
        # a request head is at most 16 KiB.
        "http": deadline_protocol(settings.request_timeout_seconds),
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": 16 * 1024,
        "timeout_graceful_shutdown": 30,
        "host": settings.host,
        "port": settings.port,
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies or None,
        "server_header": False,
        "log_level": "warning",
        "access_log": False,
    }


def first_start_key(memory: Memory) -> str | None:
    """An admin key for ``default`` when the store has no key at all; None afterwards."""
    keys = memory.api_keys
    if keys.count() > 0:
        return None
    return keys.create("default", "admin", name="first admin (memvault serve)").key


def _print_first_key(console: Console, key: str, base: str) -> None:
    """The key in a box, and curl lines printed unwrapped so they can be copied as they are."""
    console.print(
        Panel.fit(
            f"[bold]Admin API key[/bold] (shown once, store it now):\n\n[green]{key}[/green]",
            title="first start",
            border_style="yellow",
        ),
        soft_wrap=True,
    )
    auth = f"-H 'Authorization: Bearer {key}' -H 'Content-Type: application/json'"
    add = '{"messages": "I like green tea", "user_id": "alice"}'
    search = '{"query": "drinks", "user_id": "alice"}'
    console.print("Try it:", highlight=False)
    for body, path in ((add, "/v1/memories/"), (search, "/v1/memories/search/")):
        console.print(
            f"  curl -s {auth} -d '{body}' {base}{path}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything is printed or created: a port in use is one
    clear error (uvicorn would log a line and exit 3 after the banner and the first admin key).
    Bound as uvicorn binds (IPv6 for an address with a colon, ``SO_REUSEADDR``); uvicorn
    listens on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # sockets whose proto says TCP, and accepted sockets inherit it. With proto 0 every answer
    # written in two parts waited for the client's delayed ACK: 40 ms on each request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            reason = "the address is already in use (another server?)"
        elif exc.errno == errno.EACCES:
            reason = "permission denied (ports below 1024 need privileges)"
        else:
            reason = exc.strerror or type(exc).__name__
        raise AddressUnavailable(
            f"cannot listen on {host}:{port}: {reason}; stop the other process or choose"
            " another --port / --host (MEMVAULT_PORT, MEMVAULT_HOST)"
        ) from None
    except BaseException:
        sock.close()
        raise
    return sock


def settle_heap() -> int:
    """Move every object the start made (modules, FastAPI's and pydantic's schemas: about
    110,000 tracked objects) out of the garbage collector's view; the number moved.

    They live as long as the process, but each full collection walked them all again: in a
    node with 100 scopes loaded, 170,000 objects, a pause of 0.1-0.5 s on a busy machine
    inside whichever request triggered it (the REST p95/p99 tail). After ``gc.freeze`` a full
    collection walks only what was made since (scope indexes, requests). Garbage among the
    frozen objects stays; start-up makes little."""
    gc.freeze()
    return gc.get_freeze_count()


def serve(settings: Settings, console: Console | None = None) -> None:
    for module in ("fastapi", "uvicorn"):  # found, not imported: they load after the model starts
        if importlib.util.find_spec(module) is None:
            raise MissingDependency("the server needs: pip install 'memvault[server]'")
    console = console or Console()
    check_settings(settings)
    sock = listen(settings.host, settings.port)
    try:
        memory = Memory(settings=settings)
    except BaseException:
        sock.close()
        raise
    try:
        model = ModelWarmup(memory)
        model.start()
        import uvicorn

        from memvault.server.app import create_app

        port = sock.getsockname()[1]  # the one the system picked for --port 0
        base = f"http://{settings.host}:{port}"
        key = first_start_key(memory) if settings.auth else None
        if key is not None:
            _print_first_key(console, key, base)
        dashboard = f", dashboard {base}/ui" if settings.dashboard else ""
        console.print(
            f"memvault serving {base}  (API docs {base}/docs, OpenAPI {base}/openapi.json"
            f"{dashboard})\n"
            f"data: {memory.home}   keys: memvault keys create --role write [--user ID]"
        )
        app = create_app(settings, memory, warmup=model)
        settle_heap()
        server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))
        server.run(sockets=[sock])
    finally:
        sock.close()
        memory.close()
