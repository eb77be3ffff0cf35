"""Adapters that let agent frameworks keep their memory in memvault.

Each adapter lives in its own module behind an extra, so importing this package needs nothing
beyond memvault's own dependencies:

- ``memvault.integrations.langgraph``: ``MemvaultStore``, a LangGraph ``BaseStore``
  (``pip install 'memvault[langchain]'``);
- ``memvault.integrations.langchain``: ``MemvaultRetriever``, a LangChain ``BaseRetriever``
  (the same extra).

See docs/integrations.md.
"""
