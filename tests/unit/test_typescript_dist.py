"""The TypeScript client's committed build (clients/typescript/dist) is the build of its current
source, has no runtime dependency, and offers the Python ``Client``'s methods with the same
parameter names (positional ones in order, keyword-only ones as fields of its options object)."""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from pathlib import Path

from memvault.client import Client

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "typescript"
DTS = (CLIENT / "dist" / "index.d.ts").read_text(encoding="utf-8")

# Python-only: a TypeScript client has no connection pool to close (fetch owns the connections).
PYTHON_ONLY = {"close"}


def test_dist_was_built_from_the_current_source() -> None:
    source = (CLIENT / "src" / "index.ts").read_bytes()
    recorded = (CLIENT / "dist" / "SOURCE_SHA256").read_text(encoding="ascii").strip()
    assert recorded == hashlib.sha256(source).hexdigest(), (
        "clients/typescript/dist is stale: run `npm install && npm run build` in clients/typescript"
    )


def test_no_runtime_dependencies() -> None:
    package = json.loads((CLIENT / "package.json").read_text(encoding="utf-8"))
    assert not package.get("dependencies") and not package.get("peerDependencies")
    compiled = (CLIENT / "dist" / "index.js").read_text(encoding="utf-8")
    assert not re.search(r"^\s*import\b|\brequire\(", compiled, re.M), "index.js imports nothing"


def _methods() -> dict[str, list[tuple[str, str]]]:
    """MemvaultClient's public methods: name -> [(parameter, type)]."""
    found = re.search(r"export declare class MemvaultClient \{\n(.*?)\n\}", DTS, re.S)
    assert found is not None
    methods: dict[str, list[tuple[str, str]]] = {}
    for name, params in re.findall(r"^ {4}(\w+)\((.*)\): ", found.group(1), re.M):
        if name != "constructor":
            methods[name] = re.findall(r"(\w+)\??: ([^,]+?)(?:, |$)", params)
    return methods


def _fields(interface: str) -> set[str]:
    """The fields of an exported interface, those of the interfaces it extends included."""
    found = re.search(
        rf"export interface {interface} (?:extends (\w+) )?\{{\n(.*?)\n\}}", DTS, re.S
    )
    assert found is not None, interface
    own = set(re.findall(r"^ {4}(\w+)\??:", found.group(2), re.M))
    return own | (_fields(found.group(1)) if found.group(1) else set())


def test_the_methods_are_the_python_clients() -> None:
    python = {name for name in dir(Client) if not name.startswith("_")} - PYTHON_ONLY
    assert set(_methods()) == python


def test_each_method_takes_the_python_clients_parameters() -> None:
    for name, params in _methods().items():
        signature = inspect.signature(getattr(Client, name))
        kinds = inspect.Parameter
        positional = [
            p.name for p in signature.parameters.values() if p.kind is kinds.POSITIONAL_OR_KEYWORD
        ][1:]  # without self
        keywords = {p.name for p in signature.parameters.values() if p.kind is kinds.KEYWORD_ONLY}
        names = [param for param, _ in params]
        if keywords:
            assert names[-1] == "options", name
            options_type = params[-1][1]
            assert _fields(options_type) == keywords, name
            names = names[:-1]
        assert names == positional, name
