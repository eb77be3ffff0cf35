"""``/v1/jobs``: the durable queue's jobs (an ``infer=True`` add answers 202 with one).

A user-bound key sees and retries only its own user's jobs: another user's job looks absent
(404), as another user's memory does. Jobs are bounded to the key's namespace.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from memvault.security.policy import Action
from memvault.security.principal import Principal
from memvault.server.auth import require
from memvault.server.bodies import CheckedRoute
from memvault.server.errors import error_responses
from memvault.server.schemas import JobItem, JobList

__all__ = ["router"]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=CheckedRoute)
Reader = Annotated[Principal, Depends(require(Action.JOBS_READ))]
Writer = Annotated[Principal, Depends(require(Action.JOBS_WRITE))]
Status = Literal["queued", "running", "done", "failed", "dead"]


@router.get("/", summary="List jobs", response_model=JobList, responses=error_responses())
def list_jobs(
    principal: Reader,
    status: Status | None = None,
    user_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The namespace's jobs, newest first (a user-bound key: its user's only)."""
    return principal.memory.jobs(status=status, user_id=principal.user_scope(user_id), limit=limit)


@router.get("/{job_id}", summary="Get a job", response_model=JobItem, responses=error_responses())
def get_job(job_id: str, principal: Reader) -> dict[str, Any]:
    """Status, attempts, the last error code and, once done, the result."""
    return principal.memory.job(job_id, user_id=principal.bound_user)


@router.post(
    "/{job_id}/retry",
    summary="Retry a dead job",
    response_model=JobItem,
    responses={**error_responses(), **error_responses(409)},
)
def retry_job(job_id: str, principal: Writer) -> dict[str, Any]:
    """Queue a dead (or failed) job again with its attempts reset; 409 in any other state."""
    return principal.memory.retry_job(job_id, user_id=principal.bound_user)
