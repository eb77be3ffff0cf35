"""Every public method of ``Memory`` with a hostile value in each argument: it succeeds, or raises
a ``MemvaultError`` whose ``http_status`` is 4xx. Never another exception type (RecursionError,
UnicodeEncodeError, sqlite3.Error, KeyError, ...), never a 5xx error, never a foreign canary.
And nothing half-written: after a refused add or update, the store is exactly as before.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from memvault import Memory, MemvaultError
from tests.fuzz.conftest import SHARED_WORDS, Library
from tests.fuzz.hostile import (
    CLASSICS,
    EXAMPLES,
    fuzz_settings,
    hostile_filter,
    hostile_id,
    hostile_json,
    hostile_messages,
    hostile_metadata,
    hostile_scalar,
    hostile_text,
    materialize,
)
from tests.fuzz.rest import short

pytestmark = pytest.mark.fuzz

# Public methods not fuzzed here, and why. Every other public method is (a new one is picked up
# by test_every_public_method_is_fuzzed and fuzzed through its signature).
NOT_FUZZED = {
    "close": "lifecycle, no input",
    "reset": "erases the namespace by design, no input",
    "from_config": "opens another store from settings: the settings tests cover its input",
}
ADD_FIELDS = [
    "messages",
    "user_id",
    "agent_id",
    "run_id",
    "metadata",
    "memory_type",
    "expiration_date",
    "infer",
    "actor_id",
    "importance",
]


def public_methods() -> list[str]:
    return sorted(
        name
        for name, member in inspect.getmembers(Memory)
        if not name.startswith("_") and callable(member) and not isinstance(member, property)
    )


FUZZED = [name for name in public_methods() if name not in NOT_FUZZED]


def test_every_public_method_is_fuzzed() -> None:
    assert set(FUZZED) | set(NOT_FUZZED) == set(public_methods())
    assert {"add", "add_many", "search", "get", "get_all", "count", "update", "delete"} <= set(
        FUZZED
    )


def valid_argument(name: str, library: Library) -> Any:
    """A value that reaches the code behind the method's checks."""
    values: dict[str, Any] = {
        "messages": "a fuzz note about green tea",
        "items": [{"messages": "a fuzz note from a batch", "user_id": "alice"}],
        "query": SHARED_WORDS,
        "user_id": "alice",
        "memory_id": library.scratch,
        "job_id": "no-such-job",
        "text": "alice's scratch memory, updated",
        "namespace": "other",
        "url": "https://hooks.example.com/in",
        "delivery_id": "no-such-delivery",
    }
    return values.get(name, inspect.Parameter.empty)


def strategy_for(name: str) -> st.SearchStrategy[Any]:
    if name == "filters":
        return hostile_filter()
    if name == "metadata":
        return hostile_metadata()
    if name == "messages":
        return hostile_messages()
    if name in (
        "user_id",
        "agent_id",
        "run_id",
        "actor_id",
        "memory_id",
        "namespace",
        "job_id",
        "delivery_id",
    ):
        return st.one_of(hostile_id(), hostile_scalar())
    if name in ("query", "text", "data", "url"):
        return st.one_of(hostile_text(), hostile_scalar())
    if name == "items":
        return st.one_of(
            hostile_json(),
            st.lists(st.dictionaries(st.sampled_from(ADD_FIELDS), hostile_json()), max_size=3),
        )
    return st.one_of(hostile_scalar(), hostile_json())


# Calls that need more than their signature: a scope for reads, text or metadata for update.
EXTRA: dict[str, dict[str, Any]] = {
    "search": {"user_id": "alice"},
    "get_all": {"user_id": "alice"},
    "count": {"user_id": "alice"},
    "add": {"user_id": "alice"},
    "delete_all": {"run_id": "no-such-run"},
}


def call_with(method: Callable[..., Any], name: str, kwargs: dict[str, Any]) -> Any:
    result = method(**kwargs)
    if inspect.isgenerator(result) or name == "export_user":
        result = list(result)
    return result


def check_outcome(run: Callable[[], Any], what: str, forbidden: list[str]) -> Any:
    try:
        result = run()
    except MemvaultError as exc:
        assert exc.http_status < 500, (
            f"{what}: {type(exc).__name__} [{exc.code}] {exc.message[:300]}"
        )
        return exc
    except Exception as exc:
        raise AssertionError(f"{what}: {type(exc).__name__} is not a MemvaultError") from exc
    if not isinstance(result, Memory):
        text = repr(result)
        leaked = [marker for marker in forbidden if marker in text]
        assert not leaked, f"{what}: leaked {leaked[:4]}"
    return result


