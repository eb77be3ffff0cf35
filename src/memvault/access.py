"""Counting reads off the answer's path: searches queue ids, a thread writes them in batches."""

from __future__ import annotations

import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence

from memvault.clock import now_iso
from memvault.errors import MemvaultError

__all__ = ["AccessRecorder"]

log = logging.getLogger("memvault.access")

Writer = Callable[[str, Sequence[str], str], None]


class AccessRecorder:
    """Batches ``access_count`` updates so a search never waits for a write transaction."""

    def __init__(self, write: Writer, interval: float = 1.0) -> None:
        self._write = write
        self._interval = interval
        self._queue: queue.Queue[tuple[str, tuple[str, ...]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def record(self, namespace: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="memvault-access", daemon=True
                )
                self._thread.start()
        self._queue.put((namespace, tuple(ids)))

    def _run(self) -> None:
        stop = False
        while not stop:
            pending: dict[str, list[str]] = defaultdict(list)
            item = self._queue.get()
            while True:
                if item is None:
                    stop = True
                    break
                pending[item[0]].extend(item[1])
                try:
                    item = self._queue.get(timeout=self._interval)
                except queue.Empty:
                    break
            self._flush(pending)

    def _flush(self, pending: dict[str, list[str]]) -> None:
        when = now_iso()
        for namespace, ids in pending.items():
            try:
                self._write(namespace, ids, when)
            except MemvaultError as exc:
                # Counting reads is best effort; the memories themselves are untouched.
                log.warning("could not record memory reads: %s", exc.code)

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)
