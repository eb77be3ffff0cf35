"""Dashboard pages for keys, users, the audit log, jobs and the overview.

Each route names its ``security.policy`` action, as the REST route that does the same does.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from memvault.errors import InvalidInput
from memvault.security.policy import OPERATOR_NAMESPACE, Action
from memvault.security.principal import Principal
from memvault.server.routes.users import _attachment
from memvault.server.ui.base import UiRequire, UiRoute, form_of, page
from memvault.server.ui.chart import latency_chart

__all__ = ["router"]

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)
KeysReader = Annotated[Principal, Depends(UiRequire(Action.KEYS_LIST))]
KeysManager = Annotated[Principal, Depends(UiRequire(Action.KEYS_MANAGE))]
Exporter = Annotated[Principal, Depends(UiRequire(Action.USERS_EXPORT))]
Eraser = Annotated[Principal, Depends(UiRequire(Action.USERS_ERASE))]
Auditor = Annotated[Principal, Depends(UiRequire(Action.AUDIT_READ))]
JobsReader = Annotated[Principal, Depends(UiRequire(Action.JOBS_READ))]
JobsWriter = Annotated[Principal, Depends(UiRequire(Action.JOBS_WRITE))]
Reader = Annotated[Principal, Depends(UiRequire(Action.MEMORIES_READ))]
ROLES = ("read", "write", "admin")


def _is_operator(principal: Principal) -> bool:
    return principal.namespace == OPERATOR_NAMESPACE and principal.bound_user is None


def _keys_page(
    request: Request, principal: Principal, made: dict[str, Any] | None = None, status: int = 200
) -> Response:
    keys = [key.public() for key in principal.memory.api_keys.list(principal.namespace)]
    keys.sort(key=lambda k: (k["revoked_at"] is not None, k["created_at"]), reverse=False)
    return page(
        request, "keys.html", principal, keys=keys, made=made, roles=ROLES, status_code=status
    )


@router.get("/keys", summary="Dashboard: API keys")
def keys(request: Request, principal: KeysReader) -> Response:
    return _keys_page(request, principal)


@router.post("/keys", summary="Dashboard: create an API key")
async def create_key(request: Request, principal: KeysManager) -> Response:
    form = await form_of(request)
    role = str(form.get("role") or "")
    if role not in ROLES:
        raise InvalidInput("role must be read, write or admin")
    name = str(form.get("name") or "").strip() or None
    user_id = str(form.get("user_id") or "").strip() or None
    days_text = str(form.get("expires_in_days") or "").strip()
    if days_text and not days_text.isdigit():
        raise InvalidInput("expires in days must be a whole number")
    days = int(days_text) if days_text else None

    def create() -> Response:
        made = principal.memory.api_keys.create(
            principal.namespace,
            role,
            name=name,
            user_id=user_id,
            expires_in_days=days,
            max_live=request.app.state.settings.max_keys_per_namespace,
        )
        # The secret is in this answer only (not a redirect: it would have to be kept).
        return _keys_page(request, principal, {"key": made.key, "info": made.info.public()}, 201)

    return await anyio.to_thread.run_sync(create)


@router.post("/keys/{key_id}/revoke", summary="Dashboard: revoke an API key")
def revoke_key(key_id: str, principal: KeysManager) -> Response:
    principal.memory.api_keys.revoke(key_id, principal.namespace)
    return RedirectResponse("/ui/keys", status_code=303)


@router.get("/users", summary="Dashboard: a user's data")
def users(
    request: Request,
    principal: Exporter,
    user_id: Annotated[str, Query(max_length=128)] = "",
    erased: str = "",
) -> Response:
    user = principal.user_scope(user_id or None)
    count = principal.memory.count(user_id=user) if user else None
    known = scope_counts(principal)[0] if principal.bound_user is None else {}
    return page(
        request,
        "users.html",
        principal,
        user=user,
        count=count,
        known=known,
        erased=erased,
    )


def scope_counts(principal: Principal) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Live memories per user, per agent and per type (of the bound user only, if bound)."""
    users: Counter[str] = Counter()
    agents: Counter[str] = Counter()
    types: Counter[str] = Counter()
    for row in principal.memory.stats():
        if principal.bound_user is not None and row["user_id"] != principal.bound_user:
            continue
        if row["user_id"] is not None:
            users[row["user_id"]] += row["memories"]
        if row["agent_id"] is not None:
            agents[row["agent_id"]] += row["memories"]
        types[row["memory_type"]] += row["memories"]
    return dict(users.most_common()), dict(agents.most_common()), dict(types.most_common())


@router.get("/users/{user_id:anyid}/export", summary="Dashboard: export a user's data")
def export(user_id: str, principal: Exporter) -> StreamingResponse:
    lines = principal.memory.export_user(user_id)  # NotFound before streaming

    def body() -> Iterator[bytes]:
        for line in lines:
            yield (json.dumps(line, ensure_ascii=False) + "\n").encode()

    return StreamingResponse(
        body(),
        media_type="application/x-ndjson",
        headers={
            "Content-Disposition": _attachment(
                f"memvault-export-{principal.namespace}-{user_id}.jsonl"
            )
        },
    )


@router.post("/users/{user_id:anyid}/erase", summary="Dashboard: erase a user")
async def erase(request: Request, user_id: str, principal: Eraser) -> Response:
    form = await form_of(request)
    if form.get("confirm") != user_id:
        raise InvalidInput("type the user's id exactly to confirm the erasure")
    result = await anyio.to_thread.run_sync(principal.memory.erase_user, user_id)
    return RedirectResponse(f"/ui/users?erased={result['memories_deleted']}", status_code=303)


@router.get("/audit", summary="Dashboard: the audit log")
def audit(
    request: Request,
    principal: Auditor,
    action: Annotated[str, Query(max_length=200)] = "",
    outcome: Annotated[str, Query(max_length=40)] = "",
    key_id: Annotated[str, Query(max_length=40)] = "",
    user_id: Annotated[str, Query(max_length=128)] = "",
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    log = principal.memory.audit
    log.flush()
    operator = _is_operator(principal)
    namespace = None if operator else principal.namespace
    wanted = {"outcome": outcome, "key_id": key_id, "user_id": user_id}
    shown: list[dict[str, Any]] = []
    cursor = before
    # Filters apply to pages of the log, read newest first, until 100 entries match.
    for _ in range(20):
        batch = log.entries(namespace, limit=500, before=cursor)
        if not batch:
            cursor = None
            break
        for entry in batch:
            if action and action.lower() not in entry["action"].lower():
                continue
            if any(value and entry.get(field) != value for field, value in wanted.items()):
                continue
            shown.append(entry)
        cursor = batch[-1]["seq"]
        if len(shown) >= 100:
            break
    verification = log.verify()
    return page(
        request,
        "audit.html",
        principal,
        entries=shown[:100],
        older=cursor if len(shown) >= 100 else None,
        verification=verification,
        operator=operator,
        filters={"action": action, **wanted},
    )


@router.get("/jobs", summary="Dashboard: jobs of inferred memory")
def jobs(
    request: Request,
    principal: JobsReader,
    status: Literal["", "queued", "running", "done", "failed", "dead"] = "",
) -> Response:
    found = principal.memory.jobs(
        status=status or None, user_id=principal.user_scope(None), limit=200
    )["results"]
    return page(request, "jobs.html", principal, jobs=found, status=status)


@router.post("/jobs/{job_id}/retry", summary="Dashboard: retry a dead job")
def retry_job(job_id: str, principal: JobsWriter) -> Response:
    principal.memory.retry_job(job_id, user_id=principal.bound_user)
    return RedirectResponse("/ui/jobs", status_code=303)


@router.get("/overview", summary="Dashboard: overview")
def overview(request: Request, principal: Reader) -> Response:
    memory = principal.memory
    by_user, by_agent, by_type = scope_counts(principal)
    operator = _is_operator(principal)
    recent: list[dict[str, Any]] = []
    activity: list[dict[str, Any]] = []
    if principal.bound_user is not None:
        recent = memory.get_all(user_id=principal.bound_user, top_k=10)["results"]
    elif principal.role == "admin":
        memory.audit.flush()
        activity = memory.audit.entries(None if operator else principal.namespace, limit=15)
    return page(
        request,
        "overview.html",
        principal,
        total=sum(by_type.values()),
        by_user=list(by_user.items())[:20],
        users=len(by_user),
        by_agent=list(by_agent.items())[:20],
        by_type=list(by_type.items()),
        recent=recent,
        activity=activity,
        storage=memory.store_status() if operator else None,
        chart=latency_chart(request.app.state.metrics) if operator else None,
    )
