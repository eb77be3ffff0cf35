"""Who is calling and what they may do: one dependency for every protected route.

``Authorization: Bearer mvk_...`` (and mem0's ``Token mvk_...``) names an API key; the key names a
namespace, a role (``admin`` > ``write`` > ``read``) and optionally one user. Every memory route
receives a ``Principal`` holding a ``Memory`` view of that namespace only, so no route can reach
another namespace's rows; a user-bound key is further pinned to its user.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import Request

from memvault.errors import Forbidden, MemvaultError, Unauthorized
from memvault.memory import Memory
from memvault.security.apikeys import Role
from memvault.security.principal import Principal
from memvault.server.ratelimit import RateLimiter

__all__ = ["Principal", "require"]

_SCHEMES = ("bearer", "token")


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() in _SCHEMES and value.strip() else None


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def require(role: Role) -> Callable[[Request], Principal]:
    """A FastAPI dependency: authenticate, rate-limit, check the role."""

    def dependency(request: Request) -> Principal:
        state = request.app.state
        memory: Memory = state.memory
        limiter: RateLimiter = state.limiter
        if not state.settings.auth:
            return Principal(memory)
        address = _client_address(request)
        limiter.check_address(address)
        try:
            key = memory.api_keys.authenticate(_token(request))
        except Unauthorized:
            limiter.fail(address)
            raise
        request.state.key_id = key.id
        request.state.namespace = key.namespace
        request.state.bound_user = key.user_id
        limiter.spend(key.id)
        if not key.can(role):
            raise Forbidden(f"this key's role is {key.role}; this needs {role}")
        state.key_usage.record(key.id)
        return Principal.of_key(memory, key)

    return dependency


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
