"""Any OpenAI-compatible ``/v1/chat/completions`` endpoint: OpenAI, Ollama, vLLM, LM Studio,
llama.cpp server.

- Structured output: ``response_format`` ``json_schema`` first; a server that answers 400 to it
  is asked with ``json_object``, then with no ``response_format`` at all (remembered per client).
- Retries: timeouts, connection errors, 429 (``Retry-After`` honoured, at most
  ``MAX_RETRY_AFTER`` seconds) and 5xx are tried again up to ``max_attempts`` times in all, with
  exponential backoff and full jitter; then ``LLMUnavailable``.
- Nothing here logs or raises with prompt or answer text; the API key is only ever the
  ``Authorization`` header.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from memvault.errors import LLMBadOutput, LLMUnavailable

if TYPE_CHECKING:  # imported where a client is made: a server without an LLM never needs it
    import httpx

__all__ = ["LLM", "ChatMessage", "OpenAIChat"]

ChatMessage = dict[str, str]
MAX_BACKOFF = 30.0
MAX_RETRY_AFTER = 30.0
MODES = ("json_schema", "json_object", "plain")


class LLM(Protocol):
    """What the inference pipeline needs of a model: one chat completion as text.

    ``schema`` is the JSON schema the answer should follow (``None``: free text); the caller
    parses and validates whatever comes back. ``model_id`` is recorded in provenance."""

    model_id: str

    def complete(self, messages: Sequence[ChatMessage], *, schema: dict[str, Any] | None) -> str:
        """The assistant's answer text; raises ``LLMUnavailable`` or ``LLMBadOutput``."""
        ...


class OpenAIChat:
    """Chat completions over HTTP with retries, backoff and ``response_format`` fallback."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_attempts: int = 3,
        backoff: float = 0.5,
        temperature: float = 0.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import httpx

        self.model_id = model
        self._model = model
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff
        self._temperature = temperature
        self._sleep = sleep
        self._mode = 0  # index in MODES: lowered when the server refuses a response_format
        self._mode_lock = threading.Lock()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def complete(self, messages: Sequence[ChatMessage], *, schema: dict[str, Any] | None) -> str:
        mode = self._mode if schema is not None else len(MODES) - 1
        while True:
            body: dict[str, Any] = {
                "model": self._model,
                "messages": list(messages),
                "temperature": self._temperature,
            }
            if schema is not None and MODES[mode] == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema},
                }
            elif schema is not None and MODES[mode] == "json_object":
                body["response_format"] = {"type": "json_object"}
            response = self._post(body)
            if response.status_code == 400 and "response_format" in body:
                mode += 1  # the server does not take this response_format: ask more plainly
                with self._mode_lock:
                    self._mode = max(self._mode, mode)
                continue
            if response.status_code != 200:
                raise LLMUnavailable(f"LLM endpoint answered HTTP {response.status_code}")
            return _content(response)

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        """One request, retried on timeouts, connection errors, 429 and 5xx."""
        import httpx

        problem = "no attempt made"
        for attempt in range(self._max_attempts):
            retry_after: float | None = None
            try:
                response = self._client.post("chat/completions", json=body)
            except httpx.TimeoutException:
                problem = "timed out"
            except httpx.TransportError as exc:
                problem = f"unreachable ({type(exc).__name__})"
            else:
                status = response.status_code
                if status != 429 and status < 500:
                    return response
                problem = f"answered HTTP {status}"
                if status == 429:
                    retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt + 1 < self._max_attempts:
                delay = random.uniform(0, min(MAX_BACKOFF, self._backoff * 2**attempt))  # noqa: S311 jitter
                if retry_after is not None:
                    delay = max(delay, retry_after)
                self._sleep(delay)
        raise LLMUnavailable(f"LLM endpoint {problem} after {self._max_attempts} attempts")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds form), bounded; None when absent or odd."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, MAX_RETRY_AFTER)


def _content(response: httpx.Response) -> str:
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise LLMBadOutput("LLM endpoint answered an unreadable body") from None
    if not isinstance(content, str):
        raise LLMBadOutput("LLM endpoint answered without text content")
    return content
