"""The one place exceptions become HTTP responses: ``{"error": {"code", "message"}}``.

Validation messages name fields and rules, never the values sent (they may be secrets or personal
data). Unexpected exceptions are caught by the ``Observability`` middleware, not here: a handler
for ``Exception`` runs in Starlette's outermost middleware, which re-raises after answering, so
the server printed a full traceback (with locals' reprs in some setups) for every 500.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from memvault.errors import MemvaultError, Unauthorized
from memvault.server.schemas import ErrorBody

__all__ = ["ERRORS", "error_response", "error_responses", "install_error_handlers"]

log = logging.getLogger("memvault.server")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    421: "host_not_allowed",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
}
ERRORS = {
    401: "Missing, malformed, unknown, revoked or expired API key.",
    403: "The key's role or user binding does not allow this.",
    404: "No such memory in this namespace (or not visible to this key).",
    409: "Conflict with the stored state (too_many_keys: revoke a key first, ...).",
    413: "The body or a text is over its size limit.",
    422: "Invalid input: the error's code names the rule (invalid_filter, missing_scope, ...).",
    429: "Rate limited; Retry-After says when to retry.",
    503: "A dependency is unavailable for now (storage_busy, embedder_unavailable,"
    " rate_limiter_unavailable); nothing was applied; retry after Retry-After seconds.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers a route can give."""
    chosen = statuses or tuple(status for status in ERRORS if status != 409)
    return {status: {"model": ErrorBody, "description": ERRORS[status]} for status in chosen}


def _body(code: str, message: str) -> dict[str, Any]:
    # "detail" repeats the message for mem0's client, which reads errors from that field.
    return {"error": {"code": code, "message": message}, "detail": message}


def error_response(exc: MemvaultError) -> JSONResponse:
    """The JSON answer for ``exc``, also for ASGI code outside FastAPI's handlers."""
    headers = None
    # Every answer that says "try again later" (429, and each 503 class) says when.
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int):
        headers = {"Retry-After": str(retry_after)}
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": 'Bearer realm="memvault"'}
    return JSONResponse(_body(exc.code, exc.message), status_code=exc.http_status, headers=headers)


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


def _specificity(template: str) -> tuple[int, int]:
    """Fewer parameters, then more literal text: ``/batch/`` over ``/{id}/``, and
    ``/{user_id:anyid}/export/`` over ``/{user_id:anyid}/``."""
    return template.count("{"), -len(re.sub(r"\{[^}]*\}", "", template))


def _allowed_methods(request: Request) -> list[str]:
    """Methods of the most specific path template that matches."""
    by_specificity: dict[tuple[int, int], set[str]] = {}
    for route in request.app.router.routes:
        candidates = getattr(route, "effective_candidates", None)
        for candidate in candidates() if candidates else [route]:
            match = getattr(candidate, "matches", None)
            if match is None:
                continue
            template = str(getattr(getattr(candidate, "route", candidate), "path", ""))
            for method in ("GET", "POST", "PUT", "DELETE"):
                found, _ = match({**request.scope, "method": method})
                if found == Match.FULL:
                    by_specificity.setdefault(_specificity(template), set()).add(method)
    return sorted(by_specificity[min(by_specificity)]) if by_specificity else []


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MemvaultError)
    async def memvault_error(request: Request, exc: MemvaultError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error(
                "request failed", extra={"error_code": exc.code, "request_id": _request_id(request)}
            )
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors()[:10]:
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return JSONResponse(_body("invalid_input", "; ".join(problems)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body": the same as bad JSON
            return JSONResponse(
                _body("invalid_input", "the body is not valid JSON"), status_code=422
            )
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route's methods; list every method of the path.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return JSONResponse(_body(code, message), status_code=exc.status_code, headers=headers)
