"""The routes mem0's ``MemoryClient`` calls, mapped onto memvault (see docs/rest.md).

mem0 2.x sends the scope inside ``filters`` (for add, search, list and delete_all), pages list
results with ``page``/``page_size`` query parameters, and authenticates with
``Authorization: Token <key>``. Options memvault cannot honour are refused by name
(``unsupported_option``, see ``server.mem0_options``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from memvault.core import reads
from memvault.errors import InvalidInput, UnsupportedOption
from memvault.security.policy import Action
from memvault.security.principal import Principal
from memvault.server.auth import require
from memvault.server.bodies import CheckedRoute
from memvault.server.errors import error_responses
from memvault.server.links import added_links
from memvault.server.mem0_options import (
    NO_APP,
    check_fields,
    lift_metadata,
    refuse_set,
    scope_from_filters,
    select_fields,
    timestamp_iso,
)
from memvault.server.mem0_schemas import (
    BatchDelete,
    BatchResult,
    BatchUpdate,
    EntityPage,
    Mem0AddRequest,
    Mem0ListBody,
    Mem0SearchRequest,
    PartialPage,
    PartialResults,
)
from memvault.server.routes import users  # noqa: F401  (registers the ``anyid`` converter)
from memvault.server.routes.memories import add_memories, audited, list_page, search_memories
from memvault.server.schemas import (
    AddRequest,
    AddResults,
    DeleteAllResult,
    EraseResult,
    JobAccepted,
)

__all__ = ["router"]

router = APIRouter(tags=["mem0 compatibility"], route_class=CheckedRoute)
Reader = Annotated[Principal, Depends(require(Action.MEMORIES_READ))]
Writer = Annotated[Principal, Depends(require(Action.MEMORIES_WRITE))]
Eraser = Annotated[Principal, Depends(require(Action.USERS_ERASE))]

_EXTRACTION = "memvault's extraction (infer=true) takes no per-request prompt or categories"
_NOT_ON_ADD = {
    "custom_instructions": _EXTRACTION,
    "agent_custom_instructions": _EXTRACTION,
    "custom_categories": _EXTRACTION,
    "structured_data_schema": _EXTRACTION,
}


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


def _plain_add(body: Mem0AddRequest) -> AddRequest:
    """The memvault add request a mem0 add names: the scope may come in ``filters``."""
    options = body.model_dump(include=set(_NOT_ON_ADD))
    refuse_set(options, _NOT_ON_ADD)
    if body.version not in (None, "v2"):
        raise UnsupportedOption("version is not supported: only v2 (memvault's only behaviour)")
    if body.output_format not in (None, "v1.1"):
        raise UnsupportedOption("output_format is not supported: only v1.1 ({'results': [...]})")
    given = {"user_id": body.user_id, "agent_id": body.agent_id, "run_id": body.run_id}
    scope = scope_from_filters(body.filters, given, "add")
    fields = body.model_dump(include=set(AddRequest.model_fields), exclude_none=True)
    fields.update({k: v for k, v in scope.items() if v is not None})
    return AddRequest.model_validate(fields)


@router.post(
    "/v3/memories/add/",
    summary="Add memories (mem0)",
    response_model=AddResults,
    response_model_exclude_none=True,
    responses={
        200: added_links(),
        202: {"model": JobAccepted, "description": "infer and async_mode true: a job id"},
        **error_responses(),
    },
)
def add(body: Mem0AddRequest, principal: Writer, request: Request) -> Any:
    """mem0's add. ``timestamp`` becomes the memory's ``created_at`` (with ``infer``, the time
    relative dates resolve against); ``async_mode: true`` with ``infer: true`` queues a job
    (202, as ``POST /v1/memories/``) when the server's queue is on; otherwise the add runs now."""
    plain = _plain_add(body)
    created_at = timestamp_iso(body.timestamp)
    if plain.infer and body.async_mode and principal.memory.async_mode:
        if created_at is not None:
            raise UnsupportedOption(
                "timestamp is not supported with async_mode=true and infer=true: send "
                "async_mode=false to add with a timestamp"
            )
        item = plain.as_item()
        item["user_id"] = principal.user_scope(plain.user_id)
        job = principal.memory.add(**item)["job"]
        return JSONResponse({"job_id": job["id"], "status": job["status"]}, status_code=202)
    return audited(request, add_memories(principal, [plain], created_at=created_at))


@router.post(
    "/v3/memories/search/",
    summary="Search memories (mem0)",
    response_model=PartialResults,
    response_model_exclude_unset=True,
    responses=error_responses(),
)
def search(body: Mem0SearchRequest, principal: Reader) -> dict[str, Any]:
    """mem0's search: ``{"metadata": {...}}`` filters on metadata keys, ``fields`` cuts each
    result down; ``rerank: true`` is refused (memvault's ranking is its hybrid score)."""
    if body.rerank:
        raise UnsupportedOption(
            "rerank is not supported: memvault has no reranker (results are ranked by the "
            "hybrid vector + BM25 score); send rerank=false or leave it out"
        )
    fields = check_fields(body.fields)
    plain = body.model_copy(update={"filters": lift_metadata(body.filters)})
    return select_fields(search_memories(principal, plain), fields)


