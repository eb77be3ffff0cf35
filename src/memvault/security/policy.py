"""Authorization in one place: every REST route and every MCP tool names an ``Action`` here.

A rule says the least role an unbound key needs, the least role a user-bound key needs (``None``:
a bound key may never do it), and whether only operators (unbound admins of the ``default``
namespace) may. A user-bound key acting on a named user is pinned to its own user. Front ends
call ``authorize`` and nothing else decides who may do what, so a new route cannot forget a check
another route has (a bound admin key once listed and revoked every key of its namespace).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from memvault.errors import Forbidden
from memvault.security.apikeys import ROLES, Role
from memvault.security.principal import Principal

__all__ = ["OPERATOR_NAMESPACE", "RULES", "Action", "Rule", "authorize", "permits"]

OPERATOR_NAMESPACE = "default"


class Action(StrEnum):
    MEMORIES_READ = "memories.read"
    MEMORIES_WRITE = "memories.write"
    JOBS_READ = "jobs.read"
    JOBS_WRITE = "jobs.write"
    USERS_EXPORT = "users.export"
    USERS_ERASE = "users.erase"
    USERS_ROTATE_KEY = "users.rotate_key"
    KEYS_LIST = "keys.list"
    KEYS_MANAGE = "keys.manage"
    NAMESPACES_LIST = "namespaces.list"
    NAMESPACES_MANAGE = "namespaces.manage"
    NAMESPACE_SETTINGS = "namespace.settings"
    AUDIT_READ = "audit.read"
    METRICS_READ = "metrics.read"


@dataclass(frozen=True, slots=True)
class Rule:
    unbound: Role  # the least role of a key not bound to a user
    bound: Role | None  # the least role of a user-bound key (its own user only); None: never
    operator: bool = False  # only unbound admins of the operator namespace


RULES: dict[Action, Rule] = {
    Action.MEMORIES_READ: Rule("read", "read"),
    Action.MEMORIES_WRITE: Rule("write", "write"),
    # The queue's jobs: a user-bound key sees and retries only its user's (the routes check).
    Action.JOBS_READ: Rule("read", "read"),
    Action.JOBS_WRITE: Rule("write", "write"),
    # A user may take out and erase their own data with their own key; unbound, only admins.
    Action.USERS_EXPORT: Rule("admin", "read"),
    Action.USERS_ERASE: Rule("admin", "write"),
    Action.USERS_ROTATE_KEY: Rule("admin", None),
    # Everything below spans the namespace (or the server), so a user-bound key never may.
    Action.KEYS_LIST: Rule("admin", None),
    Action.KEYS_MANAGE: Rule("admin", None),
    Action.NAMESPACES_LIST: Rule("admin", None),
    Action.NAMESPACES_MANAGE: Rule("admin", None, operator=True),
    Action.NAMESPACE_SETTINGS: Rule("admin", None),
    Action.AUDIT_READ: Rule("admin", None),
    Action.METRICS_READ: Rule("admin", None, operator=True),  # counts of every namespace
}


def _at_least(role: str, needed: Role) -> bool:
    return role in ROLES and ROLES.index(role) <= ROLES.index(needed)


def authorize(principal: Principal, action: Action, user_id: str | None = None) -> None:
    """Raise ``Forbidden`` unless ``principal`` may do ``action`` (on ``user_id``, if named)."""
    rule = RULES[action]
    bound = principal.bound_user is not None
    needed = rule.bound if bound else rule.unbound
    if needed is None:
        raise Forbidden(f"a user-bound key may not do {action}")
    if not _at_least(principal.role, needed):
        raise Forbidden(f"this key's role is {principal.role}; {action} needs {needed}")
    if rule.operator and principal.namespace != OPERATOR_NAMESPACE:
        raise Forbidden(f"{action} needs an admin key of the {OPERATOR_NAMESPACE} namespace")
    if bound and user_id is not None and user_id != principal.bound_user:
        raise Forbidden("this key is bound to another user")


def permits(principal: Principal, action: Action) -> bool:
    try:
        authorize(principal, action)
    except Forbidden:
        return False
    return True
