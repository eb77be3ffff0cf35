"""``Client`` and ``AsyncClient``: ``Memory``'s methods over HTTP, so moving from embedded to a
server is one line::

    m = Memory()                                          # embedded
    m = Client("http://127.0.0.1:8765", api_key="mvk_...")  # the same calls, remote

Each method is described once as a ``Call`` (method, path, body, how to read the answer); the sync
and async clients only differ in how they send it. Errors come back as the same ``MemvaultError``
subclasses the library raises, chosen by the error's stable ``code``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from memvault import errors
from memvault.errors import MemvaultError, RateLimited

__all__ = ["AsyncClient", "Client"]

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
    read: Callable[[Any], Any] = lambda body: body


def _error(response: httpx.Response) -> MemvaultError:
    try:
        detail = response.json()["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "internal", f"HTTP {response.status_code}"
    cls = _BY_CODE.get(code, MemvaultError)
    if cls is RateLimited:
        return RateLimited(message, int(response.headers.get("Retry-After", "1")))
    error = cls(message)
    return error


def _segment(value: str) -> str:
    """One path segment, whatever ``value`` holds: ``%``, ``?``, ``#`` are escaped, and dots are
    written ``%2E`` so that ``.`` and ``..`` cannot become dot-segments the URL parser resolves
    (``delete("../users/alice")`` must never reach ``DELETE /v1/users/alice/``)."""
    if not isinstance(value, str):
        raise errors.InvalidInput("an id is a string")
    if value in ("", ".", "..") or "/" in value:
        # Memory ids are server-made: never empty, a dot-segment or holding "/". Refused here,
        # so no URL parser (or proxy) on the way can read the id as anything but one segment.
        raise errors.NotFound("no memory has this id")
    return quote(value, safe="").replace(".", "%2E")


def _memory_path(memory_id: str, *rest: str) -> str:
    """The only way a path with an id is built: ``/v1/memories/{id}/[rest/]``."""
    return "/".join(("/v1/memories", _segment(memory_id), *rest, ""))


def _iso(value: str | datetime | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _scope(user_id: str | None, agent_id: str | None, run_id: str | None) -> dict[str, str]:
    return {
        k: v for k, v in (("user_id", user_id), ("agent_id", agent_id), ("run_id", run_id)) if v
    }


class _Calls:
    """The API as ``Call`` descriptions: shared by both clients."""

    @staticmethod
    def add(
        messages: Any,
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
    ) -> Call:
        body = {
            "messages": messages,
            **_scope(user_id, agent_id, run_id),
            "metadata": dict(metadata) if metadata is not None else None,
            "memory_type": memory_type,
            "expiration_date": _iso(expiration_date),
            "infer": infer,
            "actor_id": actor_id,
            "importance": importance,
        }
        return Call("POST", "/v1/memories/", {k: v for k, v in body.items() if v is not None})

    @staticmethod
    def add_many(items: Iterable[Mapping[str, Any]]) -> Call:
        prepared = []
        for item in items:
            entry = {k: v for k, v in item.items() if v is not None}
            if "expiration_date" in entry:
                entry["expiration_date"] = _iso(entry["expiration_date"])
            prepared.append(entry)
        return Call("POST", "/v1/memories/batch/", {"items": prepared})

    @staticmethod
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
        mode: str = "hybrid",
    ) -> Call:
        body: dict[str, Any] = {
            "query": query,
            **_scope(user_id, agent_id, run_id),
            "top_k": top_k,
            "explain": explain,
            "mode": mode,
        }
        if filters is not None:
            body["filters"] = dict(filters)
        if threshold is not None:
            body["threshold"] = threshold
        return Call("POST", "/v1/memories/search/", body, read=_strip_nulls_in_results)

    @staticmethod
    def get(memory_id: str) -> Call:
        return Call("GET", _memory_path(memory_id), read=_strip_nulls)

    @staticmethod
    def get_all(
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        filters: Mapping[str, Any] | None = None,
        top_k: int = 100,
    ) -> Call:
        body: dict[str, Any] = {**_scope(user_id, agent_id, run_id), "page_size": top_k}
        if filters is not None:
            body["filters"] = dict(filters)
        return Call(
            "POST",
            "/v1/memories/list/",
            body,
            read=lambda page: _strip_nulls_in_results({"results": page["results"]}),
        )

    @staticmethod
    def update(
        memory_id: str,
        text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        data: str | None = None,
    ) -> Call:
        body: dict[str, Any] = {"text": text if text is not None else data}
        if metadata is not None:
            body["metadata"] = dict(metadata)
        return Call(
            "PUT",
            _memory_path(memory_id),
            {k: v for k, v in body.items() if v is not None},
            read=lambda r: {**r, "result": _strip_nulls(r["result"])},
        )

    @staticmethod
    def delete(memory_id: str) -> Call:
        return Call("DELETE", _memory_path(memory_id))

    @staticmethod
    def delete_all(
        *, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None
    ) -> Call:
        return Call("DELETE", "/v1/memories/", params=_scope(user_id, agent_id, run_id))

    @staticmethod
    def history(memory_id: str) -> Call:
        return Call("GET", _memory_path(memory_id, "history"))


def _strip_nulls(item: dict[str, Any]) -> dict[str, Any]:
    """The server lists absent ``score``/``explain`` as null; the library omits them."""
    return {k: v for k, v in item.items() if not (k in ("score", "explain") and v is None)}


def _strip_nulls_in_results(body: dict[str, Any]) -> dict[str, Any]:
    return {"results": [_strip_nulls(item) for item in body["results"]]}


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client:
    """``Memory``'s API against a memvault server."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8765",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def _send(self, call: Call) -> Any:
        response = self._http.request(call.method, call.path, json=call.json, params=call.params)
        if response.status_code >= 400:
            raise _error(response)
        return call.read(response.json())

    def add(self, messages: Any, **kwargs: Any) -> dict[str, Any]:
        return self._send(_Calls.add(messages, **kwargs))  # type: ignore[no-any-return]

    def add_many(self, items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        return self._send(_Calls.add_many(items))  # type: ignore[no-any-return]

    def search(self, query: str, **kwargs: Any) -> dict[str, Any]:
        return self._send(_Calls.search(query, **kwargs))  # type: ignore[no-any-return]

    def get(self, memory_id: str) -> dict[str, Any] | None:
        try:
            return self._send(_Calls.get(memory_id))  # type: ignore[no-any-return]
        except errors.NotFound:
            return None

    def get_all(self, **kwargs: Any) -> dict[str, Any]:
        return self._send(_Calls.get_all(**kwargs))  # type: ignore[no-any-return]

    def update(
        self, memory_id: str, text: str | None = None, metadata: Any = None, **kw: Any
    ) -> dict[str, Any]:
        return self._send(_Calls.update(memory_id, text, metadata, **kw))  # type: ignore[no-any-return]

    def delete(self, memory_id: str) -> dict[str, Any]:
        return self._send(_Calls.delete(memory_id))  # type: ignore[no-any-return]

    def delete_all(self, **kwargs: Any) -> dict[str, Any]:
        return self._send(_Calls.delete_all(**kwargs))  # type: ignore[no-any-return]

    def history(self, memory_id: str) -> list[dict[str, Any]]:
        try:
            return self._send(_Calls.history(memory_id))  # type: ignore[no-any-return]
        except errors.NotFound:
            return []

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """``AsyncMemory``'s API against a memvault server."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8765",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def _send(self, call: Call) -> Any:
        response = await self._http.request(
            call.method, call.path, json=call.json, params=call.params
        )
        if response.status_code >= 400:
            raise _error(response)
        return call.read(response.json())

    async def add(self, messages: Any, **kwargs: Any) -> dict[str, Any]:
        return await self._send(_Calls.add(messages, **kwargs))  # type: ignore[no-any-return]

    async def add_many(self, items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        return await self._send(_Calls.add_many(items))  # type: ignore[no-any-return]

    async def search(self, query: str, **kwargs: Any) -> dict[str, Any]:
        return await self._send(_Calls.search(query, **kwargs))  # type: ignore[no-any-return]

    async def get(self, memory_id: str) -> dict[str, Any] | None:
        try:
            return await self._send(_Calls.get(memory_id))  # type: ignore[no-any-return]
        except errors.NotFound:
            return None

    async def get_all(self, **kwargs: Any) -> dict[str, Any]:
        return await self._send(_Calls.get_all(**kwargs))  # type: ignore[no-any-return]

    async def update(
        self, memory_id: str, text: str | None = None, metadata: Any = None, **kw: Any
    ) -> dict[str, Any]:
        return await self._send(_Calls.update(memory_id, text, metadata, **kw))  # type: ignore[no-any-return]

    async def delete(self, memory_id: str) -> dict[str, Any]:
        return await self._send(_Calls.delete(memory_id))  # type: ignore[no-any-return]

    async def delete_all(self, **kwargs: Any) -> dict[str, Any]:
        return await self._send(_Calls.delete_all(**kwargs))  # type: ignore[no-any-return]

    async def history(self, memory_id: str) -> list[dict[str, Any]]:
        try:
            return await self._send(_Calls.history(memory_id))  # type: ignore[no-any-return]
        except errors.NotFound:
            return []

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
