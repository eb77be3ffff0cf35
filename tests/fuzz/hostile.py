"""Hypothesis strategies of hostile values, shared by every generated security test.

Everything a caller can hand to memvault (texts, ids, numbers, JSON documents, mem0 filters) drawn
from what breaks parsers and query builders: SQL quoting and comments, JSON path syntax, NUL and
control characters, lone surrogates, bidi and zero-width characters, huge and deeply nested
documents, numbers past 64 bits, NaN and infinities, filters with thousands of conditions.

Deep documents are built without recursion and serialized with :func:`dumps`, which (unlike
``json.dumps``) writes any depth and keeps NaN/Infinity and lone surrogates (as ``\\ud800``
escapes), so the server, not the test client, is what meets them.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

__all__ = [
    "CLASSICS",
    "EXPLOIT_FILTERS",
    "FILTER_OPERATORS",
    "HOSTILE_NUMBERS",
    "HOSTILE_STRINGS",
    "LARGE_FILTERS",
    "Big",
    "deep",
    "dumps",
    "fuzz_settings",
    "hostile_filter",
    "hostile_id",
    "hostile_json",
    "hostile_key",
    "hostile_messages",
    "hostile_metadata",
    "hostile_number",
    "hostile_query_value",
    "hostile_scalar",
    "hostile_text",
    "materialize",
]

# Read at import: the autouse ``hermetic`` fixture removes every MEMVAULT_* variable from the
# environment before each test runs.
EXAMPLES = int(os.environ.get("MEMVAULT_FUZZ_EXAMPLES", "12"))
# Shrinking a 5,000-condition filter can take minutes per failing test: CI reports the failing
# example as found (each assertion names the route, slot and value); MEMVAULT_FUZZ_SHRINK=1
# (set by ``make fuzz``) shrinks it to a minimal one.
SHRINK = os.environ.get("MEMVAULT_FUZZ_SHRINK") == "1"


def fuzz_settings(examples: int | None = None) -> settings:
    """Bounded in CI (the derandomized "ci" profile of tests/conftest.py), large with
    ``make fuzz`` (MEMVAULT_FUZZ_EXAMPLES=2000, the "explore" profile)."""
    return settings(
        max_examples=examples if examples is not None else EXAMPLES,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
        phases=tuple(Phase) if SHRINK else tuple(p for p in Phase if p is not Phase.shrink),
    )


# --- the building blocks ---------------------------------------------------------------------

SQL = [
    "'",
    '"',
    "''",
    "--",
    "/*",
    "*/",
    ";",
    "||",
    "(",
    ")",
    "()",
    "char(34)",
    "' OR 1=1 --",
    '" OR 1=1 --',
    "x' OR 1 OR '",
    "x') OR 1 OR ('",
    "a\"') OR 1=1 --",
    "'||char(34)||'",
    "1; DROP TABLE memories; --",
    "' UNION SELECT * FROM memories --",
    "%",
    "_",
    "?",
    ":name",
    "@p",
    "$1",
]
JSON_PATH = ["$", ".", "[", "]", "*", "$.a", "$[0]", "$.*", "a.b", "a[0]", "$..x", '$."x"', "#"]
CONTROL = ["\x00", "a\x00b", "\x01", "\x07", "\x08", "\t", "\n", "\r", "\x1b[31m", "\x7f", "\x85"]
UNICODE = [
    "\ud800",
    "\udfff",
    "a\ud800b",
    "\udc00\ud800",
    "\u200b",
    "\u200d",
    "\u202e",
    "\u2066",
    "\ufeff",
    "\ufffe",
    "\uffff",
    "\uff21\uff24\uff2d\uff29\uff2e"  # fullwidth ADMIN,
    "\uff55\uff53\uff45\uff52\uff3f\uff49\uff44"  # fullwidth user_id,
    "e\u0301",
    "a" + "\u0300" * 64,
    "\U0001f600",
    "\U0010ffff",
    "İ",
    "ß",
    "\u0130\u0131",
]
NAMES = [
    "",
    " ",
    "AND",
    "OR",
    "NOT",
    "and",
    "$or",
    "$and",
    "user_id",
    "agent_id",
    "run_id",
    "namespace",
    "id",
    "metadata",
    "memory",
    "scope_id",
    "rowid",
    "text_box",
    "metadata_box",
    "eq",
    "in",
    "contains",
    "null",
    "None",
    "true",
    "NaN",
    "Infinity",
    "..",
    "../..",
    "/",
    "\\",
    "\\\\",
    "%00",
    "%2e%2e",
    "default",
    "other",
    "_system/api-keys",
    "user:x",
]
HOSTILE_STRINGS: list[str] = SQL + JSON_PATH + CONTROL + UNICODE + NAMES
LONG_SIZES = [128, 129, 4096, 16 * 1024 + 1, 32 * 1024, 32 * 1024 + 1, 64 * 1024]

HOSTILE_NUMBERS: list[Any] = [
    0,
    -1,
    -0.0,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64,
    10**30,
    -(10**400),
    1e308,
    -1e308,
    1.7976931348623157e308,
    5e-324,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
]

FILTER_OPERATORS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "icontains"]
DEPTHS = [50, 900, 5000]
WIDTHS = [1000, 1001, 5000]


class Big:
    """A deep or wide value behind a short repr: Hypothesis prints its draws with a recursive
    pretty-printer that a 5,000-deep document would overflow. :func:`materialize` (and
    :func:`dumps`) turn it into the real value at the moment of the call."""

    __slots__ = ("_build", "_label", "_value")

    def __init__(self, label: str, build: Any) -> None:
        self._label = label
        self._build = build
        self._value: Any = None

    @property
    def value(self) -> Any:
        if self._value is None:
            self._value = self._build()
        return self._value

    def __repr__(self) -> str:
        return self._label


def materialize(value: Any) -> Any:
    """``value`` with every :class:`Big` inside replaced by what it stands for."""
    if isinstance(value, Big):
        return value.value
    if isinstance(value, dict):
        return {key: materialize(child) for key, child in value.items()}
    if isinstance(value, list):
        return [materialize(child) for child in value]
    return value


def deep(depth: int, kind: str = "list", leaf: Any = 1, key: str = "a") -> Any:
    """A value nested ``depth`` levels deep, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {key: value}
    return value


