"""AsyncMemory runs blocking work in threads: the event loop keeps ticking during searches."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

from memvault import AsyncMemory
from memvault.embedding.base import Vectors
from memvault.embedding.hashing import HashEmbedder


class GatedEmbedder:
    """Embeds like ``HashEmbedder`` but, once armed, holds every call until the gate opens.

    A search that ran on the event loop's thread would hold the loop inside ``embed_batch``
    and the test could never open the gate: the wait times out and the search fails. No clock
    is compared, so a slow machine cannot make the test fail nor pass by chance.
    """

    def __init__(self) -> None:
        self._inner = HashEmbedder()
        self.armed = False
        self.entered = threading.Event()
        self.gate = threading.Event()

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def dimensions(self) -> int:
        return self._inner.dimensions

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        if self.armed:
            self.entered.set()
            if not self.gate.wait(timeout=30):
                raise TimeoutError("the event loop never ran while a search was embedding")
        return self._inner.embed_batch(texts)


def test_event_loop_stays_responsive_during_50_concurrent_searches(home: Path) -> None:
    embedder = GatedEmbedder()

    async def scenario() -> tuple[int, int]:
        async with AsyncMemory(home, embedder=embedder) as m:
            await m.add_many(
                [
                    {"messages": f"memory number {i} about topic {i % 17}", "user_id": "u"}
                    for i in range(800)
                ]
            )
            embedder.armed = True
            batch = asyncio.gather(
                *(
                    m.search(f"what about topic {i} and memory {i * 3}?", user_id="u")
                    for i in range(50)
                )
            )
            ticks = 0
            while not embedder.entered.is_set():  # the loop runs while the searches start
                await asyncio.sleep(0.001)
            for _ in range(20):  # ... and keeps running while one of them is held mid-embed
                await asyncio.sleep(0)
                ticks += 1
            embedder.gate.set()
            results = await batch
            return ticks, sum(len(r["results"]) for r in results)

    ticks, found = asyncio.run(scenario())
    assert ticks == 20
    assert found == 500


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
