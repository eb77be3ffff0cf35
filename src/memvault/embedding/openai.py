"""Any OpenAI-compatible ``/v1/embeddings`` endpoint: OpenAI, Ollama, vLLM, LM Studio, llama.cpp."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from memvault.embedding.base import Vectors, normalize_rows
from memvault.errors import EmbedderError, EmbedderUnavailable

__all__ = ["OpenAIEmbedder"]

BATCH = 256


class OpenAIEmbedder:
    """Embeddings over HTTP; the dimension is known from ``dimensions`` or the first answer."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        dimensions: int | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.model_id = f"openai:{model}" + (f":{dimensions}" if dimensions else "")
        self._model = model
        self._requested_dimensions = dimensions
        self._dimensions = dimensions
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=timeout,
            transport=transport,
        )

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            self.embed_batch(["dimension probe"])
        assert self._dimensions is not None
        return self._dimensions

    def close(self) -> None:
        self._client.close()

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimensions or 0), dtype=np.float32)
        parts = [self._request(list(texts[i : i + BATCH])) for i in range(0, len(texts), BATCH)]
        matrix = np.concatenate(parts)
        if self._dimensions is None:
            self._dimensions = int(matrix.shape[1])
        elif matrix.shape[1] != self._dimensions:
            raise EmbedderError(
                f"the endpoint returned {matrix.shape[1]}-d vectors; expected {self._dimensions}"
            )
        return normalize_rows(matrix)

    def _request(self, batch: list[str]) -> np.ndarray:
        body: dict[str, Any] = {"model": self._model, "input": batch}
        if self._requested_dimensions:
            body["dimensions"] = self._requested_dimensions
        try:
            response = self._client.post("embeddings", json=body)
        except httpx.HTTPError as exc:
            raise EmbedderUnavailable(
                f"embedding endpoint unreachable: {type(exc).__name__}"
            ) from exc
        if response.status_code == 429 or response.status_code >= 500:
            # The endpoint is overloaded or down: the caller may retry (503). Other statuses
            # (a wrong key, a wrong URL) are configuration and stay EmbedderError (502).
            raise EmbedderUnavailable(f"embedding endpoint answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise EmbedderError(f"embedding endpoint answered HTTP {response.status_code}")
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            matrix = np.asarray([item["embedding"] for item in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbedderError("embedding endpoint answered an unreadable body") from exc
        if matrix.ndim != 2 or matrix.shape[0] != len(batch) or not np.isfinite(matrix).all():
            raise EmbedderError("embedding endpoint answered the wrong number or shape of vectors")
        return matrix
