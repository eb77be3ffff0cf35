"""Who is acting, for the front ends: a ``Memory`` view of one namespace, maybe pinned to a user.

The REST server builds one from an API key, the MCP stdio server from ``--user``. Every front end
goes through these checks, so a user-bound caller can never name, filter for, or open another
user's memories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memvault.errors import Forbidden, NotFound
from memvault.memory import Memory
from memvault.security.apikeys import ApiKey
from memvault.validation import check_id

__all__ = ["Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    memory: Memory
    key: ApiKey | None = None  # None for local front ends (stdio MCP, auth off on loopback)
    bound_user: str | None = None

    @classmethod
    def of_key(cls, memory: Memory, key: ApiKey) -> Principal:
        return cls(memory.namespaced(key.namespace), key, key.user_id)

    @property
    def namespace(self) -> str:
        return self.memory.namespace

    @property
    def role(self) -> str:
        return self.key.role if self.key is not None else "admin"

    def user_scope(self, user_id: str | None) -> str | None:
        """The user_id a call may use: a bound caller fills in, or refuses, any other user."""
        if self.bound_user is None:
            return user_id
        # Compared in the stored form (NFC): another spelling of the same id is the same user.
        if user_id is not None and check_id("user_id", user_id) != self.bound_user:
            raise Forbidden("this key is bound to another user")
        return self.bound_user

    def pin_filters(self, filters: dict[str, Any] | None) -> dict[str, Any] | None:
        """A bound caller's user_id joins the filters (mem0 puts the scope in filters)."""
        if self.bound_user is None:
            return filters
        given = (filters or {}).get("user_id")
        if given is not None and (
            not isinstance(given, str) or check_id("user_id", given) != self.bound_user
        ):
            raise Forbidden("this key is bound to another user")
        return {**(filters or {}), "user_id": self.bound_user}

    def owned(self, memory: dict[str, Any] | None, memory_id: str) -> dict[str, Any]:
        """The memory if this principal may see it; another user's memory looks absent."""
        if memory is None or (
            self.bound_user is not None and memory.get("user_id") != self.bound_user
        ):
            raise NotFound(f"no memory {memory_id} in this namespace")
        return memory

    def history(self, memory_id: str) -> list[dict[str, Any]]:
        events = self.memory.history(memory_id)
        if not events or (self.bound_user is not None and events[0]["user_id"] != self.bound_user):
            raise NotFound(f"no memory {memory_id} in this namespace")
        return events
