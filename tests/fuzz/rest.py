"""The REST surface as data: operations read from the app's OpenAPI document, requests built
with one hostile slot, and the invariants every answer must keep."""

from __future__ import annotations

import json
import os
import re
import reprlib
import tempfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from memvault.errors import MemvaultError
from tests.fuzz.conftest import Caller, Scenario
from tests.fuzz.hostile import dumps

ERROR_CODE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # path or query
    required: bool
    schema: dict[str, Any]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    params: tuple[Param, ...]
    body: dict[str, Any] | None  # the resolved JSON schema of the body, if any
    body_required: bool

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def destructive(self) -> bool:
        """Deletes or rewrites what its path names: its valid path values name nothing."""
        return self.method == "DELETE" or "rotate" in self.path

    @property
    def filter_slots(self) -> list[str]:
        return [s for s in self.slots() if s.rsplit(".", 1)[-1] == "filters"]

    def slots(self) -> list[str]:
        """Where a hostile value can go: each parameter, each body field (one level into arrays
        of objects), the whole body, and an unknown field."""
        found = [f"{p.where}:{p.name}" for p in self.params]
        if self.body is not None:
            for name, schema in self.body.get("properties", {}).items():
                found.append(f"body:{name}")
                item = schema.get("items") if schema.get("type") == "array" else None
                if item and item.get("properties"):
                    found.extend(f"body:{name}.0.{sub}" for sub in item["properties"])
            found += ["body", "body:<extra>"]
        found.append("query:<extra>")
        return found


