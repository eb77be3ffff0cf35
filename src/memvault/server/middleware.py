"""ASGI middleware: request ids, client address, security headers, body size limit, access log,
metrics, and the last word on unexpected exceptions.

Pure ASGI (no ``BaseHTTPMiddleware``) so streaming bodies are counted as they arrive and a body
over the limit is refused before it is buffered; once a chunked body goes over, whatever the app
would answer (FastAPI turns the read error into "bad body") is replaced by 413. The access log
records the route template, the status, the duration, the request id and the key id: never a
query string, a body or a key. An unexpected exception is logged by type and request id only
(its message and traceback may hold user text) and answers 500 ``internal``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memvault.security.audit import AuditEntry, AuditLog
from memvault.server.bodies import url_is_utf8
from memvault.server.network import Proxies

__all__ = ["METHODS", "Observability", "method_label", "metrics_registry", "route_template"]

errors_log = logging.getLogger("memvault.server")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"interest-cohort=()"),
]
API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


def metrics_registry() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    requests = Counter(
        "memvault_requests", "HTTP requests", ["method", "route", "status"], registry=registry
    )
    latency = Histogram(
        "memvault_request_duration_seconds",
        "HTTP request latency",
        ["method", "route"],
        registry=registry,
        buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    )
    return registry, requests, latency


# Metrics labels come from fixed sets: a label taken from the request as it is (a made-up method
# ``M00001``, a path) would add series that live as long as the process.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(scope: Scope) -> str:
    method = str(scope.get("method", ""))
    return method if method in METHODS else "other"


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else "other"


def route_template(scope: Scope) -> str:
    """``/v1/users/{user_id}/``: the matched route without converters (``:anyid``), or
    ``unmatched``. Never the path itself, which holds ids."""
    route = scope.get("route")
    return str(getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched")


class _TooLarge(Exception):
    pass


class Observability:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        requests: Counter,
        latency: Histogram,
        csp_exempt: tuple[str, ...] = (),
        own_csp: tuple[str, ...] = (),
        audit: AuditLog | None = None,
        proxies: Proxies | None = None,
    ) -> None:
        self.app = app
        self.audit = audit
        self.proxies = proxies or Proxies(())
        self.max_body_bytes = max_body_bytes
        self.requests = requests
        self.latency = latency
        self.csp_exempt = csp_exempt
        self.own_csp = own_csp
        self.log = structlog.get_logger("memvault.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {}).update(
            request_id=request_id, client_address=self.proxies.client_address(scope)
        )
        status = 500
        if not url_is_utf8(scope):
            status = 422
            await self._refuse(
                send, request_id, status, "invalid_input", "the URL is not valid UTF-8"
            )
            self._observe(scope, status, started, request_id)
            return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            status = 413
            await self._refuse(
                send, request_id, status, "payload_too_large", "the body is too large"
            )
            self._observe(scope, status, started, request_id)
            return
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        started_response = False
        observed = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started_response, observed
            if too_large:
                raise _TooLarge  # the app answered its failed read: ours is the answer
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # Logged and counted before the last byte leaves: whoever got the answer
                # can already find its log line and metrics.
                observed = True
                self._observe(scope, status, started, request_id)
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                state = scope.get("state") or {}
                if self.audit is not None and state.get("key_id"):
                    # Queued before the client can see the answer, so a caller that reads the
                    # audit log right after its request finds the entry.
                    route = route_template(scope)
                    self._audit(scope, state, scope.get("method", "-"), route, status)
                # A header the app set itself wins (the dashboard's Referrer-Policy: a page
                # under no-referrer sends "Origin: null" with its forms).
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [h for h in SECURITY_HEADERS if h[0] not in present]
                extra.append((b"x-request-id", request_id.encode()))
                if scope["path"].startswith(self.own_csp):
                    # Its pages set their own CSP; any answer that did not (a 404, a 405, a
                    # validation error, a static file) gets the API's, which allows nothing.
                    if b"content-security-policy" not in present:
                        extra.append(API_CSP)
                elif not scope["path"].startswith(self.csp_exempt):
                    extra.append(API_CSP)
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
            if too_large and not started_response:
                raise _TooLarge
        except _TooLarge:
            status = 413
            if not started_response:
                await self._refuse(
                    send, request_id, status, "payload_too_large", "the body is too large"
                )
        except ClientDisconnect:
            # The client went away (or was cut off by server.deadline) before its body was in:
            # nobody to answer; logged as nginx's 499 "client closed request", not as an error.
            status = 499
        except Exception as exc:  # noqa: BLE001 - the one place unexpected errors end
            errors_log.error("unexpected error %s (request id %s)", type(exc).__name__, request_id)
            if not started_response:
                # Through send_with_headers: the answer gets its headers and, for a known key,
                # its audit entry (outcome http_500) like any other.
                message = f"internal error (request id {request_id})"
                await self._refuse(send_with_headers, None, 500, "internal", message)
        finally:
            if not observed:
                self._observe(scope, status, started, request_id)

    async def _refuse(
        self, send: Send, request_id: str | None, status: int, code: str, message: str
    ) -> None:
        """The error answer; ``request_id`` None when ``send`` adds the usual headers itself."""
        body = json.dumps({"error": {"code": code, "message": message}, "detail": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if request_id is not None:
            headers += [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _audit(
        self, scope: Scope, state: dict[str, Any], method: str, route: str, status: int
    ) -> None:
        """One entry per authenticated request: ids and outcome, never bodies or text."""
        assert self.audit is not None
        params = scope.get("path_params") or {}
        ids = list(state.get("audit_ids") or ())
        if "memory_id" in params:
            ids.insert(0, str(params["memory_id"]))
        self.audit.record(
            AuditEntry(
                action=f"{method} {route}",
                outcome="ok" if status < 400 else f"http_{status}",
                namespace=state.get("namespace"),
                key_id=state.get("key_id"),
                user_id=params.get("user_id") or state.get("bound_user"),
                memory_ids=tuple(ids),
                source=state.get("client_address"),
            )
        )

    def _observe(self, scope: Scope, status: int, started: float, request_id: str) -> None:
        elapsed = time.perf_counter() - started
        template = route_template(scope)
        method = method_label(scope)
        self.requests.labels(method, template, status_label(status)).inc()
        self.latency.labels(method, template).observe(elapsed)
        state = scope.get("state") or {}
        self.log.info(
            "request",
            method=method,
            route=template,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
            request_id=request_id,
            key_id=state.get("key_id"),
        )
