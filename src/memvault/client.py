"""``Client`` and ``AsyncClient``: ``Memory``'s methods over HTTP, so moving from embedded to a
server is one line::

    m = Memory()                                          # embedded
    m = Client("http://127.0.0.1:8765", api_key="mvk_...")  # the same calls, remote

Every method the REST API offers has ``Memory``'s name and parameters: each is written once in
``memvault.remote`` (the calls it sends, how it reads the answers) and generated here for both
clients, which only differ in how they send a call. ``memvault.surface.LOCAL_ONLY`` lists the
methods the API does not offer, with the reason. Errors come back as the same ``MemvaultError``
subclasses the library raises, chosen by the error's stable ``code``.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, cast

import httpx

from memvault import remote
from memvault.errors import MemvaultError
from memvault.remote import Call, Plan, error_of, user_path

__all__ = ["AsyncClient", "Client"]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


def _like(plan: Callable[..., Any], owner: str, method: F) -> F:
    """Give ``method`` the plan's name, docs and signature (with ``self``, returning what the
    plan returns), so ``help()`` and ``inspect.signature`` show ``Memory``'s parameters."""
    signature = inspect.signature(plan, eval_str=True)
    returns = typing.get_args(signature.return_annotation)[2]
    if returns is type(None):  # annotations spell it None, as Memory's do
        returns = None
    self_ = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__name__ = plan.__name__
    method.__qualname__ = f"{owner}.{plan.__name__}"
    method.__doc__ = plan.__doc__
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_, *signature.parameters.values()], return_annotation=returns
    )
    return method


def _sync(plan: Callable[P, Plan[R]]) -> Callable[Concatenate[Client, P], R]:
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._run(plan(*args, **kwargs))

    return _like(plan, "Client", call)


def _async(plan: Callable[P, Plan[R]]) -> Callable[Concatenate[AsyncClient, P], Awaitable[R]]:
    async def call(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._run(plan(*args, **kwargs))

    return _like(plan, "AsyncClient", call)


class _Driver:
    """Runs a plan: sends each call it yields, and sends back the answer or throws the error."""

    def __init__(self, plan: Plan[R]) -> None:
        self.plan: Plan[Any] = plan
        self.done = False
        self.value: Any = None
        self._started = False

    def next_call(self, answer: Any, error: MemvaultError | None) -> Call | None:
        started, self._started = self._started, True
        try:
            return self.plan.send(answer) if error is None else self.plan.throw(error)
        except StopIteration as stop:
            self.done, self.value = True, stop.value
            return None
        except _SHAPE_ERRORS as failed:
            if not started:
                raise  # the plan's own checks of the arguments, before any answer
            # Reading an answer failed: whatever the server (or a proxy) sent, the caller
            # sees a memvault error, as from every other failure of a call.
            raise _not_ours(f"an answer of the wrong shape ({type(failed).__name__})") from None


# What reading a JSON value of an unexpected shape raises (a key, an index, a type, a value).
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)


def _not_ours(what: str) -> MemvaultError:
    return MemvaultError(f"the server sent {what}: not a memvault server's answer")