def dumps(value: Any) -> str:
    """JSON text of ``value`` at any depth; NaN/Infinity as Python writes them; lone surrogates
    as ``\\udXXX`` escapes (valid JSON that decodes to an unpaired surrogate)."""
    out: list[str] = []
    stack: list[Any] = [value]
    raw = _Raw
    while stack:
        item = stack.pop()
        if isinstance(item, raw):
            out.append(item.text)
        elif isinstance(item, Big):
            stack.append(item.value)
        elif isinstance(item, dict):
            parts: list[Any] = [raw("{")]
            for index, (key, child) in enumerate(item.items()):
                if index:
                    parts.append(raw(","))
                parts.append(raw(json.dumps(str(key)) + ":"))
                parts.append(child)
            parts.append(raw("}"))
            stack.extend(reversed(parts))
        elif isinstance(item, list | tuple):
            parts = [raw("[")]
            for index, child in enumerate(item):
                if index:
                    parts.append(raw(","))
                parts.append(child)
            parts.append(raw("]"))
            stack.extend(reversed(parts))
        else:
            out.append(json.dumps(item))
    return "".join(out)


class _Raw:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


# --- strategies ------------------------------------------------------------------------------

_alphabet = st.sampled_from(
    [
        *list("'\"-/*;|()$.[]\\%_ aZ0="),
        "\x00",
        "\x01",
        "\x07",
        "\x1b",
        "\ud800",
        "\udfff",
        "\u202e",
        "\u200b",
        "\uff21",
    ]
)


