"""Run by ``test_cli_import_sources`` as its own process: the real mem0ai package, configured as
``Memory.from_config`` leaves a local install (a history database and local Qdrant on disk),
adds, updates and deletes with ``infer=False``, then prints what mem0 itself reads back
(``get_all`` and ``history`` of every memory) as JSON on stdout.

Usage: python mem0_local.py DIRECTORY EMBEDDINGS_BASE_URL DIMENSIONS

The embedder is mem0's OpenAI one, pointed at the loopback server the test runs (it answers
with memvault's hash vectors); the LLM is configured the same way and never called
(``infer=False``). mem0's telemetry is off (``MEM0_TELEMETRY=False`` in the environment).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    directory, base_url, dimensions = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    from mem0 import Memory

    memory = Memory.from_config(
        {
            "vector_store": {
                "provider": "qdrant",
                "config": {
                    "path": str(directory / "qdrant"),
                    "collection_name": "mem0",
                    "embedding_model_dims": dimensions,
                    "on_disk": True,
                },
            },
            "embedder": {
                "provider": "openai",
                "config": {
                    "model": "loopback",
                    "api_key": "unused",
                    "openai_base_url": base_url,
                    "embedding_dims": dimensions,
                },
            },
            "llm": {
                "provider": "openai",
                "config": {"model": "unused", "api_key": "unused", "openai_base_url": base_url},
            },
            "history_db_path": str(directory / "history.db"),
        }
    )

    def add(*args: object, **kwargs: object) -> str:
        result = memory.add(*args, infer=False, **kwargs)  # type: ignore[arg-type]
        return str(result["results"][0]["id"])

    sport = add("Likes cricket", user_id="alex", metadata={"topic": "sport", "level": 3})
    add(
        [{"role": "assistant", "content": "Booked a window seat for Alex"}],
        user_id="alex",
        agent_id="travel-agent",
        run_id="trip-42",
    )
    add("Prefers green tea", agent_id="barista")
    cold = add("Has a cold this week", user_id="alex")
    memory.update(sport, "Likes cricket and tennis")
    memory.delete(cold)
    live = [
        found
        for scope in ({"user_id": "alex"}, {"agent_id": "barista"})
        for found in memory.get_all(filters=scope)["results"]
    ]
    print(
        json.dumps(
            {
                "memories": live,
                "history": {m["id"]: memory.history(m["id"]) for m in live},
                "deleted": memory.history(cold),
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
