"""Bulk load on Postgres against SQLite, alternating rounds, storage alone (hash embedder).

    PYTHONPATH=src .venv/bin/python bench/pg_bulk_load.py

10,240 memories over 100 users in 5 rounds of 2,048 per store, the stores alternating first; the
embedding is the hash embedder, so the rates are storage, encryption and indexing only (with the
local model the model sets the pace of both). Postgres is the embedded one of the test suite
(tests/pg.py: a throwaway cluster without fsync); SQLite keeps synchronous=FULL. Prints the rates.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pg import fresh_database_url, start_server, stop_server  # noqa: E402

from memvault import HashEmbedder, Memory  # noqa: E402

ROUNDS, PER_ROUND, USERS = 5, 2048, 100


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="memvault-bulk-"))
    (root / "pg").mkdir()
    start_server(root / "pg")
    stores = {
        "sqlite": Memory(root / "sqlite", embedder=HashEmbedder()),
        "postgres": Memory(
            root / "home", embedder=HashEmbedder(), database_url=fresh_database_url()
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in stores}
    try:
        for r in range(ROUNDS):
            order = ["sqlite", "postgres"] if r % 2 == 0 else ["postgres", "sqlite"]
            for name in order:
                items = [
                    {"messages": f"fact {r}-{i} about user {i % USERS}", "user_id": f"u{i % USERS}"}
                    for i in range(PER_ROUND)
                ]
                started = time.perf_counter()
                stores[name].add_many(items)
                rates[name].append(PER_ROUND / (time.perf_counter() - started))
    finally:
        for memory in stores.values():
            memory.close()
        stop_server()
    for name, values in rates.items():
        print(
            f"{name}: {[round(v) for v in values]} memories/s, mean {sum(values) / len(values):.0f}"
        )
    print(f"postgres / sqlite: {sum(rates['postgres']) / sum(rates['sqlite']):.3f}")


if __name__ == "__main__":
    main()
