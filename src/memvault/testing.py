"""Fakes shipped with memvault, so you can test your own code against it without mocks.

- ``HashEmbedder``: deterministic vectors from words, no model, instant.
- ``FakeOpenAIServer``: a real HTTP server on 127.0.0.1 speaking the OpenAI ``/v1/embeddings``
  protocol (vectors from ``HashEmbedder``), recording requests and failing on demand.

    with FakeOpenAIServer() as server:
        m = Memory(embedder="openai", openai_base_url=server.base_url, openai_model="fake")
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from memvault.embedding.hashing import HashEmbedder

__all__ = ["FakeOpenAIServer", "HashEmbedder"]


class FakeOpenAIServer:
    """``/v1/embeddings`` on a free loopback port; ``fail_with`` makes the next answers fail."""

    def __init__(self, dimensions: int = 64, api_key: str | None = None) -> None:
        self.embedder = HashEmbedder(dimensions)
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        self.respond: Callable[[dict[str, Any]], Any] | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

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
