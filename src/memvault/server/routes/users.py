"""A user's rights over REST: export (access, portability) and erase (erasure)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from memvault.errors import Forbidden
from memvault.security.principal import Principal
from memvault.server.auth import require
from memvault.server.errors import error_responses
from memvault.server.schemas import EraseResult, RotateResult

__all__ = ["router"]

router = APIRouter(prefix="/v1/users", tags=["users (GDPR)"])


def _allowed(principal: Principal, user_id: str) -> None:
    """Admins act on any user of their namespace; a user-bound key only on its own user."""
    if principal.role == "admin" and principal.bound_user is None:
        return
    if principal.bound_user != user_id:
        raise Forbidden("only an admin key, or a key bound to this user, may do this")


@router.get(
    "/{user_id}/export/",
    summary="Export a user's data",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "JSON lines: a header, each memory with its history, then history of "
            "deleted memories.",
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        },
        **error_responses(401, 403, 404, 422, 429),
    },
)
def export(
    user_id: str, principal: Annotated[Principal, Depends(require("read"))]
) -> StreamingResponse:
    _allowed(principal, user_id)
    lines = principal.memory.export_user(user_id)  # raises NotFound before streaming

    def body() -> Iterator[bytes]:
        for line in lines:
            yield (json.dumps(line, ensure_ascii=False) + "\n").encode()

    filename = f"memvault-export-{principal.namespace}-{user_id}.jsonl".replace('"', "")
    return StreamingResponse(
        body(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.delete(
    "/{user_id}/",
    summary="Erase a user (crypto-shredding)",
    response_model=EraseResult,
    responses=error_responses(401, 403, 404, 422, 429),
)
def erase(
    user_id: str, principal: Annotated[Principal, Depends(require("write"))]
) -> dict[str, Any]:
    """Destroy the user's data key, then delete their memories, index entries and history."""
    _allowed(principal, user_id)
    return principal.memory.erase_user(user_id)


@router.post(
    "/{user_id}/rotate-key/",
    summary="Rotate a user's data key",
    response_model=RotateResult,
    responses=error_responses(401, 403, 422, 429),
)
def rotate_key(
    user_id: str, principal: Annotated[Principal, Depends(require("admin"))]
) -> dict[str, Any]:
    """Re-encrypt every memory and history event of the user under a new data key."""
    if principal.bound_user is not None:
        raise Forbidden("a user-bound key cannot rotate keys")
    return principal.memory.rotate_user_key(user_id)
