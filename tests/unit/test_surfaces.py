"""``Memory``, ``AsyncMemory``, ``Client`` and ``AsyncClient`` are one API: the same method names
and parameters (names, kinds, defaults, annotations), what a surface leaves out declared in
``memvault.surface`` with its reason. A public method added to ``Memory`` alone fails here."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, get_args, get_origin

import pytest

from memvault import AsyncClient, AsyncMemory, Client, Memory
from memvault.surface import ASYNC_ONLY, ATTRIBUTES, LOCAL_ONLY, NOT_AWAITED


def public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    """Public functions, class and static methods of ``cls`` (and its bases), by name."""
    found = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        static = inspect.getattr_static(cls, name)
        if isinstance(static, classmethod | staticmethod) or inspect.isfunction(static):
            found[name] = getattr(cls, name)
    return found


def public_properties(cls: type) -> set[str]:
    return {
        name
        for name in dir(cls)
        if not name.startswith("_") and isinstance(inspect.getattr_static(cls, name), property)
    }


def parameters(method: Callable[..., Any]) -> list[tuple[str, Any, Any, Any]]:
    """(name, kind, default, annotation) of each parameter but ``self`` (a class method is
    bound: its ``cls`` is already gone)."""
    signature = inspect.signature(method, eval_str=True)
    params = list(signature.parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.kind, p.default, p.annotation) for p in params]


def returns(method: Callable[..., Any], *, awaited: bool, surface: type = Memory) -> Any:
    """The return annotation, the surface's own class read as ``Memory`` (``namespaced``), an
    async surface's ``AsyncIterator[X]`` as ``Iterator[X]`` (``export_user``: awaited, then
    iterated with ``async for``)."""
    annotation = inspect.signature(method, eval_str=True).return_annotation
    if annotation is surface:
        return Memory
    if awaited and get_origin(annotation) is AsyncIterator:
        return Iterator[get_args(annotation)]  # type: ignore[misc]
    return annotation


def mismatches(reference: type, surface: type, left_out: set[str], *, awaited: bool) -> list[str]:
    """Every way ``surface`` differs from ``reference``'s public methods (but ``left_out``)."""
    wanted = {n: m for n, m in public_methods(reference).items() if n not in left_out}
    have = public_methods(surface)
    problems = [f"{surface.__name__} lacks {name}" for name in sorted(set(wanted) - set(have))]
    extra = set(have) - set(wanted) - (set(ASYNC_ONLY) if surface is AsyncMemory else set())
    problems += [f"{surface.__name__}.{name} is not Memory's" for name in sorted(extra)]
    for name in sorted(set(wanted) & set(have)):
        if parameters(wanted[name]) != parameters(have[name]):
            problems.append(
                f"{surface.__name__}.{name}{inspect.signature(have[name])} differs from"
                f" Memory.{name}{inspect.signature(wanted[name])}"
            )
        if returns(wanted[name], awaited=False) != returns(
            have[name], awaited=awaited, surface=surface
        ):
            problems.append(f"{surface.__name__}.{name} returns another type than Memory's")
    return problems


def test_memory_properties_are_declared() -> None:
    assert public_properties(Memory) == set(ATTRIBUTES)


def test_the_exclusion_lists_name_real_methods() -> None:
    memory = public_methods(Memory)
    assert set(LOCAL_ONLY) <= set(memory)
    assert set(NOT_AWAITED) <= set(public_methods(AsyncMemory))
    assert not set(ASYNC_ONLY) & set(memory)
    assert all(reason.strip() for reason in (*LOCAL_ONLY.values(), *ATTRIBUTES.values()))


def test_async_memory_has_every_method_of_memory() -> None:
    assert mismatches(Memory, AsyncMemory, set(), awaited=True) == []


@pytest.mark.parametrize("client", [Client, AsyncClient])
def test_clients_have_every_method_the_rest_api_offers(client: type) -> None:
    assert mismatches(Memory, client, set(LOCAL_ONLY), awaited=client is AsyncClient) == []


def test_clients_leave_out_exactly_the_local_only_methods() -> None:
    for client in (Client, AsyncClient):
        assert set(public_methods(Memory)) - set(public_methods(client)) == set(LOCAL_ONLY)


@pytest.mark.parametrize("surface", [AsyncMemory, AsyncClient])
def test_async_surfaces_are_awaited(surface: type) -> None:
    for name, method in public_methods(surface).items():
        if name in NOT_AWAITED:
            assert not inspect.iscoroutinefunction(method), name
        else:
            assert inspect.iscoroutinefunction(method), f"{surface.__name__}.{name} is not async"


def test_generated_async_methods_run_the_memory_method_of_their_name() -> None:
    for name, method in public_methods(AsyncMemory).items():
        wrapped = getattr(method, "__wrapped__", None)
        assert wrapped is None or wrapped is getattr(Memory, name), name


def test_a_method_added_to_memory_alone_is_found() -> None:
    class Grown(Memory):
        def forget_everything(self, *, user_id: str) -> int:
            return 0

        def count(  # the same name with another parameter
            self,
            *,
            user_id: str | None = None,
            agent_id: str | None = None,
            run_id: str | None = None,
            filters: Any = None,
            at_least: int = 0,
        ) -> int:
            return 0

    for surface, awaited in ((AsyncMemory, True), (Client, False), (AsyncClient, True)):
        found = mismatches(Grown, surface, set(LOCAL_ONLY), awaited=awaited)
        assert any("lacks forget_everything" in problem for problem in found), found
        assert any(f"{surface.__name__}.count(" in problem for problem in found), found
