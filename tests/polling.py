"""Bounded waits for work another thread or process does: poll a check until it holds, or fail
with what was awaited. Never a fixed sleep as synchronisation."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

POLL_SECONDS = 0.02


def wait_for(check: Callable[[], bool], seconds: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(POLL_SECONDS)


async def wait_for_async(
    check: Callable[[], Awaitable[bool]], seconds: float = 30, what: str = "condition"
) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(POLL_SECONDS)
