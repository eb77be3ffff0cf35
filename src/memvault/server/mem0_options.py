"""mem0's request options, translated to memvault's or refused by name (see docs/rest.md).

mem0's client sends options memvault has no equivalent for (custom extraction instructions, a
reranker, ...). Each is either honoured here or refused with ``UnsupportedOption`` naming it: an
option silently ignored would let a caller believe it took effect.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from memvault.clock import iso
from memvault.errors import InvalidFilter, InvalidInput, UnsupportedOption
from memvault.filters import COLUMNS, SCOPE_FIELDS
from memvault.server.bodies import check_json

__all__ = [
    "MEMORY_FIELDS",
    "check_fields",
    "lift_metadata",
    "parse_query_filters",
    "refuse_set",
    "scope_from_filters",
    "select_fields",
    "timestamp_iso",
]

# What a result may be cut down to with ``fields`` (``id`` is always kept).
MEMORY_FIELDS = frozenset(
    {
        "id",
        "memory",
        "metadata",
        "user_id",
        "agent_id",
        "run_id",
        "actor_id",
        "role",
        "memory_type",
        "created_at",
        "updated_at",
        "expires_at",
        "importance",
        "access_count",
        "last_accessed_at",
        "score",
        "explain",
    }
)
# mem0's app scope: memvault's scopes are user, agent and run only.
NO_APP = "app_id: memvault has no app scope (scopes are user_id, agent_id and run_id)"
# A query-string filter is a scope, never a large expression.
MAX_QUERY_FILTER = 4096
_OPERATOR_NAMES = frozenset({"and", "or", "not"})


def refuse_set(options: Mapping[str, object], reasons: Mapping[str, str]) -> None:
    """``UnsupportedOption`` for the first option of ``reasons`` that was sent (not None)."""
    for name, reason in reasons.items():
        if options.get(name) is not None:
            raise UnsupportedOption(f"{name} is not supported: {reason}")


def scope_from_filters(
    filters: Mapping[str, Any] | None, given: Mapping[str, str | None], where: str
) -> dict[str, str | None]:
    """The scope mem0 2.x sends inside ``filters`` (on add and delete_all), merged with the
    one given at the top level; any other key is refused (a filter cannot choose what is
    written or deleted here)."""
    scope = dict(given)
    for key, value in (filters or {}).items():
        if key == "app_id":
            raise UnsupportedOption(NO_APP)
        if key not in SCOPE_FIELDS:
            raise UnsupportedOption(
                f"filters on {where} may hold only user_id, agent_id and run_id (not {key!r})"
            )
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidInput(f"filters.{key} must be a string")
        if scope.get(key) is not None and scope[key] != value:
            raise InvalidInput(f"{key} is given twice, with two values (top level and filters)")
        scope[key] = value
    return scope


def parse_query_filters(raw: str) -> dict[str, Any]:
    """``filters`` of ``DELETE /v1/memories/``: JSON, or the Python form mem0's client sends
    (httpx writes a dict query value as its ``repr``). Bounded before parsing, literals only."""
    if len(raw) > MAX_QUERY_FILTER:
        raise InvalidInput(f"filters is longer than {MAX_QUERY_FILTER} characters")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise InvalidInput("filters is nested too deeply") from None
    except ValueError:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise InvalidInput("filters must be a JSON object") from None
    if not isinstance(value, dict):
        raise InvalidInput("filters must be a JSON object")
    check_json(value)
    return value


def timestamp_iso(value: float | str | None) -> str | None:
    """mem0's ``timestamp`` (Unix seconds, or an ISO 8601 text) as a stored time."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not math.isfinite(value):
        raise InvalidInput("timestamp must be Unix seconds or an ISO 8601 datetime")
    try:
        return iso(datetime.fromtimestamp(value, UTC))
    except (OverflowError, OSError, ValueError):
        raise InvalidInput("timestamp is out of range") from None


def lift_metadata(node: Any) -> Any:
    """mem0's ``{"metadata": {"k": v}}`` as memvault's ``{"k": v}`` (a metadata key is a bare
    field here), inside AND/OR/NOT too. A key that would read as a built-in field or an
    operator cannot name metadata in memvault's grammar, and is refused."""
    if not isinstance(node, dict):
        return node
    plain: dict[str, Any] = {}
    lifted: dict[str, Any] | None = None
    for key, value in node.items():
        if key in ("AND", "OR", "NOT") and isinstance(value, list):
            plain[key] = [lift_metadata(part) for part in value]
        elif key == "metadata" and isinstance(value, dict):
            for inner in value:
                if inner in COLUMNS or inner.lower() in _OPERATOR_NAMES:
                    raise InvalidFilter(
                        f"metadata key {inner!r} cannot be filtered on: it names a built-in "
                        "field or an operator"
                    )
            lifted = value
        else:
            plain[key] = value
    if lifted is None:
        return plain
    if not plain:
        return dict(lifted)
    if set(lifted) & set(plain):
        return {"AND": [plain, dict(lifted)]}
    return {**plain, **lifted}


def check_fields(fields: Iterable[str] | None) -> frozenset[str] | None:
    if fields is None:
        return None
    chosen = frozenset(fields)
    unknown = sorted(chosen - MEMORY_FIELDS)
    if unknown:
        raise InvalidInput(f"fields: unknown field {unknown[0]!r}; known: {sorted(MEMORY_FIELDS)}")
    return chosen | {"id"}


def select_fields(answer: dict[str, Any], fields: frozenset[str] | None) -> dict[str, Any]:
    """Each result cut down to ``fields`` (mem0's ``fields`` option)."""
    if fields is None:
        return answer
    results = [{k: v for k, v in item.items() if k in fields} for item in answer["results"]]
    return {**answer, "results": results}
