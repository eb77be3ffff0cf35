"""OpenAI Agents SDK adapters: a ``Session`` kept in memvault and memory tools bound to a user.

    >>> session = MemvaultSession("chat-1", memory, user_id="alice")
    >>> await Runner.run(agent, "hello", session=session)
    >>> agent = Agent(name="helper", tools=memory_tools(memory, user_id="alice"))

- ``MemvaultSession`` implements the SDK's ``Session`` protocol (``get_items``, ``add_items``,
  ``pop_item``, ``clear_session``): each conversation item is one memvault memory, encrypted
  with the scope's key. The item itself is kept exactly in the memory's metadata
  (``agents_item``), with the session id (``agents_session``) and its position
  (``agents_seq``); the memory's text is a readable rendering ("user: ...") tagged with the
  session and position, so history is searchable and never merged with another item.
- ``memory_tools`` returns two function tools, ``search_memory(query)`` and
  ``add_memory(text)``, whose scope is fixed when they are made: the model chooses what to
  search or remember, never whose memories.

The scope: the bound ids (``user_id=``, ``agent_id=``, ``run_id=``) always apply; the session's
``scope``, a function of the session id returning some of ``user_id``/``agent_id``/``run_id``,
may narrow it (``lambda sid: {"run_id": sid}``) but a session it maps to another value of a
bound id is refused (``Forbidden``); see ``memvault.integrations.scoping``. Within a scope the
session id keeps sessions apart.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from memvault.async_memory import AsyncMemory
from memvault.errors import InvalidInput
from memvault.integrations.scoping import ScopeBinding, equals
from memvault.memory import Memory
from memvault.validation import Scope, check_id

try:
    from agents import FunctionTool, function_tool
    from agents.items import TResponseInputItem
    from agents.memory import SessionSettings
    from agents.memory.session_settings import resolve_session_limit
except ImportError as missing:  # pragma: no cover - the extra is installed wherever tests run
    raise ImportError(
        "memvault.integrations.openai_agents needs the OpenAI Agents SDK:"
        " pip install 'memvault[openai-agents]'"
    ) from missing

__all__ = ["MemvaultSession", "memory_tools"]

SESSION_FIELD = "agents_session"
SEQ_FIELD = "agents_seq"
ITEM_FIELD = "agents_item"
PAGE = 1000
# The rendering is what search matches; the exact item is in the metadata.
MAX_RENDERING = 4000


def _sync(memory: Memory | AsyncMemory) -> Memory:
    # An AsyncMemory is a facade over a Memory: the adapters run the Memory in worker threads.
    return memory.sync if isinstance(memory, AsyncMemory) else memory


class MemvaultSession:
    """Conversation history of one Agents SDK session, kept encrypted in memvault."""

    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        memory: Memory | AsyncMemory,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        scope: Callable[[str], Mapping[str, str]] | None = None,
        session_settings: SessionSettings | None = None,
    ) -> None:
        self.session_id = check_id("session_id", session_id)
        self.memory = _sync(memory)
        binding = ScopeBinding(
            user_id=user_id,
            agent_id=agent_id,
            run_id=run_id,
            rule=scope,
            owner="MemvaultSession",
        )
        # Resolved now: a session whose id maps to no scope, or widens one, is never made.
        self.scope: Scope = binding.scope_of(self.session_id)
        self.session_settings = session_settings
        # add and pop read the last position then write: one at a time per session object.
        self._lock = threading.Lock()

    # --- the Session protocol -----------------------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The session's items in order; with ``limit``, the latest ``limit`` of them."""
        wanted = resolve_session_limit(limit, self.session_settings)
        return await asyncio.to_thread(self._items, wanted)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` (each stored as one memory, in one transaction)."""
        if items:
            await asyncio.to_thread(self._add, list(items))

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the latest item (None when the session is empty)."""
        return await asyncio.to_thread(self._pop)

    async def clear_session(self) -> None:
        """Delete every item of this session (other sessions of the scope are untouched)."""
        await asyncio.to_thread(self._clear)

    # --- work, in a worker thread -------------------------------------------------------------

    def _ids(self) -> dict[str, str | None]:
        return {
            "user_id": self.scope.user_id,
            "agent_id": self.scope.agent_id,
            "run_id": self.scope.run_id,
        }

    def _latest(self, count: int, offset: int = 0) -> list[dict[str, Any]]:
        """Up to ``count`` memories of this session, newest first."""
        found = self.memory.get_all(
            **self._ids(),
            filters=equals(SESSION_FIELD, self.session_id),
            top_k=count,
            offset=offset,
        )
        return found["results"]

    def _all(self) -> list[dict[str, Any]]:
        memories: list[dict[str, Any]] = []
        while True:
            page = self._latest(PAGE, len(memories))
            memories.extend(page)
            if len(page) < PAGE:
                return memories

    def _items(self, limit: int | None) -> list[TResponseInputItem]:
        if limit is not None and limit <= 0:
            return []
        memories = self._all() if limit is None else self._latest(limit)
        memories.sort(key=_seq)
        return [_item_of(memory) for memory in memories]

    def _add(self, items: list[TResponseInputItem]) -> None:
        with self._lock:
            latest = self._latest(1)
            start = _seq(latest[0]) + 1 if latest else 0
            rows = []
            for offset, item in enumerate(items):
                seq = start + offset
                rows.append(
                    {
                        **self._ids(),
                        "messages": self._text(item, seq),
                        "metadata": {
                            SESSION_FIELD: self.session_id,
                            SEQ_FIELD: seq,
                            ITEM_FIELD: _plain(item),
                        },
                        "infer": False,
                    }
                )
            self.memory.add_many(rows)

    def _pop(self) -> TResponseInputItem | None:
        with self._lock:
            latest = self._latest(1)
            if not latest:
                return None
            self.memory.delete(latest[0]["id"])
            return _item_of(latest[0])

    def _clear(self) -> None:
        with self._lock:
            for memory in self._all():
                self.memory.delete(memory["id"])

    def _text(self, item: TResponseInputItem, seq: int) -> str:
        # Tagged with the session and position: memvault keeps one memory per text and scope,
        # and two items saying the same thing ("yes") are two items of the conversation.
        return f"{_render(item)[:MAX_RENDERING]}\n[session {self.session_id} #{seq}]"


def memory_tools(
    memory: Memory | AsyncMemory,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    top_k: int = 5,
    infer: bool = False,
) -> list[FunctionTool]:
    """``search_memory`` and ``add_memory`` function tools over one fixed memvault scope.

    ``infer=True`` lets memvault's LLM extract facts from what ``add_memory`` is given instead
    of storing the text as it is.
    """
    scope = Scope.of(user_id, agent_id, run_id)  # fixed now: the model never names a scope
    store = _sync(memory)

    def search(query: str) -> dict[str, Any]:
        return store.search(
            query,
            user_id=scope.user_id,
            agent_id=scope.agent_id,
            run_id=scope.run_id,
            top_k=top_k,
        )

    def add(text: str) -> dict[str, Any]:
        return store.add(
            text, user_id=scope.user_id, agent_id=scope.agent_id, run_id=scope.run_id, infer=infer
        )

    async def search_memory(query: str) -> str:
        """Search the user's long-term memory.

        Args:
            query: What to look for, in plain words.
        """
        found = await asyncio.to_thread(search, query)
        hits = found["results"]
        if not hits:
            return "No memories found."
        return "\n".join(f"- {hit['memory']}" for hit in hits)

    async def add_memory(text: str) -> str:
        """Remember a fact about the user for later conversations.

        Args:
            text: The fact to remember, as one short sentence.
        """
        added = await asyncio.to_thread(add, text)
        events = [result["event"] for result in added["results"]]
        if "job" in added:
            return "Queued to be remembered."
        if events and all(event == "NONE" for event in events):
            return "Already remembered."
        return "Remembered."

    return [function_tool(search_memory), function_tool(add_memory)]


def _seq(memory: Mapping[str, Any]) -> int:
    return int(memory["metadata"][SEQ_FIELD])


def _item_of(memory: Mapping[str, Any]) -> TResponseInputItem:
    item: TResponseInputItem = memory["metadata"][ITEM_FIELD]
    return item


def _plain(item: TResponseInputItem) -> Any:
    """The item as JSON values (what metadata holds); anything else is refused, not guessed."""
    try:
        return json.loads(json.dumps(item))
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"a session item must be JSON values: {error}") from None


def _render(item: Mapping[str, Any]) -> str:
    """A readable line for search: ``role: text`` for messages, the call for tool calls."""
    content = item.get("content")
    role = item.get("role")
    if role is not None and isinstance(content, str):
        return f"{role}: {content}"
    if role is not None and isinstance(content, list):
        parts = [
            str(part["text"]) for part in content if isinstance(part, Mapping) and "text" in part
        ]
        if parts:
            return f"{role}: {' '.join(parts)}"
    kind = item.get("type")
    if kind == "function_call":
        return f"function_call {item.get('name')}({item.get('arguments')})"
    if kind == "function_call_output":
        return f"function_call_output: {item.get('output')}"
    return json.dumps(item, ensure_ascii=False, sort_keys=True, default=str)
