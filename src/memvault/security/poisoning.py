"""Memory poisoning: text that tries to instruct the agent that later reads it back.

A memory is data the agent will put in its own context. Text that reads like instructions to a
model ("ignore previous instructions", "you are now ...", a system prompt or a tool call) has no
business being remembered as a fact; memvault stores it (refusing would lose real conversations
about prompt injection) but flags it: ``metadata["flags"]`` gets ``"instructions"``, and callers
exclude flagged memories with ``filters={"NOT": [{"flags": {"contains": "instructions"}}]}``.

Detection is case-folded substring search over a whitespace-collapsed copy: linear in the text,
no regular expression. It is a tripwire, not a classifier: paraphrases get through (see
docs/security.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["FLAG", "flag_metadata", "instruction_flags", "reflag_metadata"]

FLAG = "instructions"
PHRASES = (
    "ignore previous instructions",
    "ignore all previous instructions",
    "ignore the previous instructions",
    "ignore all prior instructions",
    "ignore prior instructions",
    "ignore the above",
    "ignore your instructions",
    "disregard previous instructions",
    "disregard all previous",
    "disregard all prior",
    "disregard your instructions",
    "forget your instructions",
    "forget all previous instructions",
    "you are now",
    "from now on you are",
    "from now on, you are",
    "new instructions:",
    "system prompt",
    "system message:",
    "developer message:",
    "<|im_start|>",
    "<|system|>",
    "<|start_header_id|>",
    "[system]",
    "<system>",
    "</system>",
    "[inst]",
    "<<sys>>",
    "<tool_call>",
    "</tool_call>",
    "<function_call>",
    "<function=",
    '{"function":',
    '"tool_calls":',
)
# A tool call's JSON shape: a "name" key together with "arguments" or "parameters".
_TOOL_NAME = '{"name":'
_TOOL_ARGS = ('"arguments":', '"parameters":')


_TIGHTEN = tuple((f"{c} ", c) for c in "{[:,") + tuple((f" {c}", c) for c in "}]:,")


def _collapse(text: str) -> str:
    """Case-folded, every run of whitespace one space, none next to JSON punctuation (C-speed
    string methods, each linear)."""
    folded = " ".join(text.casefold().split())
    for spaced, tight in _TIGHTEN:
        folded = folded.replace(spaced, tight)
    return folded


_FOLDED = tuple(_collapse(phrase) for phrase in PHRASES)


def instruction_flags(text: str) -> list[str]:
    """``["instructions"]`` when the text looks like instructions to a model, else ``[]``."""
    folded = _collapse(text)
    if any(phrase in folded for phrase in _FOLDED):
        return [FLAG]
    if _TOOL_NAME in folded and any(part in folded for part in _TOOL_ARGS):
        return [FLAG]
    return []


def flag_metadata(metadata: Mapping[str, Any], text: str) -> dict[str, Any]:
    """``metadata`` with ``"instructions"`` added to its ``flags`` list when ``text`` is flagged
    (a caller's own ``flags`` list is kept; a non-list value is replaced)."""
    result = dict(metadata)
    flags = instruction_flags(text)
    if flags:
        existing = result.get("flags")
        kept = [f for f in existing if isinstance(f, str)] if isinstance(existing, list) else []
        result["flags"] = sorted(set(kept) | set(flags))
    return result


def reflag_metadata(metadata: Mapping[str, Any], text: str) -> dict[str, Any]:
    """Stored ``metadata`` checked again for a memory's new ``text``: an ``"instructions"`` flag
    about the old text is dropped (with ``flags`` itself when nothing else is left in it), then
    the new text is checked as ``flag_metadata`` does; every other key and flag is kept."""
    result = dict(metadata)
    existing = result.get("flags")
    if isinstance(existing, list) and FLAG in existing:
        kept = [f for f in existing if f != FLAG]
        if kept:
            result["flags"] = kept
        else:
            del result["flags"]
    return flag_metadata(result, text)