@st.composite
def _long(draw: st.DrawFn) -> str:
    size = draw(st.sampled_from(LONG_SIZES))
    unit = draw(st.sampled_from(["x", "'", "é", "\u202e", "a'\"--", "\U0001f600"]))
    return (unit * (size // len(unit) + 1))[:size]


def hostile_text() -> st.SearchStrategy[str]:
    """Any hostile string: the fixed corpus, combinations of it, random hostile characters,
    very long strings, and Hypothesis's own unicode (surrogates included)."""
    fixed = st.sampled_from(HOSTILE_STRINGS)
    return st.one_of(
        fixed,
        st.lists(fixed, min_size=2, max_size=4).map("".join),
        st.text(_alphabet, min_size=1, max_size=40),
        _long(),
        st.text(st.characters(exclude_categories=()), min_size=1, max_size=20),
    )


def hostile_id() -> st.SearchStrategy[str]:
    """Hostile strings for ids, path segments and query values: as :func:`hostile_text`, at
    most 1,000 characters: quoted, that stays under the 16 KiB request head uvicorn (h11) reads,
    past which the HTTP server itself, not memvault, drops the connection."""
    return hostile_text().map(lambda text: text[:1000])


def hostile_key() -> st.SearchStrategy[str]:
    """Object keys and filter field names."""
    return st.one_of(st.sampled_from(SQL + JSON_PATH + NAMES + UNICODE + CONTROL), hostile_text())


def hostile_number() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(HOSTILE_NUMBERS), st.integers(), st.floats(allow_nan=True), st.booleans()
    )


def hostile_scalar() -> st.SearchStrategy[Any]:
    return st.one_of(hostile_text(), hostile_number(), st.none())


@st.composite
def _deep_value(draw: st.DrawFn) -> Any:
    depth = draw(st.sampled_from(DEPTHS))
    kind = draw(st.sampled_from(["list", "dict"]))
    key = draw(st.sampled_from(["a", "'", "AND", "$"]))
    leaf = draw(st.sampled_from([1, "x", None, "\ud800"]))
    return Big(
        f"deep({depth}, {kind!r}, leaf={leaf!r}, key={key!r})",
        lambda: deep(depth, kind, leaf, key),
    )


@st.composite
def _wide_value(draw: st.DrawFn) -> Any:
    width = draw(st.sampled_from(WIDTHS))
    kind = draw(st.sampled_from(["list", "dict"]))
    if kind == "list":
        return Big(f'["x"] * {width}', lambda: ["x"] * width)
    return Big(
        f'{{"k<i>\'": i for i in range({width})}}', lambda: {f"k{i}'": i for i in range(width)}
    )


def hostile_json() -> st.SearchStrategy[Any]:
    """Any JSON-ish value: hostile scalars, small hostile containers, deep and wide ones."""
    small = st.recursive(
        hostile_scalar(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(hostile_key(), inner, max_size=4)
        ),
        max_leaves=8,
    )
    return st.one_of(small, _deep_value(), _wide_value())


def hostile_metadata() -> st.SearchStrategy[Any]:
    """Metadata: objects with hostile keys and values, deep or wide ones, or no object at all."""
    return st.one_of(
        st.dictionaries(hostile_key(), hostile_json(), min_size=1, max_size=4),
        _deep_value().map(lambda v: {"a": v}),
        _wide_value().map(lambda v: {"wide": v}),
        hostile_json(),
    )


def hostile_messages() -> st.SearchStrategy[Any]:
    """mem0's ``messages``: hostile texts, message lists with hostile content, or neither."""
    message = st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "assistant", "system", "tool"]),
            "content": hostile_text(),
        }
    )
    return st.one_of(
        hostile_text(),
        st.lists(message, min_size=1, max_size=3),
        st.lists(
            st.fixed_dictionaries({"content": st.just("fine"), "name": hostile_text()}),
            min_size=1,
            max_size=1,
        ),
        hostile_json(),
    )


# --- filters ---------------------------------------------------------------------------------

_FIELDS = ["topic", "n", "tags", "marker", "flag", "user_id", "agent_id", "created_at", "id"]
_filter_value = st.one_of(hostile_scalar(), st.sampled_from(["*", "shared", 7, "alice"]))


@st.composite
def _field_filter(draw: st.DrawFn) -> dict[str, Any]:
    field = draw(st.one_of(hostile_key(), st.sampled_from(_FIELDS)))
    form = draw(st.sampled_from(["eq", "op", "ops"]))
    if form == "eq":
        return {field: draw(_filter_value)}
    op = draw(st.one_of(st.sampled_from(FILTER_OPERATORS), hostile_key()))
    if form == "op":
        return {field: {op: draw(st.one_of(_filter_value, hostile_json()))}}
    return {field: draw(st.dictionaries(hostile_key(), _filter_value, min_size=1, max_size=3))}


@st.composite
def _wide_filter(draw: st.DrawFn) -> dict[str, Any]:
    width = draw(st.sampled_from(WIDTHS))
    logic = draw(st.sampled_from(["OR", "AND", "NOT"]))
    field = draw(st.sampled_from(["topic", "x'", "n", "user_id"]))
    return {
        logic: Big(
            f"[{{{field!r}: 'v<i>'}} for i in range({width})]",
            lambda: [{field: f"v{i}"} for i in range(width)],
        )
    }


@st.composite
def _in_filter(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["in", "nin"]))
    size = draw(st.sampled_from([1000, 1001, 5000]))
    field = draw(st.sampled_from(["topic", "user_id", "a'b"]))
    return {
        field: {op: Big(f"['v<i>' for i in range({size})]", lambda: [f"v{i}" for i in range(size)])}
    }


@st.composite
def _deep_filter(draw: st.DrawFn) -> dict[str, Any]:
    depth = draw(st.sampled_from([17, *DEPTHS]))
    logic = draw(st.sampled_from(["AND", "OR", "NOT"]))

    def build() -> dict[str, Any]:
        node: dict[str, Any] = {"topic": "shared"}
        for _ in range(depth):
            node = {logic: [node]}
        return node

    return Big(f"{logic} nested {depth} deep around {{'topic': 'shared'}}", build)