@router.post(
    "/v3/memories/",
    summary="List memories (mem0)",
    response_model=PartialPage,
    response_model_exclude_unset=True,
    responses=error_responses(),
)
def get_all(
    body: Mem0ListBody,
    principal: Reader,
    page: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    page_size: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> dict[str, Any]:
    fields = check_fields(body.fields)
    listed = body.as_list_request(page, page_size)
    listed = listed.model_copy(update={"filters": lift_metadata(listed.filters)})
    return select_fields(list_page(principal, listed, "/v3/memories/"), fields)


@router.get(
    "/v1/entities/",
    summary="List users, agents and runs (mem0)",
    response_model=EntityPage,
    responses=error_responses(401, 403, 429),
)
def entities(principal: Reader) -> dict[str, Any]:
    """Every user, agent and run id that owns a live memory; a user-bound key sees its own
    user and the agents and runs of its own memories only."""
    found = reads.entities(principal.memory.engine, principal.bound_user)
    return {"count": len(found), "next": None, "previous": None, "results": found}


@router.delete(
    "/v2/entities/user/{user_id:anyid}/",
    summary="Delete a user (mem0): erase",
    response_model=EraseResult,
    responses=error_responses(401, 403, 404, 422, 429),
)
def delete_user(user_id: str, principal: Eraser) -> dict[str, Any]:
    """mem0's delete_users(user_id=...): the user is erased as ``DELETE /v1/users/{id}/`` does
    (data key destroyed, memories and history deleted), with the same rights."""
    return principal.memory.erase_user(user_id)


def _delete_owner(principal: Principal, **owner: str) -> dict[str, Any]:
    # A user-bound key deletes only its own user's memories of that agent or run.
    return principal.memory.delete_all(user_id=principal.user_scope(None), **owner)


@router.delete(
    "/v2/entities/agent/{agent_id:anyid}/",
    summary="Delete an agent's memories (mem0)",
    response_model=DeleteAllResult,
    responses=error_responses(),
)
def delete_agent(agent_id: str, principal: Writer) -> dict[str, Any]:
    return _delete_owner(principal, agent_id=agent_id)


@router.delete(
    "/v2/entities/run/{run_id:anyid}/",
    summary="Delete a run's memories (mem0)",
    response_model=DeleteAllResult,
    responses=error_responses(),
)
def delete_run(run_id: str, principal: Writer) -> dict[str, Any]:
    return _delete_owner(principal, run_id=run_id)


@router.delete(
    "/v2/entities/app/{app_id:anyid}/",
    summary="Delete an app (mem0): not supported",
    responses=error_responses(),
)
def delete_app(app_id: str, principal: Writer) -> dict[str, Any]:
    raise UnsupportedOption(NO_APP)


def _owned_ids(principal: Principal, ids: list[str]) -> None:
    """Every id exists and is this key's to change, checked before any is changed."""
    if len(set(ids)) != len(ids):
        raise InvalidInput("a memory_id appears twice in the batch")
    for memory_id in ids:
        principal.owned(principal.memory.get(memory_id), memory_id)


@router.put(
    "/v1/batch/",
    summary="Update many memories (mem0)",
    response_model=BatchResult,
    responses=error_responses(),
)
def batch_update(body: BatchUpdate, principal: Writer, request: Request) -> dict[str, Any]:
    """Up to 1,000 updates; every id is checked (exists, visible to the key, text or metadata
    given) before the first is applied; each is then applied in its own transaction."""
    ids = [item.memory_id for item in body.memories]
    for item in body.memories:
        if item.text is None and item.metadata is None:
            raise InvalidInput(f"the update of {item.memory_id} has neither text nor metadata")
    _owned_ids(principal, ids)
    for item in body.memories:
        principal.memory.update(item.memory_id, item.text, item.metadata)
    request.state.audit_ids = ids
    return {"message": f"Successfully updated {len(ids)} memories", "ids": ids}


@router.delete(
    "/v1/batch/",
    summary="Delete many memories (mem0)",
    response_model=BatchResult,
    responses=error_responses(),
)
def batch_delete(body: BatchDelete, principal: Writer, request: Request) -> dict[str, Any]:
    """Up to 1,000 deletes; every id is checked before the first is deleted."""
    ids = [item.memory_id for item in body.memories]
    _owned_ids(principal, ids)
    for memory_id in ids:
        principal.memory.delete(memory_id)
    request.state.audit_ids = ids
    return {"message": f"Successfully deleted {len(ids)} memories", "ids": ids}
