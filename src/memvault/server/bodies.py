"""Input checked once, before any route sees it: bounded nesting, valid Unicode.

A body nested ~1,000 deep made Python's parser (or, a little shallower, every recursive walk
after it) raise ``RecursionError``: a 500. A ``"\\ud800"`` escape parses into a string that
cannot be encoded, which failed deep inside whichever code first wrote it out. Both are
refused here with 422 ``invalid_input`` for every route, whatever field they hide in. A URL
whose percent-escapes are not UTF-8 is refused too (the server would otherwise read each bad
sequence as U+FFFD, so ``%FF`` and ``%FE`` would name the same user).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import unquote_to_bytes

import anyio.to_thread
from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.types import Scope

from memvault.errors import InvalidInput

__all__ = ["MAX_JSON_DEPTH", "CheckedRoute", "check_json", "url_is_utf8"]

MAX_JSON_DEPTH = 64


def _valid_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_json(value: Any) -> None:
    """Walk without recursion: no deeper than ``MAX_JSON_DEPTH``, no lone surrogates."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not _valid_text(item):
                raise InvalidInput("the body holds a string that is not valid Unicode")
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise InvalidInput(f"the body is nested too deeply (the limit is {MAX_JSON_DEPTH})")
        if isinstance(item, dict):
            stack.extend((key, depth) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        else:
            stack.extend((child, depth + 1) for child in item)


def url_is_utf8(scope: Scope) -> bool:
    raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogatepass")
    for part in (raw, scope.get("query_string") or b""):
        try:
            unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def _is_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _parse(body: bytes) -> Any:
    """``json.loads`` and ``check_json``: in a worker thread for bodies over
    ``INLINE_PARSE_BYTES``, so a large body never runs on the event loop."""
    try:
        parsed = json.loads(body)
    except RecursionError:
        raise InvalidInput(
            f"the body is nested too deeply (the limit is {MAX_JSON_DEPTH})"
        ) from None
    except json.JSONDecodeError as exc:
        # What FastAPI answers for a body that is not JSON, without parsing it a second time.
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ]
        ) from None
    except ValueError:
        return _NOT_JSON  # not text at all: FastAPI answers that (it fails at decoding, fast)
    check_json(parsed)
    return parsed


_NOT_JSON = object()
# Bodies up to this size are parsed on the event loop (tens of microseconds at most); larger ones
# in a worker thread, so no body can stall the loop for long.
INLINE_PARSE_BYTES = 16 * 1024


def _gates(dependant: Dependant) -> list[Callable[[Request], Any]]:
    """The ``before_body`` step of every dependency of a route (``auth.Require``'s gate)."""
    found: list[Callable[[Request], Any]] = []
    stack = [dependant]
    while stack:
        current = stack.pop()
        gate = getattr(current.call, "before_body", None)
        if callable(gate):
            found.append(gate)
        stack.extend(current.dependencies)
    return found


class CheckedRoute(APIRoute):
    """Authenticates first, then reads and checks the JSON body, then runs FastAPI's handler.

    The order is the point: a caller without a valid key (or from a locked-out address) is
    refused, and counted as a failed login, before a byte of its body is parsed. Only then is
    the body parsed and walked (in a worker thread when it is over ``INLINE_PARSE_BYTES``, so
    a large one cannot stall the event loop, ``/healthz`` included); FastAPI then reuses the
    parsed value (Starlette caches it)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        gates = _gates(self.dependant)
        has_body = self.body_field is not None
        if has_body and not gates:  # no route may take a body from a caller without a key
            raise RuntimeError(f"{self.path} takes a body but declares no require(action)")

        async def checked(request: Request) -> Response:
            for gate in gates:
                await anyio.to_thread.run_sync(gate, request)
            if has_body and _is_json(request):
                body = await request.body()
                if not body:
                    parsed = _NOT_JSON
                elif len(body) <= INLINE_PARSE_BYTES:
                    parsed = _parse(body)  # microseconds: cheaper than a thread hop
                else:
                    parsed = await anyio.to_thread.run_sync(_parse, body)
                if parsed is not _NOT_JSON:
                    request._json = parsed
            return await handler(request)

        return checked
