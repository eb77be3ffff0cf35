"""Adapters that let agent frameworks keep their memory in memvault.

Each adapter lives in its own module behind an extra, so importing this package needs nothing
beyond memvault's own dependencies:

- ``memvault.integrations.langgraph``: ``MemvaultStore``, a LangGraph ``BaseStore``
  (``pip install 'memvault[langchain]'``);
- ``memvault.integrations.langchain``: ``MemvaultRetriever``, a LangChain ``BaseRetriever``
  (the same extra);
- ``memvault.integrations.llamaindex``: ``MemvaultMemoryBlock``, a memory block for LlamaIndex's
  ``Memory``, and ``MemvaultRetriever``, a LlamaIndex ``BaseRetriever``
  (``pip install 'memvault[llamaindex]'``);
- ``memvault.integrations.openai_agents``: ``MemvaultSession``, an OpenAI Agents SDK ``Session``,
  and ``memory_tools``, search/add function tools bound to one scope
  (``pip install 'memvault[openai-agents]'``);
- ``memvault.integrations.crewai``: ``MemvaultStorage``, a storage backend for CrewAI's unified
  ``Memory`` (CrewAI pins ``mcp<2``, so it installs in an environment of its own:
  ``pip install 'memvault[local]' crewai``).

Every adapter maps the framework's user/thread/session to a memvault scope with
``memvault.integrations.scoping.ScopeBinding``: bound ids always apply, a caller's rule may only
narrow. See docs/integrations.md.
"""