@pytest.mark.parametrize("method_name", FUZZED)
def test_every_method_survives_hostile_arguments(library: Library, method_name: str) -> None:
    method = getattr(library.memory, method_name)
    params = [
        p
        for p in inspect.signature(method).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if not params:
        # Nothing to make hostile: it must still answer, after the canaries are in.
        check_outcome(lambda: call_with(method, method_name, {}), method_name, [])
        return
    forbidden = library.forbidden_for_alice()

    @fuzz_settings(max(3, EXAMPLES // 2))
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        for target in params:
            kwargs = base_kwargs(method_name, params, library)
            kwargs[target.name] = data.draw(strategy_for(target.name), label=target.name)
            if method_name in ("erase_user", "rotate_user_key", "delete") and (
                kwargs.get(target.name) in ("alice", library.scratch)
            ):
                continue
            check_outcome(
                lambda kwargs=kwargs: call_with(method, method_name, materialize(kwargs)),
                f"{method_name}({target.name}={short(kwargs[target.name])})",
                forbidden if method_name != "namespaced" else [],
            )

    check()
    gone = [
        c.name
        for c in library.canaries
        if library.memory.namespaced(c.namespace).get(c.id) is None
        and not (c.namespace == "default" and c.scope.get("user_id") == "alice")
    ]
    assert not gone, f"{method_name} deleted another scope's canaries: {gone}"


@pytest.mark.parametrize("method_name", FUZZED)
def test_every_method_survives_the_classics(library: Library, method_name: str) -> None:
    """Each argument of each method with one value of each hostile class, deterministically."""
    method = getattr(library.memory, method_name)
    params = [
        p
        for p in inspect.signature(method).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    failures = []
    for target in params:
        for hostile in CLASSICS:
            kwargs = base_kwargs(method_name, params, library)
            kwargs[target.name] = hostile
            try:
                check_outcome(
                    lambda kwargs=kwargs: call_with(method, method_name, materialize(kwargs)),
                    f"{method_name}({target.name}={short(hostile)})",
                    library.forbidden_for_alice() if method_name != "namespaced" else [],
                )
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)


def base_kwargs(
    method_name: str, params: list[inspect.Parameter], library: Library
) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(EXTRA.get(method_name, {}))
    for p in params:
        value = valid_argument(p.name, library)
        if p.default is inspect.Parameter.empty and value is not inspect.Parameter.empty:
            kwargs[p.name] = value
    if method_name == "update":
        kwargs["text"] = valid_argument("text", library)
    return kwargs


@fuzz_settings(max(3, EXAMPLES // 2))
@given(
    field=st.sampled_from(ADD_FIELDS),
    data=st.data(),
)
def test_add_many_items_one_hostile_field(
    library: Library, field: str, data: st.DataObject
) -> None:
    """Inside add_many's items: one hostile field in the last item of three."""
    value = data.draw(strategy_for(field), label=field)
    items = [
        {"messages": "first valid item", "user_id": "alice"},
        {"messages": "second valid item", "user_id": "alice"},
        {"messages": "third item", "user_id": "alice", field: materialize(value)},
    ]
    check_outcome(
        lambda: library.memory.add_many(items),
        f"add_many(items[2].{field}={short(value)})",
        library.forbidden_for_alice(),
    )


# --- nothing half-written --------------------------------------------------------------------


def _writes(library: Library) -> dict[str, Callable[[Any], Any]]:
    m, scratch = library.memory, library.scratch
    return {
        "add metadata": lambda v: m.add("a new note", user_id="alice", metadata=v),
        "add messages": lambda v: m.add(v, user_id="alice"),
        "add_many last item": lambda v: m.add_many(
            [
                {"messages": "valid one", "user_id": "alice"},
                {"messages": "valid two", "user_id": "bob"},
                {"messages": "invalid", "user_id": "alice", "metadata": v},
            ]
        ),
        "add_many last messages": lambda v: m.add_many(
            [{"messages": "valid one", "user_id": "alice"}, {"messages": v, "user_id": "alice"}]
        ),
        "update metadata": lambda v: m.update(scratch, "new text for scratch", metadata=v),
        "update text": lambda v: m.update(scratch, v, metadata={"kept": False}),
        "other namespace add": lambda v: m.namespaced("other").add(
            "note", user_id="carol", metadata=v
        ),
    }


@pytest.mark.parametrize(
    "write",
    [
        "add metadata",
        "add messages",
        "add_many last item",
        "add_many last messages",
        "update metadata",
        "update text",
        "other namespace add",
    ],
)
def test_refused_writes_leave_nothing_behind(library: Library, write: str) -> None:
    call = _writes(library)[write]
    strategy = (
        hostile_messages() if "messages" in write or write == "update text" else hostile_metadata()
    )

    @fuzz_settings(max(3, EXAMPLES // 2))
    @given(value=strategy)
    def check(value: Any) -> None:
        before = library.snapshot()
        try:
            call(materialize(value))
        except MemvaultError as exc:
            after = library.snapshot()
            assert after == before, f"{write}({short(value)}) raised [{exc.code}] but wrote"
            assert exc.http_status < 500, (
                f"{write}({short(value)}): [{exc.code}] {exc.message[:200]}"
            )
        except Exception as exc:
            after = library.snapshot()
            assert after == before, f"{write}({short(value)}) raised {type(exc).__name__} and wrote"
            raise AssertionError(f"{write}({short(value)}): {type(exc).__name__}") from exc

    check()


@fuzz_settings(max(6, EXAMPLES))
@given(ttl=hostile_scalar())
@example(ttl=math.inf)
@example(ttl=1e308)
@example(ttl=math.nan)
def test_namespace_rules_never_poison_later_writes(library: Library, ttl: Any) -> None:
    """A TTL that configure_namespace accepts must leave adds working (or refused with a 4xx):
    an accepted TTL that later breaks every add would be a denial of service by one call."""
    other = library.memory.namespaced("other")
    check_outcome(lambda: other.configure_namespace(default_ttl_seconds=ttl), "configure", [])
    check_outcome(
        lambda: other.add(f"a note after ttl {ttl!r}", user_id="carol"),
        f"add after configure_namespace(default_ttl_seconds={ttl!r})",
        [],
    )
    other.configure_namespace(default_ttl_seconds=None)
