"""``memvault jobs work``: the job queue's and the webhook outbox's workers in a process of
their own.

A server runs both in its own process by default (``MEMVAULT_JOB_WORKERS``,
``MEMVAULT_WEBHOOK_WORKERS``); a deployment that wants its API nodes to answer without sharing a
CPU or the GIL with inference or delivery sets those to 0 and runs this command beside them, as
many as it needs, on the same store: claims with leases (``FOR UPDATE SKIP LOCKED`` on Postgres)
mean no job is done, and no event sent, twice by design (events are at least once: a worker that
dies mid-POST sends again after its lease).
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
    """Run ``memory``'s worker pools until SIGTERM or SIGINT (or ``stop`` is set), then let the
    running jobs finish for ``grace_seconds``; what is left goes back to the queue.

    Jobs run when an LLM is configured; webhook events are delivered when the operator's
    allow-list (``MEMVAULT_WEBHOOK_ALLOWED_HOSTS``) is set. With neither, there is nothing to do
    and the command refuses to start.

    ``workers``: job threads; default ``MEMVAULT_JOB_WORKERS``, or 2 where that is 0 (the setting
    that keeps a server's own pool off, which this process may share). Delivery threads:
    ``MEMVAULT_WEBHOOK_WORKERS``, or 1 where that is 0."""
    runs_jobs = memory.llm is not None
    delivers = bool(memory.settings.webhook_allowed_hosts)
    if not runs_jobs and not delivers:
        raise InvalidConfig(
            "nothing to work on: no LLM is configured (set MEMVAULT_LLM_BASE_URL and"
            " MEMVAULT_LLM_MODEL for the job queue) and no webhook destination is allowed (set"
            " MEMVAULT_WEBHOOK_ALLOWED_HOSTS to deliver webhook events)"
        )
    count = workers if workers is not None else (memory.settings.job_workers or 2)
    senders = max(1, memory.settings.webhook_workers)
    stop = stop or threading.Event()
    previous = _on_signals(stop.set)
    try:
        backend = memory.store_status().backend
        if runs_jobs:
            memory.start_jobs(count)
            console.print(
                f"memvault job workers: {count} running on {backend}; Ctrl-C or SIGTERM stops them",
                highlight=False,
            )
        if delivers:
            memory.start_webhooks(senders)
            console.print(
                f"memvault webhook senders: {senders} running on {backend};"
                " Ctrl-C or SIGTERM stops them",
                highlight=False,
            )
        stop.wait()
        if runs_jobs:
            console.print(
                f"stopping: running jobs get {grace_seconds:g} s to finish", highlight=False
            )
            memory.stop_jobs(grace_seconds)
        memory.stop_webhooks()  # a delivery being sent finishes; the rest wait in the outbox
    finally:
        _restore(previous)
    console.print("workers stopped", highlight=False)


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
