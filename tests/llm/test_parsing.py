"""Tolerant JSON extraction from model output: every malformed kind, in linear time."""

from __future__ import annotations

import contextlib
import time

import pytest

from memvault.errors import LLMBadOutput
from memvault.llm.parsing import extract_json, parse_as
from memvault.llm.prompts import Decisions, Extraction

EXPECTED = {"facts": [{"text": "Alice likes tea", "type": "semantic", "entities": []}]}


@pytest.mark.parametrize(
    "answer",
    [
        '{"facts": [{"text": "Alice likes tea", "type": "semantic"}]}',
        '```json\n{"facts": [{"text": "Alice likes tea", "type": "semantic"}]}\n```',
        '```\n{"facts": [{"text": "Alice likes tea", "type": "semantic"}]}\n```\nDone.',
        'Sure! Here are the facts:\n{"facts": [{"text": "Alice likes tea", "type": "semantic"}]}'
        "\nLet me know if you need more.",
        '<think>The user says {she likes tea}. [1]</think>\n{"facts": [{"text": "Alice likes tea",'
        ' "type": "semantic"}]}',
        'reasoning without an opening tag</think>{"facts": [{"text": "Alice likes tea"}]}',
        '{"facts": [{"text": "Alice likes tea", "type": "semantic",},],}',
        "{'facts': [{'text': 'Alice likes tea', 'type': 'semantic'}]}",
        '[{"text": "Alice likes tea", "type": "semantic"}]',
        '["Alice likes tea"]',
        '{"memories": [{"text": "Alice likes tea"}]}',
        "{'facts': [{'text': 'Alice likes tea', 'type': 'SEMANTIC', 'sure': True, 'x': None}]}",
    ],
    ids=[
        "plain",
        "fence",
        "fence-then-prose",
        "prose-around",
        "think-block",
        "think-close-only",
        "trailing-commas",
        "single-quotes",
        "top-level-list",
        "list-of-strings",
        "other-key",
        "python-literals",
    ],
)
def test_malformed_outputs_are_parsed(answer: str) -> None:
    parsed = parse_as(answer, Extraction)
    assert parsed.model_dump() == EXPECTED


def test_single_quoted_text_with_double_quotes_and_apostrophes() -> None:
    value = extract_json("{'text': 'She said \"hi\" and it\\'s fine'}")
    assert value == {"text": 'She said "hi" and it\'s fine'}


def test_unknown_type_becomes_semantic_and_event_is_upper() -> None:
    assert parse_as('{"facts": [{"text": "x", "type": "weird"}]}', Extraction).facts[0].type == (
        "semantic"
    )
    got = parse_as('[{"fact": "f1", "event": "update", "memory": "m1", "text": "y"}]', Decisions)
    assert got.decisions[0].event == "UPDATE"


@pytest.mark.parametrize("answer", ["", "no json here", "{", '{"facts": "nope"}', "<think>{}"])
def test_unusable_outputs_raise(answer: str) -> None:
    with pytest.raises(LLMBadOutput):
        parse_as(answer, Extraction)


@pytest.mark.parametrize(
    "answer",
    [
        "{" * 1_000_000,
        "[" * 500_000 + "]" * 499_999,
        "'" * 1_000_000,
        '{"a": "' + "\\" * 1_000_000,
        ", " * 500_000 + "}",
        "<think>" * 150_000,
        "```\n" * 250_000,
        "{'a': 1,,,,," + " " * 1_000_000,
        "a" * 1_000_000,
    ],
    ids=["braces", "brackets", "quotes", "escapes", "commas", "think", "fences", "spaces", "word"],
)
def test_pathological_megabyte_stays_fast(answer: str) -> None:
    started = time.perf_counter()
    with contextlib.suppress(LLMBadOutput):
        parse_as(answer, Extraction)
    assert time.perf_counter() - started < 5.0  # linear: ~1 s on a loaded 2-core box
