"""``create_app(settings)``: the REST API on one ``Memory``, refusing insecure settings."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio.to_thread
import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route

from memvault import __version__
from memvault.config import Settings
from memvault.core.jobs import Handler
from memvault.errors import MemvaultError
from memvault.memory import Memory
from memvault.server.auth import Gate, KeyUsage
from memvault.server.checks import check_settings
from memvault.server.errors import install_error_handlers
from memvault.server.lazy_mcp import LazyMcp
from memvault.server.middleware import Observability, metrics_registry
from memvault.server.network import HostGuard, HostPolicy, Proxies, is_loopback
from memvault.server.ratelimit import RateLimiter
from memvault.server.routes import admin, entities, health, jobs, mem0, memories, users, webhooks
from memvault.server.ui import STATIC_PATH, mount_dashboard
from memvault.server.warmup import ModelWarmup

__all__ = ["PUBLIC_PATHS", "check_settings", "create_app", "is_loopback"]

DOCS_ASSETS = "/docs-assets"
# Served without a key. Every other route declares a security.policy Action (a test checks).
# The dashboard's sign-in and sign-out pages check their own form tokens (docs/dashboard.md).
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/docs",
        "/openapi.json",
        DOCS_ASSETS,
        "/ui/login",
        "/ui/logout",
        STATIC_PATH,
    }
)


def _configure_logging() -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    logging.getLogger("memvault").setLevel(logging.INFO)


def create_app(
    settings: Settings | None = None,
    memory: Memory | None = None,
    *,
    job_handler: Handler | None = None,
    warmup: ModelWarmup | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The FastAPI app. It opens (and at shutdown closes) a ``Memory`` unless given one.

    The job queue is on unless ``MEMVAULT_ASYNC_MODE=false``: an ``infer=True`` add answers 202
    and ``job_workers`` threads run the jobs (``job_handler``, for embedders and tests: what
    runs a job; default ``Memory.process_inference``). Only code that builds the app can set
    it; no request or setting names code to run. ``clock``: what dashboard sessions expire by.

    The embedding model starts loading now, in a background thread (``warmup``: one already
    started by ``serve``); ``/readyz`` says 503 until it is loaded."""
    settings = settings or (memory.settings if memory is not None else Settings.load())
    check_settings(settings)
    _configure_logging()
    owned = memory is None
    store = memory or Memory(settings=settings)
    store.async_mode = settings.async_mode is not False
    model = warmup or ModelWarmup(store)
    model.start()
    # One limiter for REST and /mcp: two would give each budget twice over.
    limiter = RateLimiter(
        settings.rate_limit,
        settings.auth_failure_limit,
        settings.redis_url,
        settings.namespace_rate_limit,
    )
    gate = Gate(store, limiter)
    gateway = LazyMcp(store, gate, settings) if LazyMcp.available() else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sweeper = (
            asyncio.create_task(_sweep_expired(store, settings.gc_interval_seconds))
            if settings.gc_interval_seconds
            else None
        )
        if settings.job_workers:
            store.start_jobs(settings.job_workers, handler=job_handler)
        if settings.webhook_workers and settings.webhook_allowed_hosts:
            store.start_webhooks(settings.webhook_workers)
        try:
            if gateway is None:
                yield
            else:
                async with gateway.running():
                    yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
            # Running jobs finish, or their claims go back to the queue for another worker.
            await anyio.to_thread.run_sync(store.stop_jobs)
            await anyio.to_thread.run_sync(store.stop_webhooks)
            if owned:
                store.close()

    app = FastAPI(
        title="memvault",
        version=__version__,
        summary="Encrypted long-term memory for AI agents, with mem0's API.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    registry, requests, latency = metrics_registry()
    app.state.settings = settings
    app.state.memory = store
    app.state.limiter = limiter
    app.state.gate = gate
    app.state.metrics = registry
    app.state.key_usage = KeyUsage(store)
    app.state.model = model
    install_error_handlers(app)
    for module in (memories, entities, mem0, users, jobs, webhooks, admin, health):
        app.include_router(module.router)
    _mount_docs(app)
    if settings.dashboard:
        mount_dashboard(app, store, settings, clock)
    if gateway is not None:
        for path in ("/mcp", "/mcp/"):
            app.router.routes.append(Route(path, gateway, methods=["GET", "POST", "DELETE"]))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        )
    app.add_middleware(
        HostGuard,
        policy=HostPolicy(settings.host, settings.allowed_hosts, settings.cors_origins),
    )
    app.add_middleware(
        Observability,
        proxies=Proxies(settings.forwarded_allow_ips),
        max_body_bytes=settings.max_body_bytes,
        requests=requests,
        latency=latency,
        csp_exempt=("/docs",),
        own_csp=("/ui",),  # the dashboard sets its own CSP (server/ui/base.py)
        audit=store.audit,
    )
    return app


async def _sweep_expired(memory: Memory, interval: float) -> None:
    """Purge expired memories every ``interval`` seconds (they are already hidden from reads)."""
    log = logging.getLogger("memvault.gc")
    while True:
        await asyncio.sleep(interval)
        try:
            purged = await anyio.to_thread.run_sync(memory.purge_expired)
        except MemvaultError as exc:
            log.warning("expired-memory sweep failed: %s", exc.code)
        else:
            if purged:
                log.info("purged %d expired memories", purged)


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI served from the installed package: the page loads nothing from the internet."""
    try:
        import swagger_ui_bundle
    except ImportError:  # the docs page is optional; /openapi.json always works
        return
    app.mount(
        DOCS_ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets"
    )

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="memvault API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )
