"""Dashboard pages of memories: search and list, detail with history, edit, delete.

Every read and write goes through the same ``Principal`` checks as the REST routes
(``user_scope``, ``pin_filters``, ``owned``, ``history``), so a user-bound key sees its user only.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse

from memvault.errors import InvalidInput
from memvault.security.policy import Action
from memvault.security.principal import Principal
from memvault.server.ui.admin import scope_counts
from memvault.server.ui.base import UiRequire, UiRoute, form_of, page

__all__ = ["router"]

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)
Reader = Annotated[Principal, Depends(UiRequire(Action.MEMORIES_READ))]
Writer = Annotated[Principal, Depends(UiRequire(Action.MEMORIES_WRITE))]
Field = Annotated[str, Query(max_length=128)]
PAGE_SIZES = (10, 25, 50, 100)
EXPLAIN_PARTS = ("vector", "bm25", "fused", "decay", "recency", "reinforcement")


def _filters(memory_type: str, since: str, until: str, meta: str) -> dict[str, Any] | None:
    parts: list[dict[str, Any]] = []
    if meta:
        # "key=value": one metadata field equal to a text (the REST API takes any filter).
        key, sep, value = meta.partition("=")
        if not sep or not key.strip():
            raise InvalidInput("the metadata filter is key=value")
        parts.append({key.strip(): value.strip()})
    if memory_type:
        parts.append({"memory_type": memory_type})
    if since:
        parts.append({"created_at": {"gte": since}})
    if until:
        parts.append({"created_at": {"lte": until}})
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"AND": parts}


@router.get("", summary="Dashboard home")
def home(principal: Reader) -> Response:
    return RedirectResponse("/ui/memories", status_code=303)


@router.get("/memories", summary="Dashboard: search and list memories")
def memories(
    request: Request,
    principal: Reader,
    q: Annotated[str, Query(max_length=2000)] = "",
    user_id: Field = "",
    agent_id: Field = "",
    run_id: Field = "",
    memory_type: Field = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    meta: Annotated[str, Query(max_length=300)] = "",
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    size: Annotated[int, Query(ge=1, le=100)] = 25,
    deleted: int = 0,
) -> Response:
    memory = principal.memory
    user = principal.user_scope(user_id or None)
    filters = principal.pin_filters(_filters(memory_type, since, until, meta))
    agent, run = agent_id or None, run_id or None
    scope = {"user_id": user, "agent_id": agent, "run_id": run}
    mode = "list"
    total: int | None = None
    error = None
    results: list[dict[str, Any]] = []
    more = False
    scopes: tuple[dict[str, int], dict[str, int]] = ({}, {})
    unscoped = not any(scope.values()) and not any(
        key in (filters or {}) for key in ("user_id", "agent_id", "run_id")
    )
    try:
        if unscoped:
            # mem0's rule: a read names a user, agent or run. Offer the ones that exist.
            mode = "pick"
            users, agents, _ = scope_counts(principal)
            scopes = (users, agents)
        elif q.strip():
            mode = "search"
            # Search has no offset: page n shows hits n*size-size+1 .. n*size of the top n*size.
            found = memory.search(
                q,
                user_id=user,
                agent_id=agent,
                run_id=run,
                filters=filters,
                top_k=min(page_no * size, 1000),
                explain=True,
            )["results"]
            results = found[(page_no - 1) * size :]
            total = len(found)
            more = len(found) == page_no * size
        else:
            results, total = memory.get_page(
                **scope, filters=filters, top_k=size, offset=(page_no - 1) * size
            )
            more = page_no * size < total
    except InvalidInput as exc:  # a filter value the store refuses: say so on the page
        error, more = exc.message, False
    query = {
        "q": q,
        "user_id": user_id,
        "agent_id": agent_id,
        "run_id": run_id,
        "memory_type": memory_type,
        "since": since,
        "until": until,
        "meta": meta,
        "size": size,
    }
    return page(
        request,
        "memories.html",
        principal,
        results=results,
        total=total,
        mode=mode,
        query=query,
        page_no=page_no,
        more=more,
        sizes=PAGE_SIZES,
        parts=EXPLAIN_PARTS,
        error=error,
        deleted=bool(deleted),
        scopes=scopes,
    )


@router.get(
    "/memories/{memory_id}", summary="Dashboard: one memory, its history and related memories"
)
def memory_detail(request: Request, memory_id: str, principal: Reader, saved: int = 0) -> Response:
    item = principal.owned(principal.memory.get(memory_id), memory_id)
    events = principal.history(memory_id)
    # Linked memories stay in the memory's own scope (``related`` never leaves it), which the
    # ownership check above has just allowed.
    linked = principal.memory.related(memory_id, limit=10)["results"]
    return page(
        request,
        "memory.html",
        principal,
        item=item,
        events=events,
        related=linked,
        saved=bool(saved),
    )


@router.post("/memories/{memory_id}/edit", summary="Dashboard: edit a memory")
async def edit(request: Request, memory_id: str, principal: Writer) -> Response:
    text = str((await form_of(request)).get("text") or "")

    def save() -> None:
        principal.owned(principal.memory.get(memory_id), memory_id)
        principal.memory.update(memory_id, text)

    await anyio.to_thread.run_sync(save)
    return RedirectResponse(f"/ui/memories/{memory_id}?saved=1", status_code=303)


@router.post("/memories/{memory_id}/delete", summary="Dashboard: delete a memory")
def delete(memory_id: str, principal: Writer) -> Response:
    principal.owned(principal.memory.get(memory_id), memory_id)
    principal.memory.delete(memory_id)
    return RedirectResponse("/ui/memories?deleted=1", status_code=303)
