"""AsyncMemory runs blocking work in threads: the event loop keeps ticking during searches."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from memvault import AsyncMemory, Embedder


def test_event_loop_stays_responsive_during_50_concurrent_searches(
    home: Path, local_embedder: Embedder
) -> None:
    async def scenario() -> tuple[list[float], int, float]:
        async with AsyncMemory(home, embedder=local_embedder) as m:
            await m.add_many(
                [
                    {"messages": f"memory number {i} about topic {i % 17}", "user_id": "u"}
                    for i in range(800)
                ]
            )
            gaps: list[float] = []
            done = asyncio.Event()

            async def ticker() -> None:
                last = time.perf_counter()
                while not done.is_set():
                    await asyncio.sleep(0.005)
                    now = time.perf_counter()
                    gaps.append(now - last)
                    last = now

            tick = asyncio.create_task(ticker())
            started = time.perf_counter()
            results = await asyncio.gather(
                *(
                    m.search(f"what about topic {i} and memory {i * 3}?", user_id="u")
                    for i in range(50)
                )
            )
            elapsed = time.perf_counter() - started
            done.set()
            await tick
            return gaps, sum(len(r["results"]) for r in results), elapsed

    gaps, found, elapsed = asyncio.run(scenario())
    assert found == 500
    # Blocking the loop for the whole batch would show as one gap as long as all searches
    # together. Compared with the batch's own duration (not an absolute time), so a loaded
    # machine slows both sides alike.
    assert len(gaps) >= 5
    assert max(gaps) < elapsed / 3, (max(gaps), elapsed)


def test_async_api_mirrors_sync(home: Path) -> None:
    async def scenario() -> None:
        async with AsyncMemory(home, embedder="hash") as m:
            added = await m.add("async fact", user_id="u")
            memory_id = added["results"][0]["id"]
            assert (await m.get(memory_id))["memory"] == "async fact"
            await m.update(memory_id, "async fact, updated")
            assert [e["event"] for e in await m.history(memory_id)] == ["ADD", "UPDATE"]
            assert (await m.get_all(user_id="u"))["results"][0]["memory"] == "async fact, updated"
            assert (await m.delete_all(user_id="u"))["deleted"] == 1

    asyncio.run(scenario())
