"""Scenarios for the generated hostile-input tests: canary memories in several scopes.

Every canary's text and metadata hold a random marker ``CANARY-<namespace>-<scope>-<hex>``; a
test proves isolation by finding no marker (and no id) of a scope its caller may not see in any
answer. ``scenario`` is one real server per test module (uvicorn in a thread, as
tests/server/conftest.py starts it, with the hash embedder) shared by the module's many
parametrized cases; ``library`` is a ``Memory`` over the test's private home.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from memvault import Memory
from tests.server.conftest import RunningServer, launch_server, server, start_server

__all__ = [
    "Caller",
    "Canary",
    "Library",
    "Scenario",
    "library",
    "scenario",
    "seed_canaries",
    "server",
    "snapshot",
    "start_server",
]

SHARED_WORDS = "likes green tea and coffee in berlin"


@dataclass(frozen=True)
class Canary:
    namespace: str
    scope: dict[str, str]
    marker: str
    id: str

    @property
    def name(self) -> str:
        return f"{self.namespace}/" + ",".join(f"{k}={v}" for k, v in self.scope.items())


def seed_canaries(memory: Memory) -> list[Canary]:
    """Canaries in default (alice, bob, an agent-only and a run-only scope) and in ``other``
    (alice again, and carol); plus one plain memory per user for updates."""
    scopes = [
        ("default", {"user_id": "alice"}),
        ("default", {"user_id": "bob"}),
        ("default", {"agent_id": "agent-only"}),
        ("default", {"run_id": "run-only"}),
        ("default", {"user_id": "alice", "agent_id": "agent-only"}),
        ("other", {"user_id": "alice"}),
        ("other", {"user_id": "carol"}),
        ("other", {"agent_id": "agent-only"}),
    ]
    canaries = []
    for namespace, scope in scopes:
        tag = "-".join(scope.values())
        marker = f"CANARY-{namespace}-{tag}-{uuid.uuid4().hex}"
        view = memory.namespaced(namespace)
        added = view.add(
            f"{marker} {SHARED_WORDS}",
            metadata={
                "marker": marker,
                "topic": "shared",
                "n": 7,
                "flag": True,
                "tags": ["a", "b", marker],
                "x'": "y",
                "a'b": "shared",
                "nested": {"marker": marker},
            },
            **scope,
        )
        canaries.append(Canary(namespace, scope, marker, added["results"][0]["id"]))
    return canaries


@dataclass(frozen=True)
class Caller:
    """An API key and what it may see."""

    name: str
    key: str
    namespace: str
    role: str
    user_id: str | None

    def sees(self, canary: Canary) -> bool:
        if canary.namespace != self.namespace:
            return False
        return self.user_id is None or canary.scope.get("user_id") == self.user_id


@dataclass
class Scenario:
    server: RunningServer
    canaries: list[Canary]
    callers: dict[str, Caller]
    scratch: dict[str, str] = field(default_factory=dict)  # caller name -> a memory id it owns

    def forbidden(self, caller: Caller) -> list[str]:
        """Markers and ids of every canary the caller must never see."""
        hidden = [c for c in self.canaries if not caller.sees(c)]
        return [c.marker for c in hidden] + [c.id for c in hidden]

    def foreign_intact(self) -> list[str]:
        """Canaries that are gone (a hostile call must not delete another scope's rows)."""
        gone = []
        for canary in self.canaries:
            if canary.scope.get("user_id") == "alice" and canary.namespace == "default":
                continue  # alice's own keys may legitimately delete alice's rows
            if self.server.memory.namespaced(canary.namespace).get(canary.id) is None:
                gone.append(canary.name)
        return gone


CALLERS = {
    # name: (namespace, role, bound user)
    "alice_read": ("default", "read", "alice"),
    "alice_write": ("default", "write", "alice"),
    "other_write": ("other", "write", None),
    "other_admin": ("other", "admin", None),
}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """A real server for the whole module, with canaries, keys and a scratch memory per key."""
    home: Path = tmp_path_factory.mktemp("fuzz-home")
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith("MEMVAULT_"):
                env.delenv(name)
        running, stop = launch_server(
            home, rate_limit="100000000/minute", auth_failure_limit="100000000/minute"
        )
        memory = running.memory
        canaries = seed_canaries(memory)
        callers = {
            name: Caller(name, running.key(role, user_id=user, namespace=ns), ns, role, user)
            for name, (ns, role, user) in CALLERS.items()
        }
        scratch = {}
        for name, caller in callers.items():
            added = memory.namespaced(caller.namespace).add(
                f"scratch memory of {name}", user_id=caller.user_id or "scratch"
            )
            scratch[name] = added["results"][0]["id"]
        try:
            yield Scenario(running, canaries, callers, scratch)
        finally:
            stop()


@dataclass
class Library:
    memory: Memory
    canaries: list[Canary]
    scratch: str  # an id of alice's in default, for update/get/history/delete

    def forbidden_for_alice(self) -> list[str]:
        hidden = [
            c
            for c in self.canaries
            if c.namespace != "default" or c.scope.get("user_id") != "alice"
        ]
        return [c.marker for c in hidden] + [c.id for c in hidden]

    def snapshot(self) -> dict[str, Any]:
        return snapshot(self.memory)


def snapshot(memory: Memory) -> dict[str, Any]:
    """Everything a half-written call could change: rows, history, versions, every scope."""
    store = memory._store
    counts = {
        table: store._query(f"SELECT count(*) FROM {table}")[0][0]
        for table in ("memories", "history", "scope_versions")
    }
    versions = [tuple(r) for r in store._query("SELECT * FROM scope_versions ORDER BY 1")]
    rows = {}
    for namespace in ("default", "other"):
        view = memory.namespaced(namespace)
        for scope in ({"user_id": "alice"}, {"user_id": "bob"}, {"user_id": "carol"}):
            rows[(namespace, *scope.values())] = [
                (r["id"], r["memory"], repr(r["metadata"]), r["updated_at"])
                for r in view.get_all(**scope, top_k=1000)["results"]
            ]
    return {"counts": counts, "versions": versions, "rows": rows}


@pytest.fixture
def library(memory: Memory) -> Library:
    canaries = seed_canaries(memory)
    scratch = memory.add("alice's scratch memory", user_id="alice")["results"][0]["id"]
    return Library(memory, canaries, scratch)
