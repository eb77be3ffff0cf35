"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from memvault.errors import MemvaultError
from memvault.security.policy import Action
from memvault.security.principal import Principal
from memvault.server.auth import require
from memvault.server.bodies import CheckedRoute
from memvault.server.errors import error_responses

__all__ = ["router"]

router = APIRouter(tags=["operations"], route_class=CheckedRoute)


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    """The process answers. Says nothing else, so it is safe without a key."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness", responses={503: {"description": "Not ready"}})
def readyz(request: Request, response: Response) -> dict[str, Any]:
    """The embedding model is loaded, and the data store and the key store answer a query (a
    cheap one: probes come often). 503 ``starting`` while the model loads; 503 ``unavailable``
    with the error's stable ``code`` when the model failed to load (the probe tries again), or
    when a store or the rate-limit counters do not answer, or writes fail though reads work
    (``storage_busy``, ``rate_limiter_unavailable``): each clears by itself with the fault."""
    model = request.app.state.model.state()
    if model.status == "loading":
        response.status_code = 503
        return {"status": "starting"}
    if model.error is not None:
        response.status_code = 503
        return {"status": "unavailable", "code": model.error.code}
    try:
        request.app.state.memory.ping()
        request.app.state.limiter.check()
    except MemvaultError as exc:
        response.status_code = 503
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int):
            response.headers["Retry-After"] = str(retry_after)
        return {"status": "unavailable", "code": exc.code}
    return {"status": "ready"}


@router.get(
    "/metrics",
    summary="Prometheus metrics (operators)",
    response_class=Response,
    responses=error_responses(401, 403, 429),
)
def metrics(
    request: Request, principal: Annotated[Principal, Depends(require(Action.METRICS_READ))]
) -> Response:
    """Request counts and latency histograms by route template: no user data, no ids."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
