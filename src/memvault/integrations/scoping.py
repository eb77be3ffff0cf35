"""How a framework's user/thread/session maps to a memvault scope, the same way in every adapter.

    >>> binding = ScopeBinding(user_id="alice", rule=lambda session: {"run_id": session})
    >>> binding.scope_of("s1")
    Scope(user_id='alice', agent_id=None, run_id='s1')

The ids an adapter is bound to (``user_id=``, ``agent_id=``, ``run_id=``) always apply; ``rule``,
a function of the framework's key (a namespace, a session id) returning some of ``user_id``,
``agent_id``, ``run_id``, may add ids (a narrower scope) but never change a bound one
(``Forbidden``). A key the rule cannot map (it raises ``IndexError``/``KeyError``), or no key
where only a rule would name the scope, is refused (``MissingScope``). There is no default guess:
a binding with neither bound ids nor a rule is refused when made (``InvalidConfig``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from memvault.errors import Forbidden, InvalidConfig, MissingScope
from memvault.validation import Scope

__all__ = ["SCOPE_FIELDS", "ScopeBinding", "equals"]

SCOPE_FIELDS = ("user_id", "agent_id", "run_id")

K = TypeVar("K")


def equals(field: str, value: Any) -> dict[str, Any]:
    """A filter condition: metadata ``field`` equals ``value`` as a value. An ``in`` of one,
    because in memvault's filter grammar an ``eq`` of ``"*"`` means "the field is present": a
    framework's namespace label, key, session id or filter value of ``"*"`` would otherwise
    become a wildcard over every other one in the bound scope."""
    return {field: {"in": [value]}}


class ScopeBinding(Generic[K]):
    """Bound ids plus an optional rule from a framework key to more ids; never wider."""

    def __init__(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        rule: Callable[[K], Mapping[str, str]] | None = None,
        owner: str = "the adapter",
    ) -> None:
        bound = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        self.bound = {name: value for name, value in bound.items() if value is not None}
        if self.bound:
            Scope.of(user_id, agent_id, run_id)  # the ids are checked now, not at first use
        elif rule is None:
            raise InvalidConfig(
                f"{owner} needs a scope: bind it (user_id=, agent_id=, run_id=) and/or map"
                " the framework's key to one (scope=...)"
            )
        self.rule = rule
        self.owner = owner

    @property
    def bound_scope(self) -> Scope | None:
        """The scope of the bound ids alone (None when only a rule names the scope)."""
        if not self.bound:
            return None
        get = self.bound.get
        return Scope.of(get("user_id"), get("agent_id"), get("run_id"))

    def scope_of(self, key: K | None) -> Scope:
        """The bound ids plus what the rule maps ``key`` to (``key`` None: the bound ids)."""
        mapped: dict[str, str] = {}
        if self.rule is not None and key is not None:
            try:
                mapped = dict(self.rule(key))
            except (IndexError, KeyError):
                raise MissingScope(f"{self.owner}: the key maps to no memvault scope") from None
        unknown = sorted(set(mapped) - set(SCOPE_FIELDS))
        if unknown:
            raise InvalidConfig(f"a scope rule may return only {SCOPE_FIELDS}, not {unknown}")
        for name, value in mapped.items():
            if name in self.bound and self.bound[name] != value:
                raise Forbidden(f"{self.owner}: the key maps to another {name} than it is bound to")
        merged = {**mapped, **self.bound}
        if not merged:
            raise MissingScope(f"{self.owner}: nothing names a memvault scope for this call")
        return Scope.of(merged.get("user_id"), merged.get("agent_id"), merged.get("run_id"))
