"""Tolerant JSON from model output, in linear time.

Models wrap JSON in code fences, put prose or ``<think>...</think>`` before it, leave trailing
commas, quote with ``'`` or write Python's ``True``/``None``, and answer a bare list where an
object was asked for. ``extract_json`` copes with all of that with ``str.find`` and single
left-to-right scans (no regular expression ever sees the model's text, so nothing backtracks):
a 1 MB pathological answer costs a few passes over 1 MB. ``parse_as`` then validates the value
against a pydantic model.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from memvault.errors import LLMBadOutput

__all__ = ["extract_json", "parse_as"]

_M = TypeVar("_M", bound=BaseModel)
# Start positions tried per candidate text: bounded, so the work stays linear.
MAX_STARTS = 3
_WHITESPACE = " \t\r\n"


def strip_thinking(text: str) -> str:
    """Drop ``<think>...</think>`` blocks (an unterminated one runs to the end); a lone
    ``</think>`` (the opening tag in the prompt template) drops everything before it."""
    lower = text.lower()
    close = "</think>"
    first_open = lower.find("<think>")
    first_close = lower.find(close)
    if first_close != -1 and (first_open == -1 or first_close < first_open):
        start = first_close + len(close)
        text, lower = text[start:], lower[start:]
    parts: list[str] = []
    position = 0
    while True:
        opening = lower.find("<think>", position)
        if opening == -1:
            parts.append(text[position:])
            break
        parts.append(text[position:opening])
        ending = lower.find(close, opening)
        if ending == -1:
            break
        position = ending + len(close)
    return "".join(parts)


def fenced_blocks(text: str) -> list[str]:
    """The contents of the first few ```` ``` ```` fenced blocks (language tag line dropped)."""
    blocks: list[str] = []
    position = 0
    while len(blocks) < MAX_STARTS:
        opening = text.find("```", position)
        if opening == -1:
            break
        line_end = text.find("\n", opening)
        if line_end == -1:
            break
        closing = text.find("```", line_end)
        blocks.append(text[line_end + 1 : closing if closing != -1 else len(text)])
        if closing == -1:
            break
        position = closing + 3
    return blocks


def _balanced_end(text: str, start: int) -> int:
    """The index after the bracket matching ``text[start]``, or ``len(text)`` (cut short)."""
    depth = 0
    quote = ""
    escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return index + 1
    return len(text)


def _normalize(snippet: str) -> str:
    """JSON from near-JSON in one pass: single-quoted strings become double-quoted, trailing
    commas go, ``True``/``False``/``None`` become JSON's words."""
    out: list[str] = []
    index, length = 0, len(snippet)
    while index < length:
        char = snippet[index]
        if char == '"' or char == "'":
            quote = char
            out.append('"')
            index += 1
            while index < length:
                char = snippet[index]
                if char == "\\" and index + 1 < length:
                    following = snippet[index + 1]
                    out.append("'" if following == "'" else "\\" + following)
                    index += 2
                    continue
                if char == quote:
                    break
                out.append('\\"' if char == '"' else char)
                index += 1
            out.append('"')
            index += 1
        elif char == ",":
            ahead = index + 1
            while ahead < length and snippet[ahead] in _WHITESPACE:
                ahead += 1
            if ahead >= length or snippet[ahead] not in "}]":
                out.append(",")
            index += 1
        elif char.isalpha():
            end = index
            while end < length and snippet[end].isalpha():
                end += 1
            word = snippet[index:end]
            out.append({"True": "true", "False": "false", "None": "null"}.get(word, word))
            index = end
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _loads(snippet: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(snippet)
    except (ValueError, RecursionError):
        pass
    try:
        return True, json.loads(_normalize(snippet))
    except (ValueError, RecursionError):
        return False, None


def _from_text(text: str) -> tuple[bool, Any]:
    position = 0
    for _ in range(MAX_STARTS):
        brace, bracket = text.find("{", position), text.find("[", position)
        starts = [p for p in (brace, bracket) if p != -1]
        if not starts:
            break
        start = min(starts)
        end = _balanced_end(text, start)
        ok, value = _loads(text[start:end])
        if ok:
            return True, value
        if end >= len(text):
            break  # unbalanced: later starts are inside it, and scanning again is O(n^2)
        position = end
    return False, None


def extract_json(text: str) -> Any:
    """The JSON value in a model's answer; raises ``LLMBadOutput`` when there is none."""
    text = strip_thinking(text)
    for candidate in [*fenced_blocks(text), text]:
        ok, value = _from_text(candidate)
        if ok:
            return value
    raise LLMBadOutput("the model's answer holds no JSON value")


def parse_as(text: str, model: type[_M]) -> _M:
    """``extract_json`` then validate as ``model``. A bare list is accepted for a model of one
    list field (``[...]`` for ``{"facts": [...]}``), and so is an object whose only list is under
    another key (``{"memories": [...]}``)."""
    value = extract_json(text)
    fields = list(model.model_fields)
    if len(fields) == 1:
        name = fields[0]
        if isinstance(value, list):
            value = {name: value}
        elif isinstance(value, dict) and name not in value:
            lists = [item for item in value.values() if isinstance(item, list)]
            if len(lists) == 1:
                value = {name: lists[0]}
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise LLMBadOutput(
            f"the model's JSON does not match the expected shape ({exc.error_count()} errors)"
        ) from None
