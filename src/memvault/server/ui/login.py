"""Sign in with an API key, sign out.

Signing in passes the key through the REST API's ``Gate`` (the same rate limits, lockout and
audit of failures) and asks the policy whether it may read memories; only then is a session
sealed into the cookie. The form carries a token bound to a short-lived pre-session cookie, so
another site cannot sign a browser in under a key of its choosing (login CSRF).
"""

from __future__ import annotations

import base64
import os
from urllib.parse import urlsplit

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from memvault.errors import Forbidden, MemvaultError, Unauthorized
from memvault.security.policy import Action, authorize
from memvault.security.principal import Principal
from memvault.server.auth import client_address
from memvault.server.ui.base import (
    UiRoute,
    clear_session_cookie,
    form_of,
    over_tls,
    page,
    sessions_of,
    set_session_cookie,
)
from memvault.server.ui.session import LOGIN_COOKIE, Session

__all__ = ["router"]

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a dashboard path: never another site (an open redirect)."""
    if not target or not target.startswith("/ui/") or target.startswith("/ui/login"):
        return "/ui/memories"
    parts = urlsplit(target)
    odd = any(part in target for part in ("\\", "//", "/..", "%2e", "%2E"))
    return "/ui/memories" if parts.scheme or parts.netloc or odd else target


def _login_page(
    request: Request, next_path: str, message: str | None = None, status_code: int = 200
) -> Response:
    sessions = sessions_of(request)
    nonce = request.cookies.get(LOGIN_COOKIE) or base64.urlsafe_b64encode(os.urandom(18)).decode()
    response = page(
        request,
        "login.html",
        None,
        status_code=status_code,
        login_token=sessions.csrf_token(f"login:{nonce}"),
        next_path=next_path,
        message=message,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path="/ui/login",
        httponly=True,
        secure=over_tls(request),
        samesite="strict",
    )
    return response


@router.get("/login", summary="Dashboard sign-in page")
def login_form(request: Request, next: str | None = None) -> Response:
    return _login_page(request, _safe_next(next))


@router.post("/login", summary="Sign in to the dashboard")
async def login(request: Request) -> Response:
    sessions = sessions_of(request)
    form = await form_of(request)
    next_path = _safe_next(str(form.get("next") or ""))
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not sessions.csrf_ok(f"login:{nonce}", form.get("login_token")):
        return _login_page(request, next_path, "The sign-in form expired: try again.", 403)
    key = str(form.get("api_key") or "").strip()
    state = request.app.state

    def check() -> None:
        if not state.settings.auth:
            return
        found = state.gate.authenticate(f"Bearer {key}", client_address(request), "POST /ui/login")
        authorize(Principal.of_key(state.memory, found), Action.MEMORIES_READ)

    try:
        await anyio.to_thread.run_sync(check)
    except Unauthorized:
        return _login_page(request, next_path, "That API key is not valid.", 401)
    except Forbidden:
        return _login_page(request, next_path, "That API key may not read memories.", 403)
    except MemvaultError as exc:
        return _login_page(request, next_path, exc.message, exc.http_status)
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(request, response, sessions.start(key))
    response.delete_cookie(
        LOGIN_COOKIE, path="/ui/login", httponly=True, secure=over_tls(request), samesite="strict"
    )
    return response


@router.post("/logout", summary="Sign out of the dashboard")
async def logout(request: Request) -> Response:
    sessions = sessions_of(request)
    session: Session | None = request.state.ui_session
    if session is not None:
        form = await form_of(request)
        if not sessions.csrf_ok(session.sid, form.get("csrf")):
            raise Forbidden("the form's CSRF token is missing or wrong")
        sessions.end(session)
    response = RedirectResponse("/ui/login", status_code=303)
    clear_session_cookie(request, response)
    return response
