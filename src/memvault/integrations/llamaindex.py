"""LlamaIndex adapters: a memory block for its ``Memory`` and a retriever over memvault search.

    >>> block = MemvaultMemoryBlock(memory=memory, user_id="alice")
    >>> chat_memory = LlamaMemory.from_defaults(session_id="s1", memory_blocks=[block])

- ``MemvaultMemoryBlock`` (a ``BaseMemoryBlock[str]``): on ``aget`` it searches the scope with
  the text of the latest messages and returns the ``top_k`` memories as lines of text, which
  LlamaIndex's ``Memory`` inserts into the prompt; on ``aput`` (messages flushed from the short
  term memory) it stores the text of each message whose role is in ``roles`` (``infer=True``:
  memvault's LLM extracts facts from them instead).
- ``MemvaultRetriever`` (a ``BaseRetriever``): the ``top_k`` memories of a fixed scope as
  ``NodeWithScore`` (a ``TextNode`` with the memory's text, id and metadata).

The scope: the bound ids (``user_id=``, ``agent_id=``, ``run_id=``) always apply; the block's
``scope``, a function of LlamaIndex's ``session_id`` returning some of ``user_id``/``agent_id``/
``run_id``, may narrow it (``lambda session: {"run_id": session}``) but a session it maps to
another value of a bound id is refused (``Forbidden``); see ``memvault.integrations.scoping``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from typing import Any

from memvault.async_memory import AsyncMemory
from memvault.errors import InvalidConfig
from memvault.integrations.scoping import ScopeBinding
from memvault.memory import Memory
from memvault.validation import Scope

try:
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.core.bridge.pydantic import Field, PrivateAttr, model_validator
    from llama_index.core.memory.memory import BaseMemoryBlock
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as missing:  # pragma: no cover - the extra is installed wherever tests run
    raise ImportError(
        "memvault.integrations.llamaindex needs LlamaIndex: pip install 'memvault[llamaindex]'"
    ) from missing

__all__ = ["MemvaultMemoryBlock", "MemvaultRetriever", "SessionRule"]

SessionRule = Callable[[str], Mapping[str, str]]
"""A LlamaIndex session id -> some of ``user_id``, ``agent_id``, ``run_id``."""

# Fields of a search hit copied into a node's metadata (the text is the node's text).
HIT_FIELDS = ("id", "score", "user_id", "agent_id", "run_id", "created_at", "updated_at")
SESSION_KWARG = "session_id"


def _sync(memory: Memory | AsyncMemory) -> Memory:
    # An AsyncMemory is a facade over a Memory: the adapters run the Memory in worker threads.
    return memory.sync if isinstance(memory, AsyncMemory) else memory


class MemvaultMemoryBlock(BaseMemoryBlock[str]):
    """Long-term memory for LlamaIndex's ``Memory``, kept in (and searched from) memvault."""

    name: str = Field(default="memvault", description="The block's name in the prompt.")
    memory: Any = Field(description="The memvault Memory (or AsyncMemory) to keep memories in.")
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    scope: SessionRule | None = Field(
        default=None, description="Maps LlamaIndex's session_id to more ids (never wider)."
    )
    top_k: int = Field(default=5, description="Memories returned by aget.")
    threshold: float | None = None
    filters: dict[str, Any] | None = None
    roles: tuple[str, ...] = Field(
        default=("user",), description="Roles of the messages aput stores."
    )
    context_window: int = Field(
        default=3, description="How many of the latest messages make the search query."
    )
    infer: bool = Field(
        default=False,
        description="Let memvault's LLM extract facts from the messages instead of storing them.",
    )
    _binding: ScopeBinding[str] = PrivateAttr()

    @model_validator(mode="after")
    def _check(self) -> MemvaultMemoryBlock:
        if not isinstance(self.memory, Memory | AsyncMemory):
            raise InvalidConfig("memory must be a memvault Memory or AsyncMemory")
        self.memory = _sync(self.memory)
        self._binding = ScopeBinding(
            user_id=self.user_id,
            agent_id=self.agent_id,
            run_id=self.run_id,
            rule=self.scope,
            owner="MemvaultMemoryBlock",
        )
        return self

    def scope_of(self, session_id: str | None) -> Scope:
        """The memvault scope of LlamaIndex's ``session_id`` (bound ids plus the rule's)."""
        return self._binding.scope_of(session_id)

    async def _aget(self, messages: list[ChatMessage] | None = None, **block_kwargs: Any) -> str:
        query = " ".join(_text(message) for message in (messages or [])[-self.context_window :])
        if not query.strip():
            return ""
        scope = self.scope_of(block_kwargs.get(SESSION_KWARG))
        memory: Memory = self.memory
        found = await asyncio.to_thread(
            memory.search,
            query,
            user_id=scope.user_id,
            agent_id=scope.agent_id,
            run_id=scope.run_id,
            filters=self.filters,
            top_k=self.top_k,
            threshold=self.threshold,
        )
        return "\n".join(f"- {hit['memory']}" for hit in found["results"])

    async def _aput(self, messages: list[ChatMessage]) -> None:
        kept = [m for m in messages if _role(m) in self.roles and _text(m).strip()]
        if not kept:
            return
        memory: Memory = self.memory
        # LlamaIndex's aput puts its session id into each message's additional_kwargs.
        by_scope: dict[Scope, list[ChatMessage]] = {}
        for message in kept:
            session = message.additional_kwargs.get(SESSION_KWARG)
            by_scope.setdefault(self.scope_of(session), []).append(message)
        for scope, group in by_scope.items():
            ids = {"user_id": scope.user_id, "agent_id": scope.agent_id, "run_id": scope.run_id}
            if self.infer:
                conversation: list[Mapping[str, Any]] = [
                    {"role": _role(m), "content": _text(m)} for m in group
                ]
                add = functools.partial(
                    memory.add,
                    conversation,
                    user_id=scope.user_id,
                    agent_id=scope.agent_id,
                    run_id=scope.run_id,
                    infer=True,
                )
                await asyncio.to_thread(add)
                continue
            items = [
                {**ids, "messages": _text(m), "metadata": {"role": _role(m)}, "infer": False}
                for m in group
            ]
            await asyncio.to_thread(memory.add_many, items)


class MemvaultRetriever(BaseRetriever):
    """The ``top_k`` memories of a fixed scope closest to the query, as LlamaIndex nodes."""

    def __init__(
        self,
        memory: Memory | AsyncMemory,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        top_k: int = 4,
        filters: Mapping[str, Any] | None = None,
        threshold: float | None = None,
        **kwargs: Any,
    ) -> None:
        # Checked now (MissingScope, InvalidId): a retriever without a scope is never made.
        self.scope = Scope.of(user_id, agent_id, run_id)
        self.memory = _sync(memory)
        self.top_k = top_k
        self.filters = dict(filters) if filters is not None else None
        self.threshold = threshold
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.memory.search(
            query_bundle.query_str,
            user_id=self.scope.user_id,
            agent_id=self.scope.agent_id,
            run_id=self.scope.run_id,
            filters=self.filters,
            top_k=self.top_k,
            threshold=self.threshold,
        )["results"]
        return [_node(hit) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


def _role(message: ChatMessage) -> str:
    return str(message.role.value)


def _text(message: ChatMessage) -> str:
    return message.content or ""


def _node(hit: Mapping[str, Any]) -> NodeWithScore:
    metadata = dict(hit.get("metadata") or {})
    metadata.update({field: hit.get(field) for field in HIT_FIELDS})
    node = TextNode(id_=hit["id"], text=hit["memory"], metadata=metadata)
    return NodeWithScore(node=node, score=hit.get("score"))
