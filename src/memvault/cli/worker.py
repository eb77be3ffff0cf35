"""``memvault jobs work``: the job queue's workers in a process of their own.

A server runs workers in its own process by default (``MEMVAULT_JOB_WORKERS``); a deployment
that wants its API nodes to answer without sharing a CPU or the GIL with inference sets that to
0 and runs this command beside them, as many as it needs, on the same store: claims with leases
(``FOR UPDATE SKIP LOCKED`` on Postgres) mean no job is done twice.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from rich.console import Console

from memvault.errors import InvalidConfig

__all__ = ["work_until_stopped"]


def work_until_stopped(
    memory: Any,
    workers: int | None,
    grace_seconds: float,
    console: Console,
    *,
    stop: threading.Event | None = None,
) -> None:
    """Run ``memory``'s worker pool until SIGTERM or SIGINT (or ``stop`` is set), then let the
    running jobs finish for ``grace_seconds``; what is left goes back to the queue.

    ``workers``: threads; default ``MEMVAULT_JOB_WORKERS``, or 2 where that is 0 (the setting
    that keeps a server's own pool off, which this process may share)."""
    if memory.llm is None:
        raise InvalidConfig(
            "no LLM is configured: set MEMVAULT_LLM_BASE_URL and MEMVAULT_LLM_MODEL, or the"
            " jobs would only fail"
        )
    count = workers if workers is not None else (memory.settings.job_workers or 2)
    stop = stop or threading.Event()
    previous = _on_signals(stop.set)
    try:
        memory.start_jobs(count)
        console.print(
            f"memvault job workers: {count} running on {memory.store_status().backend};"
            " Ctrl-C or SIGTERM stops them",
            highlight=False,
        )
        stop.wait()
        console.print(f"stopping: running jobs get {grace_seconds:g} s to finish", highlight=False)
        memory.stop_jobs(grace_seconds)
    finally:
        _restore(previous)
    console.print("job workers stopped", highlight=False)


Handler = Callable[[int, FrameType | None], Any] | int | None


def _on_signals(action: Callable[[], None]) -> dict[int, Handler]:
    def handle(signum: int, frame: FrameType | None) -> None:
        action()

    if threading.current_thread() is not threading.main_thread():
        return {}  # signals can only be caught on the main thread; the caller's stop is enough
    return {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore(previous: dict[int, Handler]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
