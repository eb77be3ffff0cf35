"""AsyncMemory runs blocking work in threads: the event loop keeps ticking during searches."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from memvault import AsyncMemory, NotFound
from memvault.async_memory import EXPORT_CHUNK
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


def test_async_memory_has_the_rest_of_the_api(home: Path) -> None:
    async def scenario() -> None:
        async with AsyncMemory(home, embedder="hash") as m:
            await m.add_many(
                [{"messages": f"fact {i}", "user_id": "u", "metadata": {"n": i}} for i in range(9)]
            )
            await m.add("other user's fact", user_id="v")
            assert await m.count(user_id="u") == 9
            assert await m.count(user_id="u", filters={"n": {"lt": 3}}) == 3
            page, total = await m.get_page(user_id="u", top_k=4, offset=6)
            assert total == 9 and [r["metadata"]["n"] for r in page] == [2, 1, 0]

            lines = [line async for line in await m.export_user("u")]
            assert lines[0]["type"] == "export" and len(lines) == 10
            with pytest.raises(NotFound):  # at the await, before any line, as Memory raises
                await m.export_user("nobody")

            assert (await m.rotate_user_key("u"))["memories_rekeyed"] == 9
            assert (await m.erase_user("u"))["memories_deleted"] == 9
            assert await m.count(user_id="u") == 0

            rules = await m.configure_namespace(secret_policy="reject", default_ttl_seconds=60)
            assert (
                rules
                == await m.namespace_settings()
                == {
                    "secret_policy": "reject",
                    "default_ttl_seconds": 60,
                    "extraction_instructions": None,
                    "reconciliation_instructions": None,
                }
            )
            view = m.namespaced("acme")  # a view: not awaited, sharing the open store
            assert view.sync.namespace == "acme" and await view.count(user_id="v") == 0
            await view.add("acme's own fact", user_id="v")
            assert {n["name"] for n in await m.namespaces()} >= {"default", "acme"}
            assert await m.purge_expired() == 0
            assert (await m.jobs()) == {"results": []}
            await m.ping()
            assert (await m.store_status()) == m.sync.store_status()
            await m.reset()
            assert await m.count(user_id="v") == 0 and await view.count(user_id="v") == 1

    asyncio.run(scenario())


def test_export_lines_are_read_off_the_event_loop(home: Path) -> None:
    readers: set[int] = set()

    def lines() -> Iterator[dict[str, Any]]:
        for i in range(EXPORT_CHUNK * 2 + 1):
            readers.add(threading.get_ident())
            yield {"line": i}

    async def scenario() -> tuple[int, int]:
        async with AsyncMemory(home, embedder="hash") as m:
            m.sync.export_user = lambda user_id: lines()  # type: ignore[method-assign]
            read = [line["line"] async for line in await m.export_user("u")]
            assert read == list(range(EXPORT_CHUNK * 2 + 1))
            return threading.get_ident(), len(read)

    loop_thread, _ = asyncio.run(scenario())
    assert readers and loop_thread not in readers


def test_from_config_builds_an_async_memory(home: Path) -> None:
    async def scenario() -> None:
        m = AsyncMemory.from_config({"home": str(home), "embedder": "hash"})
        async with m:
            assert isinstance(m, AsyncMemory)
            await m.add("configured", user_id="u")
            assert await m.count(user_id="u") == 1

    asyncio.run(scenario())
