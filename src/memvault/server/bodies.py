"""Input checked once, before any route sees it: bounded nesting, valid Unicode.

A body nested ~1,000 deep made Python's parser (or, a little shallower, every recursive walk
after it) raise ``RecursionError``: a 500. A ``"\\ud800"`` escape parses into a string that
cannot be encoded, which failed deep inside whichever code first wrote it out. Both are
refused here with 422 ``invalid_input`` for every route, whatever field they hide in. A URL
whose percent-escapes are not UTF-8 is refused too (the server would otherwise read each bad
sequence as U+FFFD, so ``%FF`` and ``%FE`` would name the same user).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Request, Response
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


class CheckedRoute(APIRoute):
    """Parses a JSON body first (FastAPI then reuses the parsed value) and checks it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def checked(request: Request) -> Response:
            if _is_json(request) and await request.body():
                try:
                    parsed = await request.json()
                except RecursionError:
                    raise InvalidInput(
                        f"the body is nested too deeply (the limit is {MAX_JSON_DEPTH})"
                    ) from None
                except ValueError:
                    parsed = None  # not JSON: FastAPI answers that, as for any route
                check_json(parsed)
            return await handler(request)

        return checked
