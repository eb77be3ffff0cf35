"""``memvault mcp``: the tools over stdio on the local store, pinned to one user.

Stdout carries the protocol: nothing else may be printed there (logs go to stderr).
"""

from __future__ import annotations

from pathlib import Path

from memvault.mcp.tools import build_server
from memvault.memory import Memory
from memvault.security.principal import Principal

__all__ = ["serve_stdio"]


def serve_stdio(
    *,
    home: Path | None,
    embedder: str | None,
    namespace: str | None,
    user_id: str,
    agent_id: str | None,
) -> None:
    with Memory(home, embedder=embedder, namespace=namespace) as memory:
        principal = Principal(memory, bound_user=user_id)
        server = build_server(lambda ctx: principal, writable=True, default_agent_id=agent_id)
        server.run("stdio")
