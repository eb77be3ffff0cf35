"""Whose data key: a structured key-scope value with one injective string encoding.

A key scope is (namespace, kind, owner, generation). Its ``id`` is the canonical JSON array of
those four values (ASCII only, no spaces), used everywhere a key scope is named as text: the
``scope_id`` column of rows and history, ``keys.db``, the associated data of the key wrap and of
every sealed field, ``scope_versions`` and the in-memory caches. JSON string quoting makes the
encoding injective by construction, whatever an owner id contains (``#``, ``/``, ``:``, quotes):
two different tuples never give the same id. Nothing parses an id back; code that needs the
parts holds the ``KeyScope``.

The pre-v2 format joined strings (``"default/user:alice#g2"``) and was ambiguous: the user
``alice#g2`` and the second generation of ``alice`` had the same id. ``legacy_id`` computes that
old name from the parts, only to find keys and rows written by older versions (see reseal.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from memvault.security.crypto import canonical
from memvault.validation import Scope

__all__ = ["API_KEYS", "AUDIT", "WEBHOOKS", "KeyScope", "Kind"]

Kind = Literal["user", "agent", "run", "system"]
_KINDS = ("user", "agent", "run", "system")


@dataclass(frozen=True, slots=True)
class KeyScope:
    namespace: str
    kind: Kind
    owner: str
    generation: int = 1

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown key scope kind {self.kind!r}")
        if isinstance(self.generation, bool) or self.generation < 1:
            raise ValueError("a key generation starts at 1")

    @classmethod
    def of(cls, namespace: str, scope: Scope) -> KeyScope:
        """Generation 1 of the key that seals ``scope``'s rows (see ``Scope.key_owner``)."""
        kind, owner = scope.key_owner
        return cls(namespace, kind, owner)

    @property
    def id(self) -> str:
        return canonical([self.namespace, self.kind, self.owner, self.generation])

    def at(self, generation: int) -> KeyScope:
        return KeyScope(self.namespace, self.kind, self.owner, generation)

    @property
    def legacy_id(self) -> str:
        """The pre-v2 name of this key (ambiguous; only for finding keys of old stores)."""
        base = self.owner_legacy_base
        return base if self.generation == 1 else f"{base}#g{self.generation}"

    @property
    def owner_legacy_base(self) -> str:
        if self.kind == "system":
            return f"_system/{self.owner}"
        return f"{self.namespace}/{self.kind}:{self.owner}"


# The keys that pepper API key hashes and sign the audit chain. "_system" is not a namespace
# (namespaces start with a letter or digit), so no tenant's key can be one of these.
API_KEYS = KeyScope("_system", "system", "api-keys")
AUDIT = KeyScope("_system", "system", "audit")
# Seals the namespaces' webhook signing secrets.
WEBHOOKS = KeyScope("_system", "system", "webhooks")
