"""What every dashboard route shares: the session, the one authorization path, CSRF, headers.

``ui_require(action)`` is ``auth.Require`` with one difference: the key comes from the sealed
session cookie instead of the ``Authorization`` header. The gate, the rate limits, the audit of
failures and ``security.policy.authorize`` are the REST API's own, so the dashboard cannot let a
key do what the API would refuse it. ``UiRoute`` runs, in this order: open the session, pass the
gate (authenticate, authorize), check the Origin and the CSRF token of a state-changing request,
then the page; a missing or dead session goes to the sign-in page, other errors to an error page.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import anyio.to_thread
import jinja2
from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.datastructures import FormData

from memvault.errors import Forbidden, MemvaultError, Unauthorized
from memvault.security.policy import Action, permits
from memvault.security.principal import Principal
from memvault.server.auth import Require
from memvault.server.bodies import _gates
from memvault.server.ui.session import COOKIE, Session, Sessions

__all__ = [
    "CSP",
    "SAFE_METHODS",
    "UiRequire",
    "UiRoute",
    "page",
    "set_session_cookie",
]

HERE = Path(__file__).parent
SAFE_METHODS = frozenset({"GET", "HEAD"})
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_templates.filters["q"] = lambda value: quote(str(value), safe="")


class UiRequire(Require):
    """``Require`` whose key is the session's (set on the request by ``UiRoute``)."""

    def credential(self, request: Request) -> str | None:
        session: Session | None = getattr(request.state, "ui_session", None)
        return f"Bearer {session.key}" if session is not None and session.key else None


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.ui_sessions
    return sessions


def over_tls(request: Request) -> bool:
    """Whether the browser reached us over HTTPS, for the cookies' ``Secure`` flag only.

    ``X-Forwarded-Proto: https`` counts even from a proxy not listed in ``forwarded_allow_ips``:
    believing it can only make a cookie stricter (a forger gets a cookie its own plain-HTTP
    browser drops), while ignoring it would send the session over plain HTTP to this host name
    whenever a TLS proxy was left out of that list."""
    if request.url.scheme == "https":
        return True
    forwarded = request.headers.get("x-forwarded-proto", "")
    return forwarded.split(",")[0].strip().lower() == "https"


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    sessions = sessions_of(request)
    response.set_cookie(
        COOKIE,
        sessions.seal(session),
        max_age=int(sessions.session_seconds),
        path="/ui",
        httponly=True,
        secure=over_tls(request),
        samesite="strict",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE, path="/ui", httponly=True, secure=over_tls(request), samesite="strict"
    )


def same_origin(request: Request) -> bool:
    """A browser names the page that sent a form; another site's page is refused."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        return True  # not a browser, or one that hides it: the CSRF token still decides
    if origin == "null":
        return False
    sent = urlsplit(origin)
    # The host and port, not the scheme: behind a TLS proxy whose X-Forwarded-Proto is not
    # trusted, the page is https to the browser and http here.
    return sent.scheme in ("http", "https") and sent.netloc == request.url.netloc


async def form_of(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=64)


def _context(request: Request, principal: Principal | None) -> dict[str, Any]:
    session: Session | None = getattr(request.state, "ui_session", None)
    sessions = sessions_of(request)
    can = {}
    if principal is not None:
        can = {action.name.lower(): permits(principal, action) for action in Action}
    return {
        "request_path": request.url.path,
        "csrf": sessions.csrf_token(session.sid) if session is not None else "",
        "principal": principal,
        "can": can,
        "auth": request.app.state.settings.auth,
    }


def page(
    request: Request,
    template: str,
    principal: Principal | None,
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    """Render a template with what every page needs (who is signed in, what they may do)."""
    html = _templates.get_template(template).render(**_context(request, principal), **values)
    return HTMLResponse(html, status_code=status_code)


def _error_page(request: Request, exc: MemvaultError) -> Response:
    principal = None
    principals = getattr(request.state, "principals", None)
    if principals:
        principal = next(iter(principals.values()))
    return page(
        request,
        "error.html",
        principal,
        status_code=exc.http_status,
        code=exc.code,
        message=exc.message,
    )


def _to_login(request: Request) -> Response:
    target = request.url.path if request.method in SAFE_METHODS else "/ui/memories"
    response = RedirectResponse(f"/ui/login?next={quote(target, safe='/')}", status_code=303)
    clear_session_cookie(request, response)
    return response


class UiRoute(APIRoute):
    """A dashboard route: session, gate, CSRF, then the page; HTML errors; security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        gates = _gates(self.dependant)

        async def run(request: Request) -> Response:
            sessions = sessions_of(request)
            session = sessions.open(request.cookies.get(COOKIE))
            request.state.ui_session = session
            try:
                if request.method not in SAFE_METHODS and not same_origin(request):
                    raise Forbidden("this form was sent from another site")
                if gates:
                    if session is None:
                        raise Unauthorized("sign in first")
                    for gate in gates:
                        await anyio.to_thread.run_sync(gate, request)
                    if request.method not in SAFE_METHODS:
                        form = await form_of(request)
                        if not sessions.csrf_ok(session.sid, form.get("csrf")):
                            raise Forbidden("the form's CSRF token is missing or wrong")
                response = await handler(request)
            except Unauthorized:
                response = _to_login(request)
            except MemvaultError as exc:
                response = _error_page(request, exc)
            fresh = sessions.touched(session) if gates and session is not None else None
            if fresh is not None and COOKIE not in response.headers.get("set-cookie", ""):
                set_session_cookie(request, response, fresh)
            response.headers["Content-Security-Policy"] = CSP
            response.headers["Cache-Control"] = "no-store"
            # Forms then carry their real Origin (under no-referrer, Chromium sends "null").
            response.headers["Referrer-Policy"] = "same-origin"
            return response

        return run
