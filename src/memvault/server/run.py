"""``memvault serve``: uvicorn on the app, and the first admin key on first start.

FastAPI and uvicorn are imported inside ``serve``, after the model has started loading in the
background (``server.warmup``), so the load runs beside them rather than in the first search."""

from __future__ import annotations

import importlib.util
from typing import Any

from rich.console import Console
from rich.panel import Panel

from memvault.config import Settings
from memvault.errors import MissingDependency
from memvault.memory import Memory
from memvault.server.checks import check_settings
from memvault.server.warmup import ModelWarmup

__all__ = ["first_start_key", "serve", "uvicorn_options"]


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
        "timeout_keep_alive": 5,
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


def serve(settings: Settings, console: Console | None = None) -> None:
    for module in ("fastapi", "uvicorn"):  # found, not imported: they load after the model starts
        if importlib.util.find_spec(module) is None:
            raise MissingDependency("the server needs: pip install 'memvault[server]'")
    console = console or Console()
    check_settings(settings)
    memory = Memory(settings=settings)
    try:
        model = ModelWarmup(memory)
        model.start()
        import uvicorn

        from memvault.server.app import create_app

        base = f"http://{settings.host}:{settings.port}"
        key = first_start_key(memory) if settings.auth else None
        if key is not None:
            _print_first_key(console, key, base)
        console.print(
            f"memvault serving {base}  (API docs {base}/docs, OpenAPI {base}/openapi.json)\n"
            f"data: {memory.home}   keys: memvault keys create --role write [--user ID]"
        )
        app = create_app(settings, memory, warmup=model)
        uvicorn.run(app, **uvicorn_options(settings))
    finally:
        memory.close()
