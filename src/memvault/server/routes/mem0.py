"""The routes mem0's ``MemoryClient`` calls, mapped onto memvault (see docs/rest.md).

mem0 2.x sends the scope inside ``filters`` for search and list, pages list results with
``page``/``page_size`` query parameters, and authenticates with ``Authorization: Token <key>``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field, StrictInt

from memvault.security.policy import Action
from memvault.security.principal import Principal
from memvault.server.auth import require
from memvault.server.bodies import CheckedRoute
from memvault.server.errors import error_responses
from memvault.server.routes.memories import add_memories, audited, list_page, search_memories
from memvault.server.schemas import (
    AddRequest,
    AddResults,
    ListRequest,
    MemoryPage,
    SearchRequest,
    SearchResults,
    Strict,
)

__all__ = ["router"]

router = APIRouter(tags=["mem0 compatibility"], route_class=CheckedRoute)
Reader = Annotated[Principal, Depends(require(Action.MEMORIES_READ))]
Writer = Annotated[Principal, Depends(require(Action.MEMORIES_WRITE))]


class Mem0ListBody(Strict):
    filters: dict[str, Any] | None = None
    page: StrictInt | None = Field(None, ge=1, le=100_000)
    page_size: StrictInt | None = Field(None, ge=1, le=1000)


@router.get("/v1/ping/", summary="Check a key (mem0)", responses=error_responses(401, 429))
def ping(principal: Reader) -> dict[str, Any]:
    """What mem0's client calls when it starts: the key's namespace and role.

    mem0's client needs an org and a project id; memvault answers ``memvault`` and the key's
    namespace, which is what a mem0 project is here.
    """
    key = principal.key
    return {
        "status": "ok",
        "namespace": principal.namespace,
        "role": key.role if key else "admin",
        "org_id": "memvault",
        "project_id": principal.namespace,
        "user_email": None,
    }


@router.post(
    "/v3/memories/add/",
    summary="Add memories (mem0)",
    response_model=AddResults,
    response_model_exclude_none=True,
    responses=error_responses(),
)
def add(body: AddRequest, principal: Writer, request: Request) -> dict[str, Any]:
    return audited(request, add_memories(principal, [body]))


@router.post(
    "/v3/memories/search/",
    summary="Search memories (mem0)",
    response_model=SearchResults,
    responses=error_responses(),
)
def search(body: SearchRequest, principal: Reader) -> dict[str, Any]:
    return search_memories(principal, body)


@router.post(
    "/v3/memories/",
    summary="List memories (mem0)",
    response_model=MemoryPage,
    responses=error_responses(),
)
def get_all(
    body: Mem0ListBody,
    principal: Reader,
    page: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    page_size: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> dict[str, Any]:
    listed = ListRequest(
        filters=body.filters,
        page=page or body.page or 1,
        page_size=page_size or body.page_size or 100,
    )
    return list_page(principal, listed, "/v3/memories/")
