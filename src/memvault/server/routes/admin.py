"""Keys, namespaces, rules and the audit log, for admin keys not bound to a user.

Who may call each route is ``security.policy``'s decision (its ``Action``), not the route's.
Operators (unbound admins of ``default``) also create namespaces and see every namespace.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from memvault.security.policy import OPERATOR_NAMESPACE, Action
from memvault.security.principal import Principal
from memvault.server.auth import require
from memvault.server.bodies import CheckedRoute
from memvault.server.errors import error_responses
from memvault.server.schemas import (
    AuditRecord,
    KeyCreate,
    KeyCreated,
    KeyInfo,
    NamespaceCreate,
    NamespaceInfo,
    NamespaceRules,
    NamespaceRulesUpdate,
)
from memvault.validation import check_namespace

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["admin"], route_class=CheckedRoute)


KeysReader = Annotated[Principal, Depends(require(Action.KEYS_LIST))]
KeysManager = Annotated[Principal, Depends(require(Action.KEYS_MANAGE))]
NamespacesReader = Annotated[Principal, Depends(require(Action.NAMESPACES_LIST))]
NamespacesManager = Annotated[Principal, Depends(require(Action.NAMESPACES_MANAGE))]
RulesKeeper = Annotated[Principal, Depends(require(Action.NAMESPACE_SETTINGS))]
Auditor = Annotated[Principal, Depends(require(Action.AUDIT_READ))]


def _is_operator(principal: Principal) -> bool:
    return principal.namespace == OPERATOR_NAMESPACE and principal.bound_user is None


@router.get(
    "/keys/",
    summary="List API keys",
    response_model=list[KeyInfo],
    responses=error_responses(401, 403, 429),
)
def list_keys(principal: KeysReader) -> list[dict[str, Any]]:
    """The namespace's keys (never their secrets)."""
    return [key.public() for key in principal.memory.api_keys.list(principal.namespace)]


@router.post(
    "/keys/",
    summary="Create an API key",
    response_model=KeyCreated,
    status_code=201,
    responses=error_responses(401, 403, 409, 422, 429),
)
def create_key(body: KeyCreate, principal: KeysManager, request: Request) -> dict[str, Any]:
    """A new key in the caller's namespace; its secret is in this answer and nowhere else."""
    made = principal.memory.api_keys.create(
        principal.namespace,
        body.role,
        name=body.name,
        user_id=body.user_id,
        expires_in_days=body.expires_in_days,
        max_live=request.app.state.settings.max_keys_per_namespace,
    )
    return {"key": made.key, "info": made.info.public()}


@router.delete(
    "/keys/{key_id}/",
    summary="Revoke an API key",
    response_model=KeyInfo,
    responses=error_responses(401, 403, 404, 429),
)
def revoke_key(key_id: str, principal: KeysManager) -> dict[str, Any]:
    return principal.memory.api_keys.revoke(key_id, principal.namespace).public()


@router.get(
    "/namespaces/",
    summary="List namespaces",
    response_model=list[NamespaceInfo],
    responses=error_responses(401, 403, 429),
)
def list_namespaces(principal: NamespacesReader) -> list[dict[str, Any]]:
    """Operators see every namespace; other admins see their own."""
    stats = principal.memory.namespaces()
    if _is_operator(principal):
        return stats
    return [n for n in stats if n["name"] == principal.namespace] or [
        {"name": principal.namespace, "memories": 0, "keys": 0}
    ]


@router.post(
    "/namespaces/",
    summary="Create a namespace",
    response_model=KeyCreated,
    status_code=201,
    responses=error_responses(401, 403, 422, 429),
)
def create_namespace(body: NamespaceCreate, principal: NamespacesManager) -> dict[str, Any]:
    """A new tenant and its first admin key (shown once)."""
    name = check_namespace(body.name)
    made = principal.memory.api_keys.create(name, "admin", name=f"first admin of {name}")
    return {"key": made.key, "info": made.info.public()}


@router.get(
    "/audit/",
    summary="Read the audit log",
    response_model=list[AuditRecord],
    responses=error_responses(401, 403, 422, 429),
)
def audit(
    principal: Auditor,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=2**62, description="Entries older than this seq.")
    ] = None,
) -> list[dict[str, Any]]:
    """The namespace's entries, newest first (operators see every namespace's)."""
    operator = _is_operator(principal)
    principal.memory.audit.flush()  # include what this very moment queued
    return principal.memory.audit.entries(
        None if operator else principal.namespace, limit=limit, before=before
    )


@router.get(
    "/namespace/settings/",
    summary="This namespace's rules",
    response_model=NamespaceRules,
    responses=error_responses(401, 403, 429),
)
def get_rules(principal: RulesKeeper) -> dict[str, Any]:
    """Secret policy and default TTL of new memories."""
    return principal.memory.namespace_settings()


@router.put(
    "/namespace/settings/",
    summary="Change this namespace's rules",
    response_model=NamespaceRules,
    responses=error_responses(401, 403, 422, 429),
)
def set_rules(body: NamespaceRulesUpdate, principal: RulesKeeper) -> dict[str, Any]:
    """secret_policy: redact (default), reject or allow; default_ttl_seconds for new memories;
    the operator's instructions added to the inference prompts."""
    ttl: float | bool | None = False
    if body.clear_default_ttl:
        ttl = None
    elif body.default_ttl_seconds is not None:
        ttl = float(body.default_ttl_seconds)
    return principal.memory.configure_namespace(
        secret_policy=body.secret_policy,
        default_ttl_seconds=ttl,
        extraction_instructions=body.extraction_instructions,
        reconciliation_instructions=body.reconciliation_instructions,
    )