def hostile_filter() -> st.SearchStrategy[Any]:
    """mem0 filters that attack the filter compiler, plus values that are not filters at all."""
    condition = _field_filter()
    return st.one_of(
        condition,
        st.sampled_from(EXPLOIT_FILTERS),
        st.builds(
            lambda logic, parts: {logic: parts},
            st.sampled_from(["AND", "OR", "NOT", "and", "$or"]),
            st.lists(condition, min_size=1, max_size=3),
        ),
        st.dictionaries(hostile_key(), _filter_value, min_size=1, max_size=3),
        _wide_filter(),
        _in_filter(),
        _deep_filter(),
        hostile_json(),
    )


def hostile_query_value() -> st.SearchStrategy[str]:
    """Query-string values, numbers included as text."""
    numbers = st.sampled_from(
        ["-1", "0", "1e308", "NaN", "inf", "9" * 30, "0x10", "1.5", " 1", "1 ", "+1", "\u0661"]
    )
    return st.one_of(numbers, hostile_id())


# A few values of each class, tried on every slot before the generated ones: CI meets each
# class every run, whatever the derandomized draws are.
CLASSICS: list[Any] = [
    "\ud800",
    "a\x00b",
    "x' OR 1 OR '",
    "\u202e\u200b\uff21",
    Big("deep(5000, 'dict')", lambda: deep(5000, "dict")),
    Big("deep(900, 'list')", lambda: deep(900, "list")),
    # An object (so it passes "metadata must be an object") that JSON can still parse, nested
    # deeper than the encoder's recursion allows inside a worker thread.
    Big("{'a': deep(950, 'dict')}", lambda: {"a": deep(950, "dict")}),
    2**63,
    math.nan,
]


def _nested(logic: str, depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"topic": "shared"}
    for _ in range(depth):
        node = {logic: [node]}
    return node


# Filters the review found answering 5xx by their size: named, so CI meets each one every run.
LARGE_FILTERS: dict[str, Any] = {
    "OR of 1,000": Big("OR 1000", lambda: {"OR": [{"topic": f"v{i}"} for i in range(1000)]}),
    "OR of 5,000": Big("OR 5000", lambda: {"OR": [{"topic": f"v{i}"} for i in range(5000)]}),
    "AND of 5,000": Big("AND 5000", lambda: {"AND": [{"n": {"gte": i}} for i in range(5000)]}),
    "NOT of 5,000": Big("NOT 5000", lambda: {"NOT": [{"topic": f"v{i}"} for i in range(5000)]}),
    "in of 1,000": Big("in 1000", lambda: {"topic": {"in": [f"v{i}" for i in range(1000)]}}),
    "nin of 1,000": Big("nin 1000", lambda: {"topic": {"nin": [f"v{i}" for i in range(1000)]}}),
    "in of 1,001": Big("in 1001", lambda: {"topic": {"in": [f"v{i}" for i in range(1001)]}}),
    "5,000 keys": Big("5000 keys", lambda: {f"k{i}": "v" for i in range(5000)}),
    "AND nested 17": Big("AND nested 17", lambda: _nested("AND", 17)),
    "OR nested 900": Big("OR nested 900", lambda: _nested("OR", 900)),
    "NOT nested 5,000": Big("NOT nested 5000", lambda: _nested("NOT", 5000)),
}


# --- the concrete exploit of the review --------------------------------------------------------

# A filter key is spliced into a JSON path literal '$."<key>"' in SQL. A quote ends the literal;
# char(34) puts back the double quote the parser refuses, and the rest rewrites the WHERE clause.
# The third and fourth keys are working exploits on the unfixed code (the fourth for calls where
# the caller's user_id is pinned into the filter, as the server does for a user-bound key).
EXPLOIT_KEYS = [
    "x' OR 1 OR '",
    "a\"') OR 1=1 --",
    "x'||char(34)), 0) OR 1 OR coalesce(trim('",
    "x'||char(34)), 0)) OR 1 OR (coalesce(trim('",
    "x'||char(34)||'",
    "') OR 1=1 --",
    "x')) OR 1=1 OR (('",
]
EXPLOIT_FILTERS: list[dict[str, Any]] = [
    *({key: "y"} for key in EXPLOIT_KEYS[:2]),
    {"a\"') OR 1=1 --": 1},
    *({key: "*"} for key in EXPLOIT_KEYS[2:]),
    *({key: {"contains": "a"}} for key in EXPLOIT_KEYS),
    {"OR": [{"topic": "nothing"}, {EXPLOIT_KEYS[3]: "*"}]},
    {"NOT": [{EXPLOIT_KEYS[2]: "*"}]},
]
