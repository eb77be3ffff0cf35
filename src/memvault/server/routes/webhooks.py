"""``/v1/namespace/webhook``: the namespace's webhook and its outbox, for admin keys not bound
to a user (the rule of the namespace settings). See docs/webhooks.md."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from memvault.security.policy import Action
from memvault.security.principal import Principal
from memvault.server.auth import require
from memvault.server.bodies import CheckedRoute
from memvault.server.errors import error_responses
from memvault.server.schemas import (
    WebhookConfig,
    WebhookDelivery,
    WebhookDeliveryList,
    WebhookInfo,
    WebhookRotation,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/namespace/webhook", tags=["webhooks"], route_class=CheckedRoute)
Keeper = Annotated[Principal, Depends(require(Action.NAMESPACE_SETTINGS))]
Status = Literal["pending", "sending", "delivered", "dead"]


@router.get(
    "/",
    summary="This namespace's webhook",
    response_model=WebhookInfo,
    response_model_exclude_none=True,
    responses=error_responses(401, 403, 404, 429),
)
def get_webhook(principal: Keeper) -> dict[str, Any]:
    """URL, include_text and times (never the secret); 404 when there is none."""
    return principal.memory.webhook()


@router.put(
    "/",
    summary="Set this namespace's webhook",
    response_model=WebhookInfo,
    response_model_exclude_none=True,
    responses=error_responses(401, 403, 422, 429),
)
def put_webhook(body: WebhookConfig, principal: Keeper) -> dict[str, Any]:
    """Send memory events to ``url`` (422 ``destination_refused`` unless the operator's
    allow-list permits it). A new webhook's ``secret`` is in this answer only."""
    return principal.memory.configure_webhook(body.url, include_text=body.include_text)


@router.delete(
    "/",
    summary="Remove this namespace's webhook",
    responses=error_responses(401, 403, 404, 429),
)
def delete_webhook(principal: Keeper) -> dict[str, Any]:
    """Stop sending events; undelivered and dead ones are dropped."""
    return principal.memory.remove_webhook()


@router.post(
    "/rotate-secret",
    summary="Rotate the signing secret",
    response_model=WebhookInfo,
    response_model_exclude_none=True,
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
def rotate_secret(principal: Keeper, body: WebhookRotation | None = None) -> dict[str, Any]:
    """A new secret, in this answer only. The old one signs nothing from now on, or goes on
    signing beside it for ``overlap_seconds``."""
    overlap = body.overlap_seconds if body is not None else 0
    return principal.memory.rotate_webhook_secret(overlap_seconds=overlap)


@router.get(
    "/deliveries/",
    summary="List webhook deliveries",
    response_model=WebhookDeliveryList,
    responses=error_responses(401, 403, 422, 429),
)
def list_deliveries(
    principal: Keeper,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The outbox, newest first; ``status=dead`` lists the dead letters."""
    return principal.memory.webhook_deliveries(status=status, limit=limit)


@router.post(
    "/deliveries/{delivery_id}/retry",
    summary="Retry a dead delivery",
    response_model=WebhookDelivery,
    responses={**error_responses(), **error_responses(409)},
)
def retry_delivery(delivery_id: str, principal: Keeper) -> dict[str, Any]:
    """Send a dead delivery again, its attempts reset; 409 in any other state."""
    return principal.memory.retry_webhook_delivery(delivery_id)
