"""What each ``Client`` method sends to the REST API and how it reads the answers.

Each method of ``Memory`` the REST API offers is written here once, as a *plan*: a generator with
``Memory``'s name and parameters that yields the HTTP ``Call``s it needs and returns the value
``Memory`` would return. ``Client`` and ``AsyncClient`` (client.py) only differ in how they send
a call, so neither can drift from the other. A failed call is thrown into the plan as the
``MemvaultError`` subclass of the error's stable ``code``, where the plan may turn it into
``Memory``'s answer (``get`` of an unknown id is None).

Ids go into paths only through ``_memory_path``, ``user_path``, ``_job_path`` and
``_delivery_path``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias, TypeVar
from urllib.parse import quote

import httpx

from memvault import errors
from memvault.errors import InvalidInput, MemvaultError, NotFound, RateLimited, StorageError
from memvault.memory import BATCH_SIZE
from memvault.retrieval.hybrid import Mode
from memvault.validation import check_offset, check_top_k

__all__ = ["Call", "Plan", "error_of", "user_path"]

R = TypeVar("R")

# The most items one request may carry (POST /v1/memories/batch/) or a page may hold.
MAX_PER_REQUEST = 1000

_BY_CODE: dict[str, type[MemvaultError]] = {
    cls.code: cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, MemvaultError)
}


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)


Plan: TypeAlias = Generator[Call, Any, R]


def error_of(response: httpx.Response) -> MemvaultError:
    """The library's error for an error answer, chosen by its stable ``code``."""
    try:
        detail = response.json()["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        # No error body: /readyz answers a bare 503 when a store does not answer.
        code, message = "internal", f"HTTP {response.status_code}"
        if response.status_code == 503:
            return StorageError("the server's stores do not answer")
    cls = _BY_CODE.get(code, MemvaultError)
    if cls is RateLimited:
        return RateLimited(message, _retry_after(response.headers.get("Retry-After", "")))
    return cls(message)


def _retry_after(header: str) -> int:
    """Seconds to wait: the header's delay-seconds, else 1 (an HTTP date, or anything else a
    server or proxy sends, is not read as a number of seconds)."""
    text = header.strip()
    # At most 9 digits: int() refuses (ValueError) strings of thousands of digits.
    return max(1, int(text)) if text.isascii() and text.isdigit() and len(text) <= 9 else 1


# --- paths ------------------------------------------------------------------------------------


def _segment(value: str, what: str) -> str:
    """One path segment, whatever ``value`` holds: ``%``, ``?``, ``#`` are escaped, and dots are
    written ``%2E`` so that ``.`` and ``..`` cannot become dot-segments the URL parser resolves
    (``delete("../users/alice")`` must never reach ``DELETE /v1/users/alice/``)."""
    if not isinstance(value, str):
        raise InvalidInput("an id is a string")
    if value in ("", ".", "..") or "/" in value:
        # Memory and job ids are server-made: never empty, a dot-segment or holding "/". Refused
        # here, so no URL parser (or proxy) on the way can read the id as anything but one segment.
        raise NotFound(f"no {what} has this id")
    return _escaped(value)


def _escaped(value: str) -> str:
    return quote(value, safe="").replace(".", "%2E")


def _memory_path(memory_id: str, *rest: str) -> str:
    """``/v1/memories/{id}/[rest/]``."""
    return "/".join(("/v1/memories", _segment(memory_id, "memory"), *rest, ""))


def _job_path(job_id: str, *rest: str) -> str:
    """``/v1/jobs/{id}[/rest]`` (the jobs routes have no trailing slash)."""
    return "/".join(("/v1/jobs", _segment(job_id, "job"), *rest))


def _delivery_path(delivery_id: str, *rest: str) -> str:
    """``/v1/namespace/webhook/deliveries/{id}[/rest]``."""
    return "/".join((_WEBHOOK + "deliveries", _segment(delivery_id, "delivery"), *rest))


def user_path(user_id: str, *rest: str) -> str:
    """``/v1/users/{user_id}/[rest/]`` for any stored user id: ``/`` and dots escaped too (the
    server's route takes any id and matches its suffix last). An empty id is sent as it is, and
    refused by the server as ``Memory`` refuses it (``invalid_id``)."""
    if not isinstance(user_id, str):
        raise InvalidInput("user_id must be a string")
    return "/".join(("/v1/users", _escaped(user_id), *rest, ""))


# --- bodies -----------------------------------------------------------------------------------


def _present(**values: Any) -> dict[str, Any]:
    """The values that are not None: an absent field is the server's default, as in ``Memory``."""
    return {k: v for k, v in values.items() if v is not None}


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _add_body(item: Mapping[str, Any]) -> dict[str, Any]:
    """An add's arguments as the route's body: a single message dict becomes a list of one (the
    route takes a text or a list), a datetime ISO 8601."""
    if not isinstance(item, Mapping):
        raise InvalidInput("each item must be an object with add()'s arguments")
    body = _present(**item)
    messages = body.get("messages")
    if isinstance(messages, Mapping):
        body["messages"] = [dict(messages)]
    elif isinstance(messages, list):
        body["messages"] = [dict(m) if isinstance(m, Mapping) else m for m in messages]
    if isinstance(body.get("metadata"), Mapping):
        body["metadata"] = dict(body["metadata"])
    if "expiration_date" in body:
        body["expiration_date"] = _iso(body["expiration_date"])
    return body


def _strip_nulls(item: dict[str, Any]) -> dict[str, Any]:
    """The server lists absent ``score``/``explain`` as null; the library omits them."""
    return {k: v for k, v in item.items() if not (k in ("score", "explain") and v is None)}


# --- memories ---------------------------------------------------------------------------------


def add(
    messages: str | Mapping[str, Any] | list[Mapping[str, Any]],
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    memory_type: str | None = None,
    expiration_date: str | datetime | None = None,
    infer: bool = False,
    actor_id: str | None = None,
    importance: float | None = None,
) -> Plan[dict[str, Any]]:
    """``POST /v1/memories/``. A queued ``infer`` add (202) answers as ``Memory.add`` does:
    ``{"results": [], "job": {"id", "status"}}``."""
    item = {
        "messages": messages,
        "user_id": user_id,
        "agent_id": agent_id,
        "run_id": run_id,
        "metadata": metadata,
        "memory_type": memory_type,
        "expiration_date": expiration_date,
        "infer": infer,
        "actor_id": actor_id,
        "importance": importance,
    }
    answer = yield Call("POST", "/v1/memories/", _add_body(item))
    if "job_id" in answer:
        return {"results": [], "job": {"id": answer["job_id"], "status": answer["status"]}}
    return dict(answer)


def add_many(
    items: Iterable[Mapping[str, Any]],
    *,
    batch_size: int = BATCH_SIZE,
    on_progress: Callable[[int, int], None] | None = None,
) -> Plan[dict[str, list[dict[str, Any]]]]:
    """``POST /v1/memories/batch/``, ``batch_size`` items per request (at most 1,000, the
    route's limit). Each request is checked whole and stored in one transaction; a refused
    batch leaves the earlier ones stored (``on_progress(done, total)`` told which)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput("batch_size must be a positive integer")
    if on_progress is not None and not callable(on_progress):
        raise InvalidInput("on_progress must be a function of (done, total)")
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
        raise InvalidInput("items must be a list of objects with add()'s arguments")
    bodies = [_add_body(item) for item in items]
    size = min(batch_size, MAX_PER_REQUEST)
    results: list[dict[str, Any]] = []
    for start in range(0, len(bodies), size):
        answer = yield Call("POST", "/v1/memories/batch/", {"items": bodies[start : start + size]})
        results.extend(answer["results"])
        if on_progress is not None:
            on_progress(min(start + size, len(bodies)), len(bodies))
    return {"results": results}


def search(
    query: str,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    filters: Mapping[str, Any] | None = None,
    top_k: int = 10,
    threshold: float | None = None,
    explain: bool = False,
    mode: Mode = "hybrid",
) -> Plan[dict[str, list[dict[str, Any]]]]:
    """``POST /v1/memories/search/``."""
    body = {
        "query": query,
        **_present(user_id=user_id, agent_id=agent_id, run_id=run_id, threshold=threshold),
        "top_k": top_k,
        "explain": explain,
        "mode": mode,
    }
    if filters is not None:
        body["filters"] = dict(filters)
    answer = yield Call("POST", "/v1/memories/search/", body)
    return {"results": [_strip_nulls(item) for item in answer["results"]]}


def get(memory_id: str) -> Plan[dict[str, Any] | None]:
    """``GET /v1/memories/{id}/``; None for an id the key cannot see, as ``Memory.get``."""
    try:
        answer = yield Call("GET", _memory_path(memory_id))
    except NotFound:
        return None
    return _strip_nulls(answer)


def _page(
    user_id: str | None,
    agent_id: str | None,
    run_id: str | None,
    filters: Mapping[str, Any] | None,
    top_k: int,
    offset: int,
) -> Plan[tuple[list[dict[str, Any]], int]]:
    """``top_k`` rows after ``offset`` and the total, from ``POST /v1/memories/list/``'s
    pages of ``top_k``: an offset that is not a multiple of ``top_k`` spans two pages (two
    requests, so a write between them may shift the rows, as between two pages)."""
    top_k, offset = check_top_k(top_k, MAX_PER_REQUEST), check_offset(offset)
    page, skip = divmod(offset, top_k)
    body = _present(user_id=user_id, agent_id=agent_id, run_id=run_id)
    if filters is not None:
        body["filters"] = dict(filters)
    body |= {"page": page + 1, "page_size": top_k}
    first = yield Call("POST", "/v1/memories/list/", body)
    found: list[dict[str, Any]] = first["results"][skip:]
    if skip and first["next"] is not None:
        second = yield Call("POST", "/v1/memories/list/", {**body, "page": page + 2})
        found += second["results"][: top_k - len(found)]
    return [_strip_nulls(item) for item in found], int(first["count"])


def get_all(
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    filters: Mapping[str, Any] | None = None,
    top_k: int = 100,
    offset: int = 0,
) -> Plan[dict[str, list[dict[str, Any]]]]:
    """``POST /v1/memories/list/``: the scope's memories, newest first."""
    found, _ = yield from _page(user_id, agent_id, run_id, filters, top_k, offset)
    return {"results": found}


def get_page(
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    filters: Mapping[str, Any] | None = None,
    top_k: int = 100,
    offset: int = 0,
) -> Plan[tuple[list[dict[str, Any]], int]]:
    """``POST /v1/memories/list/``: ``get_all``'s page and ``count``'s total."""
    return (yield from _page(user_id, agent_id, run_id, filters, top_k, offset))


def count(
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    filters: Mapping[str, Any] | None = None,
) -> Plan[int]:
    """The ``count`` of ``POST /v1/memories/list/`` (one row is read along)."""
    _, total = yield from _page(user_id, agent_id, run_id, filters, 1, 0)
    return total


def history(memory_id: str) -> Plan[list[dict[str, Any]]]:
    """``GET /v1/memories/{id}/history/``; ``[]`` for an id the key cannot see."""
    try:
        answer = yield Call("GET", _memory_path(memory_id, "history"))
    except NotFound:
        return []
    return list(answer)


def entities(
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    limit: int = 100,
) -> Plan[dict[str, list[dict[str, Any]]]]:
    """``GET /v1/entities/names/``: the entities the scope's memories name."""
    params = _present(user_id=user_id, agent_id=agent_id, run_id=run_id, limit=limit)
    answer = yield Call("GET", "/v1/entities/names/", params=params)
    return {"results": list(answer["results"])}


def related(memory_id: str, *, limit: int = 10) -> Plan[dict[str, list[dict[str, Any]]]]:
    """``GET /v1/memories/{id}/related/``: memories sharing entities with it."""
    answer = yield Call("GET", _memory_path(memory_id, "related"), params={"limit": limit})
    return {"results": [_strip_nulls(item) for item in answer["results"]]}


def update(
    memory_id: str,
    text: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    *,
    data: str | None = None,
) -> Plan[dict[str, Any]]:
    """``PUT /v1/memories/{id}/``; ``data`` is mem0's name for ``text``."""
    body = _present(text=text if text is not None else data)
    if metadata is not None:
        body["metadata"] = dict(metadata)
    answer = yield Call("PUT", _memory_path(memory_id), body)
    return {**answer, "result": _strip_nulls(answer["result"])}


def delete(memory_id: str) -> Plan[dict[str, str]]:
    """``DELETE /v1/memories/{id}/``."""
    return dict((yield Call("DELETE", _memory_path(memory_id))))


def delete_all(
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
) -> Plan[dict[str, Any]]:
    """``DELETE /v1/memories/?user_id=...``: every memory of a scope."""
    params = _present(user_id=user_id, agent_id=agent_id, run_id=run_id)
    return dict((yield Call("DELETE", "/v1/memories/", params=params)))


# --- a user's rights, the namespace's rules ---------------------------------------------------


def erase_user(user_id: str) -> Plan[dict[str, Any]]:
    """``DELETE /v1/users/{user_id}/``: crypto-shredding; ``NotFound`` for an unknown user."""
    return dict((yield Call("DELETE", user_path(user_id))))


def rotate_user_key(user_id: str) -> Plan[dict[str, Any]]:
    """``POST /v1/users/{user_id}/rotate-key/`` (admin)."""
    return dict((yield Call("POST", user_path(user_id, "rotate-key"))))


def namespace_settings() -> Plan[dict[str, Any]]:
    """``GET /v1/namespace/settings/`` (admin): the key's namespace's rules."""
    return dict((yield Call("GET", "/v1/namespace/settings/")))


def configure_namespace(
    *,
    secret_policy: str | None = None,
    default_ttl_seconds: float | bool | None = False,
    extraction_instructions: str | None = None,
    reconciliation_instructions: str | None = None,
) -> Plan[dict[str, Any]]:
    """``PUT /v1/namespace/settings/`` (admin): ``default_ttl_seconds=None`` clears the default
    TTL; left at ``False`` it is kept, as in ``Memory``."""
    body: dict[str, Any] = _present(
        secret_policy=secret_policy,
        extraction_instructions=extraction_instructions,
        reconciliation_instructions=reconciliation_instructions,
    )
    if default_ttl_seconds is None:
        body["clear_default_ttl"] = True
    elif default_ttl_seconds is not False:
        body["default_ttl_seconds"] = default_ttl_seconds
    return dict((yield Call("PUT", "/v1/namespace/settings/", body)))


def namespaces() -> Plan[list[dict[str, Any]]]:
    """``GET /v1/namespaces/`` (admin): an operator's key lists every namespace, another admin
    key its own."""
    return list((yield Call("GET", "/v1/namespaces/")))


# --- the job queue ----------------------------------------------------------------------------


def job(job_id: str, *, user_id: str | None = None) -> Plan[dict[str, Any]]:
    """``GET /v1/jobs/{id}``; ``user_id``: only a job of that user, as ``Memory.job``."""
    answer = yield Call("GET", _job_path(job_id))
    if user_id is not None and answer["user_id"] != user_id:
        raise NotFound(f"no job {job_id} in this namespace")
    return dict(answer)


def jobs(
    *, status: str | None = None, user_id: str | None = None, limit: int = 100
) -> Plan[dict[str, list[dict[str, Any]]]]:
    """``GET /v1/jobs/?status=&user_id=&limit=``: newest first."""
    params = _present(status=status, user_id=user_id, limit=limit)
    return dict((yield Call("GET", "/v1/jobs/", params=params)))


def retry_job(job_id: str, *, user_id: str | None = None) -> Plan[dict[str, Any]]:
    """``POST /v1/jobs/{id}/retry``; with ``user_id``, only a job of that user."""
    if user_id is not None:
        yield from job(job_id, user_id=user_id)
    return dict((yield Call("POST", _job_path(job_id, "retry"))))


# --- webhooks ---------------------------------------------------------------------------------

_WEBHOOK = "/v1/namespace/webhook/"


def configure_webhook(url: str, *, include_text: bool = False) -> Plan[dict[str, Any]]:
    """``PUT /v1/namespace/webhook/`` (admin): a new webhook's ``secret`` is in this answer."""
    return dict((yield Call("PUT", _WEBHOOK, {"url": url, "include_text": include_text})))


def webhook() -> Plan[dict[str, Any]]:
    """``GET /v1/namespace/webhook/`` (admin)."""
    return dict((yield Call("GET", _WEBHOOK)))


def remove_webhook() -> Plan[dict[str, Any]]:
    """``DELETE /v1/namespace/webhook/`` (admin)."""
    return dict((yield Call("DELETE", _WEBHOOK)))


def rotate_webhook_secret(*, overlap_seconds: int = 0) -> Plan[dict[str, Any]]:
    """``POST /v1/namespace/webhook/rotate-secret`` (admin)."""
    body = {"overlap_seconds": overlap_seconds}
    return dict((yield Call("POST", _WEBHOOK + "rotate-secret", body)))


def webhook_deliveries(
    *, status: str | None = None, limit: int = 100
) -> Plan[dict[str, list[dict[str, Any]]]]:
    """``GET /v1/namespace/webhook/deliveries/?status=&limit=`` (admin): newest first."""
    params = _present(status=status, limit=limit)
    return dict((yield Call("GET", _WEBHOOK + "deliveries/", params=params)))


def retry_webhook_delivery(delivery_id: str) -> Plan[dict[str, Any]]:
    """``POST /v1/namespace/webhook/deliveries/{id}/retry`` (admin)."""
    return dict((yield Call("POST", _delivery_path(delivery_id, "retry"))))


# --- operations -------------------------------------------------------------------------------


def ping() -> Plan[None]:
    """``GET /readyz``: raises ``StorageError`` when the server's stores do not answer."""
    yield Call("GET", "/readyz")
