"""The memory tools, on the official MCP SDK's ``MCPServer``.

Each tool gets a ``Principal`` from ``resolve(ctx)`` (the stdio user, or the API key of the HTTP
request), asks ``security.policy`` for the tool's action (``TOOL_ACTIONS``), runs the blocking
``Memory`` call in a worker thread, and answers structured content plus
a short text rendering. A ``MemvaultError`` becomes a tool error ``[code] message``: the session
stays up and the model sees what to fix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from memvault import __version__
from memvault.errors import MemvaultError
from memvault.security.audit import AuditEntry
from memvault.security.policy import Action, authorize
from memvault.security.principal import Principal

__all__ = ["READ_TOOLS", "TOOL_ACTIONS", "WRITE_TOOLS", "build_server"]

TOOL_ACTIONS: dict[str, Action] = {
    "search_memories": Action.MEMORIES_READ,
    "list_memories": Action.MEMORIES_READ,
    "get_memory": Action.MEMORIES_READ,
    "memory_history": Action.MEMORIES_READ,
    "related_memories": Action.MEMORIES_READ,
    "job_status": Action.JOBS_READ,
    "add_memory": Action.MEMORIES_WRITE,
    "update_memory": Action.MEMORIES_WRITE,
    "delete_memory": Action.MEMORIES_WRITE,
}
# What a read-only connection offers: the tools whose action only reads.
_READ_ACTIONS = frozenset({Action.MEMORIES_READ, Action.JOBS_READ})
READ_TOOLS = tuple(t for t, a in TOOL_ACTIONS.items() if a in _READ_ACTIONS)
WRITE_TOOLS = tuple(t for t, a in TOOL_ACTIONS.items() if a not in _READ_ACTIONS)

Resolver = Callable[[Context], Principal]
T = TypeVar("T")

UserId = Annotated[
    str | None,
    Field(description="Whose memories. Optional when the connection is bound to one user."),
]
AgentId = Annotated[str | None, Field(description="Scope to an agent (optional).")]
RunId = Annotated[str | None, Field(description="Scope to a run or session (optional).")]
Filters = Annotated[
    dict[str, Any] | None,
    Field(
        description='mem0 filters over metadata and fields, e.g. {"topic": "food"} or '
        '{"created_at": {"gte": "2026-01-01"}}; operators eq ne gt gte lt lte in nin '
        "contains icontains, combined with AND / OR / NOT."
    ),
]
MemoryId = Annotated[str, Field(description="A memory id, as returned by add or search.")]
JobId = Annotated[
    str, Field(description="A job id, as named by add_memory(infer=true) on a server.")
]

INSTRUCTIONS = (
    "Long-term memory about the user. Search before answering questions that may depend on what "
    "you were told earlier; add durable facts and preferences (one fact per memory) when you learn "
    "them; update or delete a memory when the user corrects it."
)


async def _run(who: Principal, tool: str, fn: Callable[[], T], memory_id: str | None = None) -> T:
    """Authorize, run ``fn`` in a worker thread, audit the call, turn errors into tool errors."""
    outcome, result = "ok", None
    try:
        authorize(who, TOOL_ACTIONS[tool])
        result = await anyio.to_thread.run_sync(fn)
        return result
    except MemvaultError as exc:
        outcome = exc.code
        raise ToolError(f"[{exc.code}] {exc.message}") from None
    finally:
        ids = [memory_id] if memory_id else []
        if isinstance(result, dict) and tool == "add_memory":
            ids = [r["id"] for r in result.get("results", [])]
        who.memory.audit.record(
            AuditEntry(
                action=f"mcp {tool}",
                outcome=outcome,
                namespace=who.namespace,
                key_id=who.key.id if who.key is not None else None,
                user_id=who.bound_user,
                memory_ids=tuple(ids),
                source="mcp",
            )
        )


def _line(item: dict[str, Any]) -> str:
    score = f" (score {item['score']:.2f})" if item.get("score") is not None else ""
    return f"- {item['memory']}{score} [id {item['id']}]"


def _job_line(job: dict[str, Any]) -> str:
    line = f"job {job['id']}: {job['status']} (attempt {job['attempts']} of {job['max_attempts']})"
    if job.get("error_code"):
        line += f", last error {job['error_code']}"
    result = job.get("result")
    if isinstance(result, dict):
        line += "".join(
            f"\n{r.get('event')} [id {r.get('id')}] {r.get('memory') or ''}".rstrip()
            for r in result.get("results", [])
            if isinstance(r, dict)
        )
    return line


def _result(payload: dict[str, Any], text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=payload)


def _listing(results: list[dict[str, Any]], empty: str) -> str:
    if not results:
        return empty
    return f"{len(results)} memories:\n" + "\n".join(_line(item) for item in results)


def build_server(
    resolve: Resolver,
    *,
    writable: bool,
    default_agent_id: str | None = None,
    name: str = "memvault",
) -> MCPServer:
    """An MCP server with the read tools, and the write tools when ``writable``."""
    server = MCPServer(
        name=name, version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    read_only = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)

    @server.tool(
        description="Search the user's memories by meaning and by words; best matches first.",
        annotations=read_only,
    )
    async def search_memories(
        ctx: Context,
        query: Annotated[str, Field(description="What to look for, in natural language.")],
        user_id: UserId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        filters: Filters = None,
        top_k: Annotated[int, Field(ge=1, le=100, description="How many results.")] = 10,
    ) -> CallToolResult:
        who = resolve(ctx)
        found = await _run(
            who,
            "search_memories",
            lambda: who.memory.search(
                query,
                user_id=who.user_scope(user_id),
                agent_id=agent_id,
                run_id=run_id,
                filters=who.pin_filters(filters),
                top_k=top_k,
            ),
        )
        return _result(found, _listing(found["results"], "No matching memories."))

    @server.tool(description="List the user's memories, newest first.", annotations=read_only)
    async def list_memories(
        ctx: Context,
        user_id: UserId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        filters: Filters = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="How many at most.")] = 50,
    ) -> CallToolResult:
        who = resolve(ctx)
        listed = await _run(
            who,
            "list_memories",
            lambda: who.memory.get_all(
                user_id=who.user_scope(user_id),
                agent_id=agent_id,
                run_id=run_id,
                filters=who.pin_filters(filters),
                top_k=limit,
            ),
        )
        return _result(listed, _listing(listed["results"], "No memories yet."))

    @server.tool(description="Get one memory by id, with its metadata.", annotations=read_only)
    async def get_memory(ctx: Context, memory_id: MemoryId) -> CallToolResult:
        who = resolve(ctx)
        item = await _run(
            who, "get_memory", lambda: who.owned(who.memory.get(memory_id), memory_id), memory_id
        )
        return _result(item, _line(item))

    @server.tool(
        description="Every change to a memory (ADD, UPDATE, DELETE), oldest first.",
        annotations=read_only,
    )
    async def memory_history(ctx: Context, memory_id: MemoryId) -> CallToolResult:
        who = resolve(ctx)
        events = await _run(who, "memory_history", lambda: who.history(memory_id), memory_id)
        text = "\n".join(
            f"- {e['created_at'][:19]} {e['event']}: {e['new_memory'] or e['old_memory'] or ''}"
            for e in events
        )
        return _result({"events": events}, text)

    @server.tool(
        description="Memories that name the same people, places, things, dates or titles as "
        "one memory (same user), best first, each with the shared names: follow a thread "
        "across conversations.",
        annotations=read_only,
    )
    async def related_memories(
        ctx: Context,
        memory_id: MemoryId,
        limit: Annotated[int, Field(ge=1, le=100, description="How many at most.")] = 10,
    ) -> CallToolResult:
        who = resolve(ctx)

        def related() -> dict[str, Any]:
            who.owned(who.memory.get(memory_id), memory_id)
            return who.memory.related(memory_id, limit=limit)

        found = await _run(who, "related_memories", related, memory_id)
        lines = [
            f"{_line(item)} shares: {', '.join(item['entities'])}" for item in found["results"]
        ]
        text = (
            f"{len(lines)} related memories:\n" + "\n".join(lines)
            if lines
            else "No memory shares an entity with it."
        )
        return _result(found, text)

    @server.tool(
        description="Where a queued add_memory(infer=true) is: queued, running, done (with the "
        "memories it stored or changed), failed (retrying) or dead (it gave up).",
        annotations=read_only,
    )
    async def job_status(ctx: Context, job_id: JobId) -> CallToolResult:
        who = resolve(ctx)
        # A connection bound to a user sees only that user's jobs; another's looks absent.
        job = await _run(who, "job_status", lambda: who.memory.job(job_id, user_id=who.bound_user))
        return _result(job, _job_line(job))

    if not writable:
        return server

    @server.tool(
        description="Remember a fact, preference or event about the user (one fact per call). "
        "Storing the same text again is harmless: it answers event NONE.",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True
        ),
    )
    async def add_memory(
        ctx: Context,
        text: Annotated[str, Field(description="The fact to remember, as a full sentence.")],
        user_id: UserId = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        metadata: Annotated[
            dict[str, Any] | None,
            Field(description='Optional JSON object, e.g. {"topic": "food"}.'),
        ] = None,
        infer: Annotated[
            bool,
            Field(
                description="Extract facts from the text with the configured LLM. On a server "
                "the work is queued: the answer names the job."
            ),
        ] = False,
    ) -> CallToolResult:
        who = resolve(ctx)
        added = await _run(
            who,
            "add_memory",
            lambda: who.memory.add(
                text,
                user_id=who.user_scope(user_id),
                agent_id=agent_id or default_agent_id,
                run_id=run_id,
                metadata=metadata,
                infer=infer,
            ),
        )
        lines = [f"{r['event']} [id {r['id']}]" for r in added["results"]]
        job = added.get("job")
        if job is not None:
            lines.append(f"Queued as job {job['id']} ({job['status']}).")
        return _result(added, "\n".join(lines))

    @server.tool(
        description="Correct a memory: replace its text and/or metadata (the old text is kept in "
        "its history).",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True
        ),
    )
    async def update_memory(
        ctx: Context,
        memory_id: MemoryId,
        text: Annotated[str | None, Field(description="The new text.")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(description="The new metadata.")] = None,
    ) -> CallToolResult:
        who = resolve(ctx)

        def update() -> dict[str, Any]:
            who.owned(who.memory.get(memory_id), memory_id)
            return who.memory.update(memory_id, text, metadata)

        updated = await _run(who, "update_memory", update, memory_id)
        return _result(updated, "Updated: " + _line(updated["result"]))

    @server.tool(
        description="Forget one memory by id.",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False
        ),
    )
    async def delete_memory(ctx: Context, memory_id: MemoryId) -> CallToolResult:
        who = resolve(ctx)

        def delete() -> dict[str, Any]:
            who.owned(who.memory.get(memory_id), memory_id)
            return who.memory.delete(memory_id)

        deleted = await _run(who, "delete_memory", delete, memory_id)
        return _result(deleted, f"Deleted memory {memory_id}.")

    return server