def _answer(response: httpx.Response) -> Any:
    """The JSON of a 2xx answer; an error answer as its memvault error; anything else (a
    redirect, which is never followed, so the API key goes nowhere else; a page that is not
    JSON) as a ``MemvaultError``."""
    if response.status_code >= 400:
        raise error_of(response)
    if not 200 <= response.status_code < 300:
        raise _not_ours(f"HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise _not_ours("a body that is not JSON") from None


def _line(line: str) -> dict[str, Any]:
    """One line of an export: a JSON object, else a ``MemvaultError``."""
    try:
        value = json.loads(line)
    except ValueError:
        raise _not_ours("an export line that is not JSON") from None
    if not isinstance(value, dict):
        raise _not_ours("an export line that is not an object")
    return value


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _json_lines(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line:
            yield _line(line)


# An idle pooled connection is dropped after this long, well before ``memvault serve`` closes
# it (``KEEP_ALIVE_SECONDS``, 5 s). httpx's own default is 5 s, the same as the server's: a
# request sent on a connection at the moment the server's timer closes it met a reset
# (``ReadError``) under load (bench/load.py, 64 clients: 9 of 3,219 requests).
KEEPALIVE_EXPIRY_SECONDS = 2.0
_LIMITS = httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS)


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
            base_url=base_url,
            headers=_headers(api_key),
            timeout=timeout,
            transport=transport,
            limits=_LIMITS,
        )

    def _send(self, call: Call) -> Any:
        response = self._http.request(call.method, call.path, json=call.json, params=call.params)
        return _answer(response)

    def _run(self, plan: Plan[R]) -> R:
        driver = _Driver(plan)
        answer: Any = None
        error: MemvaultError | None = None
        while (call := driver.next_call(answer, error)) is not None:
            try:
                answer, error = self._send(call), None
            except MemvaultError as failed:
                answer, error = None, failed
        return cast(R, driver.value)

    add = _sync(remote.add)
    add_many = _sync(remote.add_many)
    search = _sync(remote.search)
    get = _sync(remote.get)
    get_all = _sync(remote.get_all)
    get_page = _sync(remote.get_page)
    count = _sync(remote.count)
    history = _sync(remote.history)
    entities = _sync(remote.entities)
    related = _sync(remote.related)
    update = _sync(remote.update)
    delete = _sync(remote.delete)
    delete_all = _sync(remote.delete_all)
    erase_user = _sync(remote.erase_user)
    rotate_user_key = _sync(remote.rotate_user_key)
    namespace_settings = _sync(remote.namespace_settings)
    configure_namespace = _sync(remote.configure_namespace)
    namespaces = _sync(remote.namespaces)
    job = _sync(remote.job)
    jobs = _sync(remote.jobs)
    retry_job = _sync(remote.retry_job)
    configure_webhook = _sync(remote.configure_webhook)
    webhook = _sync(remote.webhook)
    remove_webhook = _sync(remote.remove_webhook)
    rotate_webhook_secret = _sync(remote.rotate_webhook_secret)
    webhook_deliveries = _sync(remote.webhook_deliveries)
    retry_webhook_delivery = _sync(remote.retry_webhook_delivery)
    ping = _sync(remote.ping)

    def export_user(self, user_id: str) -> Iterator[dict[str, Any]]:
        """``GET /v1/users/{user_id}/export/``, streamed: the call raises ``NotFound`` for an
        unknown user; the lines are then read as they arrive. Read them all (or ``close()`` the
        iterator) to free the connection."""
        request = self._http.build_request("GET", user_path(user_id, "export"))
        response = self._http.send(request, stream=True)
        if not 200 <= response.status_code < 300:
            try:
                response.read()
            finally:
                response.close()
            _answer(response)  # raises: the error answer's own error, or a MemvaultError

        def lines() -> Iterator[dict[str, Any]]:
            try:
                yield from _json_lines(response.iter_lines())
            finally:
                response.close()

        return lines()

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
            base_url=base_url,
            headers=_headers(api_key),
            timeout=timeout,
            transport=transport,
            limits=_LIMITS,
        )

    async def _send(self, call: Call) -> Any:
        response = await self._http.request(
            call.method, call.path, json=call.json, params=call.params
        )
        return _answer(response)

    async def _run(self, plan: Plan[R]) -> R:
        driver = _Driver(plan)
        answer: Any = None
        error: MemvaultError | None = None
        while (call := driver.next_call(answer, error)) is not None:
            try:
                answer, error = await self._send(call), None
            except MemvaultError as failed:
                answer, error = None, failed
        return cast(R, driver.value)

    add = _async(remote.add)
    add_many = _async(remote.add_many)
    search = _async(remote.search)
    get = _async(remote.get)
    get_all = _async(remote.get_all)
    get_page = _async(remote.get_page)
    count = _async(remote.count)
    history = _async(remote.history)
    entities = _async(remote.entities)
    related = _async(remote.related)
    update = _async(remote.update)
    delete = _async(remote.delete)
    delete_all = _async(remote.delete_all)
    erase_user = _async(remote.erase_user)
    rotate_user_key = _async(remote.rotate_user_key)
    namespace_settings = _async(remote.namespace_settings)
    configure_namespace = _async(remote.configure_namespace)
    namespaces = _async(remote.namespaces)
    job = _async(remote.job)
    jobs = _async(remote.jobs)
    retry_job = _async(remote.retry_job)
    configure_webhook = _async(remote.configure_webhook)
    webhook = _async(remote.webhook)
    remove_webhook = _async(remote.remove_webhook)
    rotate_webhook_secret = _async(remote.rotate_webhook_secret)
    webhook_deliveries = _async(remote.webhook_deliveries)
    retry_webhook_delivery = _async(remote.retry_webhook_delivery)
    ping = _async(remote.ping)

    async def export_user(self, user_id: str) -> AsyncIterator[dict[str, Any]]:
        """``GET /v1/users/{user_id}/export/``, streamed: the ``await`` raises ``NotFound`` for
        an unknown user; then ``async for line in ...`` reads the lines as they arrive. Read
        them all (or ``aclose()`` the iterator) to free the connection."""
        request = self._http.build_request("GET", user_path(user_id, "export"))
        response = await self._http.send(request, stream=True)
        if not 200 <= response.status_code < 300:
            try:
                await response.aread()
            finally:
                await response.aclose()
            _answer(response)  # raises: the error answer's own error, or a MemvaultError

        async def lines() -> AsyncIterator[dict[str, Any]]:
            try:
                async for line in response.aiter_lines():
                    if line:
                        yield _line(line)
            finally:
                await response.aclose()

        return lines()

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
