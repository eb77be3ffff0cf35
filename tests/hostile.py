"""Hostile filter keys and values for the generated tests, and how many cases to run.

Every generated filter test runs ``fuzz_examples(default)`` cases: a small number in CI, as many
as ``MEMVAULT_FUZZ_EXAMPLES`` says under ``make fuzz`` (read at import: the hermetic fixture
clears ``MEMVAULT_*`` only around each test).
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import strategies as st

from memvault.filters import COLUMNS, MAX_FIELD_LENGTH
from tests.fuzz.hostile import CONTROL, JSON_PATH, NAMES, SQL, UNICODE

__all__ = [
    "INJECTION_KEY",
    "INJECTION_KEY_IN_AND",
    "fuzz_examples",
    "hostile_filters",
    "hostile_keys",
    "hostile_texts",
    "hostile_values",
]

_FUZZ = int(os.environ.get("MEMVAULT_FUZZ_EXAMPLES", "0") or 0)


def fuzz_examples(default: int) -> int:
    return max(default, _FUZZ)


# The key from the review: it closed the JSON path literal with char(34) and the coalesce(),
# then "OR 1" made the WHERE clause true for every row of every scope (with the "*" operator).
INJECTION_KEY = "' || char(34)) IN ('x'), 0) OR 1 OR coalesce(json_type('{}', '$.a"
# The same, for a filter that is one part of an AND (as a bound key's pinned user_id makes it):
# it also closes the AND's parenthesis, so the scope's WHERE clause is ORed away.
INJECTION_KEY_IN_AND = "' || char(34)) IN ('x'), 0)) OR 1 OR (coalesce(json_type('{}', '$.a"


def _encodable(piece: str) -> bool:
    """What a valid filter may hold: UTF-8 text without NUL (the rest is refused: see filters)."""
    try:
        piece.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in piece


# The pieces of tests/fuzz/hostile.py that a valid filter may hold, and the store's own SQL.
PIECES = [
    piece for piece in [*SQL, *JSON_PATH, *CONTROL, *UNICODE, *NAMES] if piece and _encodable(piece)
] + ["`", "\\", "[#-1]", "NULL", "mv_meta(m.scope_id, m.id, m.metadata_box)", "1"]

hostile_texts = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(max_size=4).filter(lambda t: "\x00" not in t)),
    min_size=1,
    max_size=8,
).map("".join)
long_texts = st.builds(
    lambda piece, n: (piece * (n // len(piece) + 1))[:n],
    st.sampled_from(["' OR 1=1 --", "char(34)", '"', "\u200b"]),
    st.integers(129, 4096),
)


def _usable_key(key: str) -> bool:
    return (
        0 < len(key) <= MAX_FIELD_LENGTH
        and key not in COLUMNS
        and key.upper() not in ("AND", "OR", "NOT")
        and not key.startswith("$")
    )


hostile_keys = st.one_of(
    st.sampled_from([INJECTION_KEY, INJECTION_KEY_IN_AND]), hostile_texts
).filter(_usable_key)
hostile_values: st.SearchStrategy[Any] = st.one_of(
    hostile_texts.filter(lambda t: t != "*"),
    long_texts,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
junk: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.just(float("nan")),
    st.just(2**70),
    st.just("\ud800"),
    st.just("a\x00b"),
    st.lists(hostile_values, max_size=2),
    st.dictionaries(hostile_texts, hostile_values, max_size=2),
)


@st.composite
def _condition(draw: st.DrawFn) -> dict[str, Any]:
    key = draw(
        st.one_of(hostile_keys, st.sampled_from(["user_id", "memory_type", "kind", "n"]), junk)
    )
    if not isinstance(key, str):
        key = str(key)
    op = draw(
        st.sampled_from(["bare", "eq", "ne", "gt", "lt", "in", "nin", "contains", "icontains", "*"])
    )
    if op == "*":
        return {key: "*"}
    some_value = st.one_of(hostile_values, hostile_values, junk)
    if op == "bare":
        return {key: draw(some_value)}
    if op in ("in", "nin"):
        value = draw(st.lists(some_value, min_size=1, max_size=4))
    else:
        value = draw(some_value)
    operator = draw(st.one_of(st.just(op), st.just(op), hostile_texts))
    return {key: {operator: value}}


hostile_filters: st.SearchStrategy[dict[str, Any]] = st.recursive(
    _condition(),
    lambda children: st.one_of(
        st.builds(lambda xs: {"AND": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"OR": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"NOT": xs}, st.lists(children, min_size=1, max_size=2)),
        st.builds(lambda a, b: {**a, **b}, children, children),
    ),
    max_leaves=6,
)
