"""A user's rights over REST: export (access, portability) and erase (erasure).

``{user_id:anyid}``: any id that can be stored must be reachable here, and ids may hold ``/``
(sent as ``/`` or ``%2F``; ``%``, ``#`` and ``?`` are sent percent-encoded, as in any URL). The
route's suffix (``/export/``, ``/rotate-key/``) is matched last, so an id may even end in
``/export``; unlike ``:path`` the converter also matches a newline, so a bad id is refused as an
id (422) rather than as a missing route. Who may act on which user is ``security.policy``'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from starlette.convertors import Convertor, register_url_convertor

from memvault.security.policy import Action
from memvault.security.principal import Principal
from memvault.server.auth import require
from memvault.server.bodies import CheckedRoute
from memvault.server.errors import error_responses
from memvault.server.schemas import EraseResult, RotateResult

__all__ = ["router"]


class AnyId(Convertor[str]):
    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anyid", AnyId())
router = APIRouter(prefix="/v1/users", tags=["users (GDPR)"], route_class=CheckedRoute)


def _attachment(filename: str) -> str:
    """A Content-Disposition any id fits in: an ASCII fallback and the exact name (RFC 6266)."""
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get(
    "/{user_id:anyid}/export/",
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
    user_id: str, principal: Annotated[Principal, Depends(require(Action.USERS_EXPORT))]
) -> StreamingResponse:
    lines = principal.memory.export_user(user_id)  # raises NotFound before streaming

    def body() -> Iterator[bytes]:
        for line in lines:
            yield (json.dumps(line, ensure_ascii=False) + "\n").encode()

    filename = f"memvault-export-{principal.namespace}-{user_id}.jsonl"
    return StreamingResponse(
        body(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": _attachment(filename)},
    )


@router.delete(
    "/{user_id:anyid}/",
    summary="Erase a user (crypto-shredding)",
    response_model=EraseResult,
    responses=error_responses(401, 403, 404, 422, 429),
)
def erase(
    user_id: str, principal: Annotated[Principal, Depends(require(Action.USERS_ERASE))]
) -> dict[str, Any]:
    """Destroy the user's data key, then delete their memories, index entries and history."""
    return principal.memory.erase_user(user_id)


@router.post(
    "/{user_id:anyid}/rotate-key/",
    summary="Rotate a user's data key",
    response_model=RotateResult,
    responses=error_responses(401, 403, 404, 422, 429),
)
def rotate_key(
    user_id: str, principal: Annotated[Principal, Depends(require(Action.USERS_ROTATE_KEY))]
) -> dict[str, Any]:
    """Re-encrypt every memory and history event of the user under a new data key."""
    return principal.memory.rotate_user_key(user_id)
