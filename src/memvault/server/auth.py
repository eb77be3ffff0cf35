"""Who is calling and what they may do: one gate for REST and ``/mcp``, one dependency per route.

``Authorization: Bearer mvk_...`` (and mem0's ``Token mvk_...``) names an API key; the key names a
namespace, a role (``admin`` > ``write`` > ``read``) and optionally one user. ``Gate`` checks it
for both front ends with one rate limiter (so neither doubles the other's budget) and audits
failed attempts. ``require(action)`` is the only dependency protected routes use: it passes the
gate and asks ``security.policy.authorize`` whether the key may do the route's ``Action``.
"""

from __future__ import annotations

import re
import time

import anyio.to_thread
from fastapi import Request

from memvault.errors import MemvaultError, Unauthorized
from memvault.memory import Memory
from memvault.security.apikeys import ApiKey
from memvault.security.audit import AuditEntry
from memvault.security.policy import Action, authorize
from memvault.security.principal import Principal
from memvault.server.middleware import route_template
from memvault.server.ratelimit import RateLimiter

__all__ = ["Gate", "KeyUsage", "Principal", "Require", "bearer", "require"]

_SCHEMES = ("bearer", "token")
_KEY_ID = re.compile(r"^mvk_([a-z2-9]{12})_")


def bearer(header: str | None) -> str | None:
    scheme, _, value = (header or "").partition(" ")
    return value.strip() if scheme.lower() in _SCHEMES and value.strip() else None


class Gate:
    """Authenticate a request's key, spending the shared budgets; audit what fails."""

    def __init__(self, memory: Memory, limiter: RateLimiter) -> None:
        self._memory = memory
        self.limiter = limiter

    def authenticate(self, authorization: str | None, address: str, action: str) -> ApiKey:
        self.limiter.check_address(address)
        token = bearer(authorization)
        try:
            key = self._memory.api_keys.authenticate(token)
        except Unauthorized:
            outcome = "lockout" if self.limiter.fail(address) else "unauthorized"
            # A flood of failures must not grow the log without bound: an address fails a few
            # times, then is locked out (that is written) and refused before reaching here; over
            # all addresses, each kind of entry has a global budget.
            if self.limiter.may_audit(outcome):
                self._audit_failure(token, address, action, outcome)
            raise
        self.limiter.spend(key.id, key.namespace)
        return key

    def _audit_failure(self, token: str | None, address: str, action: str, outcome: str) -> None:
        # The presented secret is never recorded; the id part only when it is well-formed.
        match = _KEY_ID.match(token or "")
        self._memory.audit.record(
            AuditEntry(
                action=action,
                outcome=outcome,
                key_id=match.group(1) if match else None,
                source=address,
            )
        )


def client_address(request: Request) -> str:
    """Set by the ``Observability`` middleware (see ``server.network.Proxies``)."""
    address = getattr(request.state, "client_address", None)
    if address is None:
        address = request.client.host if request.client else "unknown"
    return str(address)


class Require:
    """A FastAPI dependency: pass the gate, then the policy for ``action``.

    ``CheckedRoute`` calls ``before_body`` before it reads the body (in a worker thread); the
    dependency FastAPI runs later returns the same principal, so the budget is spent once."""

    def __init__(self, action: Action) -> None:
        self.action = action

    def before_body(self, request: Request) -> Principal:
        principals: dict[Action, Principal] | None = getattr(request.state, "principals", None)
        if principals is None:
            principals = request.state.principals = {}
        if self.action not in principals:
            principals[self.action] = self._check(request)
        return principals[self.action]

    async def __call__(self, request: Request) -> Principal:
        # ``CheckedRoute`` has usually run the gate already: then no thread hop is needed.
        principals: dict[Action, Principal] | None = getattr(request.state, "principals", None)
        if principals is not None and self.action in principals:
            return principals[self.action]
        return await anyio.to_thread.run_sync(self.before_body, request)

    def credential(self, request: Request) -> str | None:
        """Where the key comes from: the ``Authorization`` header (the dashboard's subclass
        takes it from its sealed session cookie; everything after this is the same)."""
        return request.headers.get("authorization")

    def _check(self, request: Request) -> Principal:
        state = request.app.state
        memory: Memory = state.memory
        if not state.settings.auth:
            principal = Principal(memory)
            authorize(principal, self.action, request.path_params.get("user_id"))
            return principal
        key = state.gate.authenticate(
            self.credential(request),
            client_address(request),
            f"{request.method} {route_template(request.scope)}",
        )
        request.state.key_id = key.id
        request.state.namespace = key.namespace
        request.state.bound_user = key.user_id
        principal = Principal.of_key(memory, key)
        authorize(principal, self.action, request.path_params.get("user_id"))
        state.key_usage.record(key.id)
        return principal


def require(action: Action) -> Require:
    return Require(action)


class KeyUsage:
    """Writes ``last_used_at`` at most once a minute per key, off the request's path."""

    def __init__(self, memory: Memory) -> None:
        self._memory = memory
        self._seen: dict[str, float] = {}

    def record(self, key_id: str) -> None:
        now = time.monotonic()
        if now - self._seen.get(key_id, -1e9) < 60:
            return
        self._seen[key_id] = now
        try:
            self._memory.api_keys.touch(key_id)
        except MemvaultError:
            self._seen.pop(key_id, None)
