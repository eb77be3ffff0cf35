"""``/v1/entities/names/``: the entities a scope's memories name (``Memory.entities``).

mem0's ``/v1/entities/`` (``routes/mem0.py``) lists the owners of memories (users, agents,
runs); this lists what the memories talk about.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from memvault.server.bodies import CheckedRoute
from memvault.server.errors import error_responses
from memvault.server.routes.memories import Reader, ScopeQuery
from memvault.server.schemas import NamedEntities

__all__ = ["router"]

router = APIRouter(prefix="/v1/entities", tags=["entities"], route_class=CheckedRoute)


@router.get(
    "/names/",
    summary="Entities named by a scope's memories",
    response_model=NamedEntities,
    responses=error_responses(),
)
def names(
    principal: Reader,
    user_id: ScopeQuery = None,
    agent_id: ScopeQuery = None,
    run_id: ScopeQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """People, places, things, dates, titles and amounts the scope's live memories name, the
    most named first, with how many memories name each (one of user_id, agent_id, run_id is
    required; a user-bound key sees its own user's only)."""
    return principal.memory.entities(
        user_id=principal.user_scope(user_id), agent_id=agent_id, run_id=run_id, limit=limit
    )
