"""The MCP server (``pip install 'memvault[mcp]'``): memory tools for Claude, Cursor and any client.

``memvault mcp`` serves them over stdio on the local store for one user; ``memvault serve`` mounts
them at ``/mcp`` (streamable HTTP) behind the same API keys as the REST API.
"""

from memvault.mcp.tools import READ_TOOLS, WRITE_TOOLS, build_server

__all__ = ["READ_TOOLS", "WRITE_TOOLS", "build_server"]
