"""LLMs for ``add(infer=True)``: the protocol, an OpenAI-compatible client, tolerant parsing
and the versioned prompts."""

from __future__ import annotations

from memvault.llm.client import LLM, ChatMessage, OpenAIChat
from memvault.llm.parsing import extract_json, parse_as
from memvault.llm.prompts import PROMPT_VERSION

__all__ = ["LLM", "PROMPT_VERSION", "ChatMessage", "OpenAIChat", "extract_json", "parse_as"]
