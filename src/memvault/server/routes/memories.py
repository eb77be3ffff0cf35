"""``/v1/memories``: add, batch add, search, list, get, update, delete, delete by scope, history,
related memories."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from memvault.errors import UnsupportedOption
from memvault.security.policy import Action
from memvault.security.principal import Principal
from memvault.server.auth import require
from memvault.server.bodies import CheckedRoute
from memvault.server.errors import error_responses
from memvault.server.links import added_links, memory_links
from memvault.server.mem0_options import MAX_QUERY_FILTER, parse_query_filters, scope_from_filters
from memvault.server.schemas import (
    AddRequest,
    AddResults,
    BatchAddRequest,
    DeleteAllResult,
    DeleteResult,
    HistoryEvent,
    JobAccepted,
    ListRequest,
    MemoryItem,
    MemoryPage,
    RelatedResults,
    SearchRequest,
    SearchResults,
    UpdateRequest,
    UpdateResult,
)

__all__ = ["add_memories", "audited", "list_page", "router", "search_memories"]

router = APIRouter(prefix="/v1/memories", tags=["memories"], route_class=CheckedRoute)
Reader = Annotated[Principal, Depends(require(Action.MEMORIES_READ))]
Writer = Annotated[Principal, Depends(require(Action.MEMORIES_WRITE))]
ScopeQuery = Annotated[str | None, Query(max_length=128)]


def add_memories(
    principal: Principal, items: list[AddRequest], *, created_at: str | None = None
) -> dict[str, Any]:
    """``created_at``: when the messages were sent (mem0's ``timestamp``), for every item."""
    prepared = []
    for request in items:
        item = request.as_item()
        user = principal.user_scope(request.user_id)
        if user is not None:
            item["user_id"] = user
        if created_at is not None:
            item["created_at"] = created_at
        prepared.append(item)
    return principal.memory.add_many(prepared)


def audited(request: Request, added: dict[str, Any]) -> dict[str, Any]:
    """Hand the new ids to the audit log (the middleware writes the entry)."""
    request.state.audit_ids = [r["id"] for r in added["results"]]
    return added


def search_memories(principal: Principal, body: SearchRequest) -> dict[str, Any]:
    return principal.memory.search(
        body.query,
        user_id=principal.user_scope(body.user_id),
        agent_id=body.agent_id,
        run_id=body.run_id,
        filters=principal.pin_filters(body.filters),
        top_k=body.top_k,
        threshold=body.threshold,
        explain=body.explain,
        mode=body.mode,
    )


def list_page(principal: Principal, body: ListRequest, base_path: str) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "user_id": principal.user_scope(body.user_id),
        "agent_id": body.agent_id,
        "run_id": body.run_id,
        "filters": principal.pin_filters(body.filters),
    }
    offset = (body.page - 1) * body.page_size
    # One filtered statement for the page and the count (get_all then count ran the filter twice).
    results, count = principal.memory.get_page(**scope, top_k=body.page_size, offset=offset)
    next_page = (
        f"{base_path}?page={body.page + 1}&page_size={body.page_size}"
        if offset + body.page_size < count
        else None
    )
    previous = (
        f"{base_path}?page={body.page - 1}&page_size={body.page_size}" if body.page > 1 else None
    )
    return {"count": count, "next": next_page, "previous": previous, "results": results}


def add_one(principal: Principal, request: AddRequest) -> dict[str, Any]:
    """One add through ``Memory.add``: with ``infer`` and the queue on, a job is queued and the
    answer names it (``{"results": [], "job": {...}}``)."""
    item = request.as_item()
    user = principal.user_scope(request.user_id)
    if user is not None:
        item["user_id"] = user
    return principal.memory.add(**item)


@router.post(
    "/",
    summary="Add memories",
    response_model=AddResults,
    response_model_exclude_none=True,
    responses={
        200: added_links(),
        202: {"model": JobAccepted, "description": "infer=True with the queue on: a job id"},
        **error_responses(),
    },
)
def add(body: AddRequest, principal: Writer, request: Request) -> Any:
    """Store a text or a list of messages in a scope; an exact duplicate answers event NONE.

    With ``infer: true`` and the queue on (the server's default) the messages are checked,
    queued encrypted, and the answer is 202 ``{"job_id", "status": "queued"}`` at once; follow
    the job with ``GET /v1/jobs/{job_id}``."""
    if body.infer and principal.memory.async_mode:
        job = add_one(principal, body)["job"]
        return JSONResponse({"job_id": job["id"], "status": job["status"]}, status_code=202)
    return audited(request, add_memories(principal, [body]))


