"""Fakes shipped with memvault, so you can test your own code against it without mocks.

- ``HashEmbedder``: deterministic vectors from words, no model, instant.
- ``FakeOpenAIServer``: a real HTTP server on 127.0.0.1 speaking the OpenAI ``/v1/embeddings``
  protocol (vectors from ``HashEmbedder``), recording requests and failing on demand.
- ``ScriptedChatServer``: ``/v1/chat/completions`` on 127.0.0.1 answering from a script (texts
  or ``Reply`` objects: a status, headers such as ``Retry-After``, a delay), recording every
  request: test ``add(infer=True)`` and your own LLM code without a model.

    with FakeOpenAIServer() as server:
        m = Memory(embedder="openai", openai_base_url=server.base_url, openai_model="fake")

    fact = '{"facts": [{"text": "Alice likes tea", "type": "semantic"}]}'
    with ScriptedChatServer([fact]) as llm:
        m = Memory(embedder="hash", llm_base_url=llm.base_url, llm_model="scripted")
        m.add("I like tea", user_id="alice", infer=True)
        llm.requests[0]["body"]["messages"]  # what the model was sent
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from memvault.embedding.hashing import HashEmbedder

__all__ = ["FakeOpenAIServer", "HashEmbedder", "Reply", "ScriptedChatServer"]


class _LoopbackServer:
    """An HTTP server on a free loopback port, run in a thread while used as a context manager;
    subclasses give the request handler (``_handler``)."""

    def _listen(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise TypeError(f"{type(self).__name__} must define _handler")

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeOpenAIServer(_LoopbackServer):
    """``/v1/embeddings`` on a free loopback port; ``fail_with`` makes the next answers fail,
    ``delay`` makes each answer wait that many seconds first (longer than a client's timeout:
    a timeout)."""

    def __init__(self, dimensions: int = 64, api_key: str | None = None) -> None:
        self.embedder = HashEmbedder(dimensions)
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        self.delay = 0.0
        self.respond: Callable[[dict[str, Any]], Any] | None = None
        self._listen()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: Any) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(
                    {"path": self.path, "body": body, "headers": dict(self.headers)}
                )
                if fake.delay:
                    time.sleep(fake.delay)
                if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self._send(401, {"error": {"message": "bad key"}})
                elif self.path != "/v1/embeddings":
                    self._send(404, {"error": {"message": "not found"}})
                elif fake.fail_with is not None:
                    self._send(fake.fail_with, {"error": {"message": "scripted failure"}})
                elif fake.respond is not None:
                    self._send(200, fake.respond(body))
                else:
                    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    vectors = fake.embedder.embed_batch(texts)
                    data = [
                        {"object": "embedding", "index": i, "embedding": v.tolist()}
                        for i, v in reversed(list(enumerate(vectors)))  # any order is legal
                    ]
                    self._send(200, {"object": "list", "data": data, "model": body["model"]})

        return Handler


@dataclass
class Reply:
    """One scripted answer: ``content`` as the assistant's message (status 200), or another
    ``status`` (429, 500, ...) with ``headers`` (``{"Retry-After": "1"}``); ``delay`` seconds
    before answering (longer than the client's timeout: a timeout); ``body`` replaces the whole
    JSON body (a malformed completion)."""

    content: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: Any = None


Answer = str | Reply


class ScriptedChatServer(_LoopbackServer):
    """OpenAI-compatible ``/v1/chat/completions`` on a free loopback port, answering from a
    script, first in first out (``push`` adds more). With the script empty it answers
    ``default`` (a text, a ``Reply``, or a function of the request body returning one), or 500.

    ``refuse_response_format``: ``response_format`` types (``json_schema``, ``json_object``)
    answered with 400 without using the script, like servers that do not support them.
    ``requests`` records every request: path, JSON body and headers."""

    def __init__(
        self,
        answers: Iterable[Answer] = (),
        *,
        default: Answer | Callable[[dict[str, Any]], Answer] | None = None,
        api_key: str | None = None,
        refuse_response_format: Collection[str] = (),
    ) -> None:
        self.script: deque[Answer] = deque(answers)
        self.default = default
        self.api_key = api_key
        self.refuse_response_format = set(refuse_response_format)
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._listen()

    def push(self, *answers: Answer) -> None:
        with self._lock:
            self.script.extend(answers)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """The request bodies that reached the script (not the refused response formats)."""
        return [r["body"] for r in self.requests if r.get("scripted")]

    def _next(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            answer: Any = self.script.popleft() if self.script else None
        if answer is None:
            answer = self.default(body) if callable(self.default) else self.default
        if answer is None:
            return Reply(status=500, body={"error": {"message": "no scripted answer left"}})
        return Reply(content=answer) if isinstance(answer, str) else answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (a timeout): nothing to answer
                    pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                record: dict[str, Any] = {
                    "path": self.path,
                    "body": body,
                    "headers": dict(self.headers),
                }
                fake.requests.append(record)
                if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self._send(401, {"error": {"message": "bad key"}})
                    return
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                response_format = body.get("response_format") or {}
                if response_format.get("type") in fake.refuse_response_format:
                    self._send(400, {"error": {"message": "response_format not supported"}})
                    return
                record["scripted"] = True
                reply = fake._next(body)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.body is not None:
                    self._send(reply.status, reply.body, reply.headers)
                elif reply.status != 200:
                    self._send(reply.status, {"error": {"message": "scripted"}}, reply.headers)
                else:
                    message = {"role": "assistant", "content": reply.content}
                    completion = {
                        "id": "chatcmpl-scripted",
                        "object": "chat.completion",
                        "model": body.get("model"),
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    }
                    self._send(200, completion, reply.headers)

        return Handler
