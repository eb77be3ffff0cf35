"""The embedding model, loaded in a background thread from the moment the server starts.

Loading the local model (import ONNX Runtime, check the files' sha256, build the session) takes
0.5 s or more, and a node used to pay it in its first search. ``serve`` starts the load before it
imports and starts the web stack, and ``/healthz`` answers meanwhile. The two overlap only where
ONNX Runtime releases the GIL (about half of its session build), so the time to a first answer
gains little on a busy machine (docs/deployment.md); the first search no longer pays the load.
A request that needs the model while it loads waits for the same load (``Memory.embedder`` is
built once, under a lock) instead of starting another.

Readiness includes the model: ``/readyz`` answers 503 ``starting`` until it is loaded, and 503
with the error's stable code when it failed. A failed load is tried again by the next readiness
probe (in the background: probes never wait for a load), so a node recovers once the cause is
fixed; a request meanwhile tries the load itself and fails with the same error class and code.

This module imports neither FastAPI nor the model's libraries: ``serve`` uses it before both.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Literal

from memvault.errors import EmbedderError, MemvaultError
from memvault.memory import Memory

__all__ = ["ModelState", "ModelWarmup"]

log = logging.getLogger("memvault.server")


@dataclass(frozen=True, slots=True)
class ModelState:
    """``loading`` (no load has finished yet), ``ready``, or ``failed`` with the last error."""

    status: Literal["loading", "ready", "failed"]
    error: MemvaultError | None = None


class ModelWarmup:
    """Loads ``memory``'s embedder in a daemon thread; at most one load runs at a time."""

    def __init__(self, memory: Memory) -> None:
        self._memory = memory
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = False
        self._error: MemvaultError | None = None

    def start(self) -> None:
        """Begin a load, unless the model is loaded or a load is running."""
        with self._lock:
            if self._ready or (self._thread is not None and self._thread.is_alive()):
                return
            # Daemon: a load still running when the server stops must not hold the process.
            self._thread = threading.Thread(
                target=self._load, name="memvault-model-load", daemon=True
            )
            self._thread.start()

    def state(self) -> ModelState:
        """Where the load is; a failed load is started again (the answer keeps its error)."""
        with self._lock:
            ready, error = self._ready, self._error
        if ready:
            return ModelState("ready")
        if error is None:
            return ModelState("loading")
        self.start()
        return ModelState("failed", error)

    def _load(self) -> None:
        error: MemvaultError | None = None
        try:
            self._memory.embedder  # noqa: B018 (the property loads the model once, under a lock)
        except MemvaultError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 (a loader's own error still gets a stable code)
            error = EmbedderError(f"cannot load the embedding model: {type(exc).__name__}")
        if error is not None:
            # The code only: messages may name local paths, and logs stay free of detail.
            log.warning("the embedding model did not load: %s", error.code)
        with self._lock:
            self._ready = error is None
            self._error = error
