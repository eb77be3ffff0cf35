"""The MCP tests reuse the real server fixtures."""

from tests.server.conftest import server, start_server

__all__ = ["server", "start_server"]