def _resolve(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """Inline $refs (a few levels: enough to see fields and array items)."""
    if depth > 4:
        return schema
    if "$ref" in schema:
        return _resolve(components[schema["$ref"].rsplit("/", 1)[-1]], components, depth + 1)
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {
            k: _resolve(v, components, depth + 1) for k, v in out["properties"].items()
        }
    if "items" in out:
        out["items"] = _resolve(out["items"], components, depth + 1)
    if "anyOf" in out:
        options = [_resolve(o, components, depth + 1) for o in out["anyOf"]]
        out["anyOf"] = options
        for option in options:
            if option.get("type") == "array" and "items" not in out:
                out["items"], out["type"] = option.get("items"), "array"
    return out


def operations_of(openapi: dict[str, Any]) -> list[Operation]:
    components = openapi.get("components", {}).get("schemas", {})
    found = []
    for path, methods in openapi["paths"].items():
        for method, op in methods.items():
            params = tuple(
                Param(p["name"], p["in"], bool(p.get("required")), p.get("schema", {}))
                for p in op.get("parameters", [])
                if p["in"] in ("path", "query")
            )
            body_spec = op.get("requestBody")
            body = None
            if body_spec:
                schema = body_spec.get("content", {}).get("application/json", {}).get("schema")
                body = _resolve(schema or {}, components)
            found.append(
                Operation(
                    method.upper(),
                    path,
                    params,
                    body,
                    bool(body_spec and body_spec.get("required")),
                )
            )
    return found


def offline_operations() -> list[Operation]:
    """The operations of the app as built now, without a running server (for parametrizing)."""
    from memvault import HashEmbedder, Memory, Settings
    from memvault.server import create_app

    saved = {k: v for k, v in os.environ.items() if k.startswith("MEMVAULT_")}
    for name in saved:
        del os.environ[name]
    try:
        with tempfile.TemporaryDirectory() as home:
            settings = Settings.load(home=home, embedder="hash")
            with Memory(settings=settings, embedder=HashEmbedder()) as memory:
                return operations_of(create_app(settings, memory).openapi())
    finally:
        os.environ.update(saved)


# --- building a request ----------------------------------------------------------------------


def _valid_scalar(name: str, schema: dict[str, Any], caller: Caller, scenario: Scenario) -> Any:
    if name in ("memory_id", "id"):
        return scenario.scratch[caller.name]
    if name == "user_id":
        return caller.user_id or "carol"
    if name in ("page", "page_size", "limit", "top_k"):
        return 1
    kinds = {schema.get("type")} | {o.get("type") for o in schema.get("anyOf", [])}
    if "integer" in kinds or "number" in kinds:
        return 1
    if "boolean" in kinds:
        return False
    if schema.get("enum"):
        return schema["enum"][0]
    return "fuzz"


VALID_BODIES: dict[str, Any] = {
    # The smallest body that reaches the code behind each route; anything else comes from the
    # schema's required fields.
    "messages": "a fuzz note about green tea",
    "query": "green tea",
    "text": "updated scratch text",
    "role": "read",
    "name": "fuzz-ns",
}


def valid_body(op: Operation, caller: Caller, scenario: Scenario) -> Any:
    schema = op.body or {}
    body: dict[str, Any] = {}
    props = schema.get("properties", {})
    for name in props:
        if name in VALID_BODIES and (name in schema.get("required", []) or name == "text"):
            body[name] = VALID_BODIES[name]
    for name in schema.get("required", []):
        if name in body:
            continue
        prop = props.get(name, {})
        if prop.get("type") == "array" and prop.get("items", {}).get("properties"):
            item_schema = prop["items"]
            item = {
                k: VALID_BODIES.get(
                    k, _valid_scalar(k, item_schema["properties"][k], caller, scenario)
                )
                for k in item_schema.get("required", [])
            }
            body[name] = [item]
        else:
            body[name] = _valid_scalar(name, prop, caller, scenario)
    return body


@dataclass
class Built:
    method: str
    url: str
    content: bytes | None
    note: str


def _segment(value: Any) -> str:
    text = value if isinstance(value, str) else dumps(value)
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def build(op: Operation, caller: Caller, scenario: Scenario, slot: str, hostile: Any) -> Built:
    path_values: dict[str, Any] = {}
    query: list[tuple[str, Any]] = []
    for p in op.params:
        target = slot == f"{p.where}:{p.name}"
        if not (target or p.required):
            continue
        if target:
            value = hostile
        elif p.where == "path" and op.destructive:
            value = "nothing-here"
        else:
            value = _valid_scalar(p.name, p.schema, caller, scenario)
        if p.where == "path":
            path_values[p.name] = value
        else:
            query.append((p.name, value))
    if slot == "query:<extra>":
        name = hostile if isinstance(hostile, str) and len(hostile) <= 256 else "extra"
        query.append((name, hostile))
    path = op.path
    for name, value in path_values.items():
        path = path.replace("{" + name + "}", _segment(value))
    url = scenario.server.base_url + path
    if query:
        url += "?" + "&".join(f"{_segment(k)}={_segment(v)}" for k, v in query)
    content = None
    if op.body is not None:
        body: Any = valid_body(op, caller, scenario)
        if slot == "body":
            body = hostile
        elif slot == "body:<extra>":
            body[hostile if isinstance(hostile, str) else "extra"] = "x"
        elif slot.startswith("body:"):
            parts = slot[5:].split(".")
            if len(parts) == 1:
                body[parts[0]] = hostile
            else:
                items = body.get(parts[0])
                if not (isinstance(items, list) and items and isinstance(items[0], dict)):
                    # e.g. messages: a text by default, a list of {role, content} here
                    items = [{"content": "a fuzz note"}] if parts[0] == "messages" else [{}]
                    body[parts[0]] = items
                items[0][parts[2]] = hostile
        content = dumps(body).encode("utf-8", "surrogatepass")
    return Built(op.method, url, content, f"{op.id} slot={slot} value={short(hostile)}")


def short(value: Any) -> str:
    """A bounded repr (a 5,000-deep value would overflow ``repr``)."""
    shown = reprlib.Repr()
    shown.maxlevel, shown.maxstring, shown.maxother, shown.maxdict, shown.maxlist = (
        4,
        120,
        120,
        6,
        6,
    )
    return shown.repr(value)


# The server's body limit (Settings.max_body_bytes): past it, the server may answer 413 before
# reading the body and close the connection while the client is still sending.
MAX_BODY_BYTES = 1024 * 1024


def send(client: httpx.Client, built: Built) -> httpx.Response:
    headers = {"content-type": "application/json"} if built.content is not None else {}
    try:
        return client.request(built.method, built.url, content=built.content, headers=headers)
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        if built.content is None or len(built.content) <= MAX_BODY_BYTES:
            raise
        # Refused mid-upload: what the client could not read was the 413.
        body = {"error": {"code": "payload_too_large", "message": "connection closed"}}
        return httpx.Response(413, json=body)


# --- invariants ------------------------------------------------------------------------------

INTERNAL_CODES = {
    cls.code for cls in (MemvaultError, *MemvaultError.__subclasses__()) if cls.http_status >= 500
} | {"internal", "storage_error", "crypto_error", "integrity_error", "wrong_master_key"}


def check_answer(response: httpx.Response, forbidden: list[str], what: str) -> Any:
    """No 5xx; every error is {"error": {"code", "message"}}; no foreign canary anywhere."""
    status = response.status_code
    text = response.content.decode("utf-8", "replace")
    assert status < 500, f"{what}: HTTP {status} {text[:300]}"
    leaked = [marker for marker in forbidden if marker in text]
    assert not leaked, f"{what}: HTTP {status} leaked {leaked[:4]}"
    if status >= 400:
        try:
            body = json.loads(text)
        except ValueError:
            pytest.fail(f"{what}: HTTP {status} error body is not JSON: {text[:200]}")
        error = body.get("error") if isinstance(body, dict) else None
        assert isinstance(error, dict), (
            f"{what}: HTTP {status} without an error object: {text[:200]}"
        )
        assert isinstance(error.get("code"), str) and ERROR_CODE.match(error["code"]), (
            f"{what}: HTTP {status} error code {error.get('code')!r}"
        )
        assert error["code"] not in INTERNAL_CODES, f"{what}: internal code {error['code']}"
        assert isinstance(error.get("message"), str), f"{what}: error message missing"
    return status
