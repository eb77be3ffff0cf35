"""OpenAPI links: which operation's answer feeds which next request (OpenAPI 3.x ``links``).

A client generator or a stateful tester (schemathesis) reads them: the id an add answers is the
``memory_id`` of get, update, delete and history; the scope an add was sent to is the
``user_id`` of list, export and erase. Each link names its target by path and method
(``operationRef``), the API's contract, not by FastAPI's generated operation ids.
"""

from __future__ import annotations

from typing import Any

__all__ = ["added_links", "memory_links", "scope_links"]

_MEMORY = "~1v1~1memories~1{memory_id}~1"
_USER = "~1v1~1users~1{user_id}~1"
_TARGETS = {
    "GetMemory": f"#/paths/{_MEMORY}/get",
    "UpdateMemory": f"#/paths/{_MEMORY}/put",
    "DeleteMemory": f"#/paths/{_MEMORY}/delete",
    "MemoryHistory": f"#/paths/{_MEMORY}history~1/get",
}


def memory_links(memory_id: str, *names: str) -> dict[str, Any]:
    """Links to the operations on one memory (all four unless ``names``), its id found by the
    runtime expression ``memory_id`` (e.g. ``$response.body#/results/0/id``)."""
    chosen = names or tuple(_TARGETS)
    return {
        name: {
            "operationRef": _TARGETS[name],
            "parameters": {"memory_id": memory_id},
            "description": f"{name} of the memory {memory_id} names.",
        }
        for name in chosen
    }


def scope_links(user_id: str) -> dict[str, Any]:
    """Links to the operations on the user scope ``user_id`` names."""
    return {
        "ListUserMemories": {
            "operationRef": "#/paths/~1v1~1memories~1/get",
            "parameters": {"user_id": user_id},
            "description": "The memories of the user the add was sent for.",
        },
        "ExportUser": {
            "operationRef": f"#/paths/{_USER}export~1/get",
            "parameters": {"user_id": user_id},
            "description": "Everything the store holds of that user.",
        },
        "EraseUser": {
            "operationRef": f"#/paths/{_USER}/delete",
            "parameters": {"user_id": user_id},
            "description": "Erase that user (right to erasure).",
        },
    }


def added_links(user_id: str = "$request.body#/user_id") -> dict[str, Any]:
    """The 200 answer of an add: the first memory it stored, and the scope it was sent for."""
    return {
        "links": {
            **memory_links("$response.body#/results/0/id"),
            **scope_links(user_id),
        }
    }