@router.post(
    "/batch/",
    summary="Add many memories",
    response_model=AddResults,
    response_model_exclude_none=True,
    responses={200: added_links("$request.body#/items/0/user_id"), **error_responses()},
)
def add_batch(body: BatchAddRequest, principal: Writer, request: Request) -> dict[str, Any]:
    """Bulk load up to 1,000 items; all are checked before any is stored; order is kept."""
    return audited(request, add_memories(principal, body.items))


@router.post(
    "/search/", summary="Search memories", response_model=SearchResults, responses=error_responses()
)
def search(body: SearchRequest, principal: Reader) -> dict[str, Any]:
    """Hybrid (vector + BM25) search inside one scope, with mem0's filters."""
    return search_memories(principal, body)


@router.post(
    "/list/", summary="List memories", response_model=MemoryPage, responses=error_responses()
)
def list_memories(body: ListRequest, principal: Reader) -> dict[str, Any]:
    """A scope's memories matching the filters, newest first, a page at a time."""
    return list_page(principal, body, "/v1/memories/list/")


@router.get(
    "/",
    summary="List memories (query string)",
    response_model=MemoryPage,
    responses=error_responses(),
)
def list_by_query(
    principal: Reader,
    user_id: ScopeQuery = None,
    agent_id: ScopeQuery = None,
    run_id: ScopeQuery = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The same as POST /v1/memories/list/ without filters."""
    body = ListRequest(
        user_id=user_id, agent_id=agent_id, run_id=run_id, page=page, page_size=page_size
    )
    return list_page(principal, body, "/v1/memories/")


@router.delete(
    "/",
    summary="Delete a scope's memories",
    response_model=DeleteAllResult,
    responses=error_responses(),
)
def delete_all(
    principal: Writer,
    user_id: ScopeQuery = None,
    agent_id: ScopeQuery = None,
    run_id: ScopeQuery = None,
    filters: Annotated[str | None, Query(max_length=MAX_QUERY_FILTER)] = None,
) -> dict[str, Any]:
    """Delete every memory of a scope (user_id, agent_id and/or run_id; one is required).

    ``filters`` is mem0 2.x's form of the same scope (a JSON object of those three ids)."""
    given = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
    if filters is not None:
        given = scope_from_filters(parse_query_filters(filters), given, "delete_all")
    return principal.memory.delete_all(
        user_id=principal.user_scope(given["user_id"]),
        agent_id=given["agent_id"],
        run_id=given["run_id"],
    )


@router.get(
    "/{memory_id}/", summary="Get a memory", response_model=MemoryItem, responses=error_responses()
)
def get(memory_id: str, principal: Reader) -> dict[str, Any]:
    return principal.owned(principal.memory.get(memory_id), memory_id)


@router.put(
    "/{memory_id}/",
    summary="Update a memory",
    response_model=UpdateResult,
    responses={
        200: {
            "links": memory_links(
                "$request.path.memory_id", "GetMemory", "MemoryHistory", "DeleteMemory"
            )
        },
        **error_responses(),
    },
)
def update(memory_id: str, body: UpdateRequest, principal: Writer) -> dict[str, Any]:
    """Replace the text and/or metadata; the old text goes to the memory's history."""
    if body.timestamp is not None:
        raise UnsupportedOption(
            "timestamp is not supported on update: memvault records when a memory changed "
            "(updated_at) itself; a timestamp is taken when the memory is added"
        )
    principal.owned(principal.memory.get(memory_id), memory_id)
    return principal.memory.update(memory_id, body.text, body.metadata)


@router.delete(
    "/{memory_id}/",
    summary="Delete a memory",
    response_model=DeleteResult,
    responses={
        200: {"links": memory_links("$request.path.memory_id", "GetMemory", "MemoryHistory")},
        **error_responses(),
    },
)
def delete(memory_id: str, principal: Writer) -> dict[str, Any]:
    principal.owned(principal.memory.get(memory_id), memory_id)
    return principal.memory.delete(memory_id)


@router.get(
    "/{memory_id}/history/",
    summary="A memory's history",
    response_model=list[HistoryEvent],
    responses=error_responses(),
)
def history(memory_id: str, principal: Reader) -> list[dict[str, Any]]:
    """Every change, oldest first; kept after the memory is deleted."""
    return principal.history(memory_id)


@router.get(
    "/{memory_id}/related/",
    summary="Memories sharing entities with a memory",
    response_model=RelatedResults,
    responses=error_responses(),
)
def related(
    memory_id: str,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
) -> dict[str, Any]:
    """The memories of the same scope that name the same people, places, things, dates or
    titles, best first, each with its ``score`` in [0, 1] and the shared ``entities``. A memory
    this key may not read answers 404, as GET /v1/memories/{id}/ does."""
    principal.owned(principal.memory.get(memory_id), memory_id)
    return principal.memory.related(memory_id, limit=limit)
