"""``MemvaultRetriever``: a LangChain retriever over one memvault scope.

    >>> retriever = MemvaultRetriever(memory=memory, user_id="alice", top_k=3)
    >>> retriever.invoke("what does alice drink?")[0].page_content
    'Alice prefers green tea'

The scope is fixed when the retriever is made (at least one of ``user_id``, ``agent_id``,
``run_id``): a query can never reach another one. Each ``Document`` carries the memory's text
as ``page_content``, its id as ``id``, and in ``metadata`` the memory's own metadata plus
``id``, ``score``, ``user_id``, ``agent_id``, ``run_id``, ``created_at`` and ``updated_at``.
"""

from __future__ import annotations

from typing import Any

from memvault.async_memory import AsyncMemory
from memvault.memory import Memory
from memvault.validation import Scope

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import model_validator
except ImportError as missing:  # pragma: no cover - the extra is installed wherever tests run
    raise ImportError(
        "memvault.integrations.langchain needs LangChain: pip install 'memvault[langchain]'"
    ) from missing

__all__ = ["MemvaultRetriever"]

# Fields of a search hit copied into a Document's metadata (the text is its page_content).
HIT_FIELDS = ("id", "score", "user_id", "agent_id", "run_id", "created_at", "updated_at")


class MemvaultRetriever(BaseRetriever):
    """The ``top_k`` memories of a fixed scope closest to the query (memvault hybrid search)."""

    memory: Memory
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    top_k: int = 4
    filters: dict[str, Any] | None = None
    threshold: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _sync_memory(cls, data: Any) -> Any:
        # An AsyncMemory is a facade over a Memory: LangChain runs sync retrievers in threads.
        if isinstance(data, dict) and isinstance(data.get("memory"), AsyncMemory):
            data = {**data, "memory": data["memory"].sync}
        return data

    @model_validator(mode="after")
    def _fixed_scope(self) -> MemvaultRetriever:
        # Checked now (MissingScope, InvalidId): a retriever without a scope is never made.
        Scope.of(self.user_id, self.agent_id, self.run_id)
        return self

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = self.memory.search(
            query,
            user_id=self.user_id,
            agent_id=self.agent_id,
            run_id=self.run_id,
            filters=self.filters,
            top_k=self.top_k,
            threshold=self.threshold,
        )["results"]
        return [_document(hit) for hit in hits]


def _document(hit: dict[str, Any]) -> Document:
    metadata = dict(hit.get("metadata") or {})
    metadata.update({field: hit.get(field) for field in HIT_FIELDS})
    return Document(page_content=hit["memory"], metadata=metadata, id=hit["id"])
