"""REST speed over loopback: one client, 8 concurrent clients, and a mixed 16-client load.

Starts ``memvault serve`` (local embedder, encryption on) as its own process on 127.0.0.1 with a
fresh home, loads N memories into one user's scope through the batch API, then measures:

- one client: search p50/p95 and add p50;
- 8 concurrent clients searching: throughput against one client's, p50 against what two cores
  explain (8 / throughput), and server CPU seconds per request (from /proc);
- a bounded mixed load (16 clients, add/search/get, --load-seconds): counts of 5xx answers;
- MCP: ``search_memories`` round trips over streamable HTTP with the official client (p50/p95).

    .venv/bin/python bench/rest.py [--memories 10000] [--load-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx

from corpus import facts, pct, questions, summary

HERE = Path(__file__).resolve().parent
KEY = re.compile(r"mvk_[a-z0-9]{12}_[A-Za-z0-9_-]{49}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(home: str, port: int, embedder: str) -> tuple[subprocess.Popen[str], str]:
    env = {
        **os.environ,
        "MEMVAULT_HOME": home,
        "MEMVAULT_EMBEDDER": embedder,
        "COLUMNS": "200",
        "MEMVAULT_RATE_LIMIT": "1000000/minute",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "memvault", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    output = ""
    while "memvault serving" not in output:
        line = process.stdout.readline()
        if not line:
            raise SystemExit("the server did not start:\n" + output)
        output += line
    for _ in range(400):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    keys = KEY.findall(output)
    if not keys:
        raise SystemExit("no admin key printed")
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    return process, keys[0]


def timed(client: httpx.Client, method: str, path: str, **kwargs: object) -> tuple[float, int]:
    begin = time.perf_counter()
    response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    return (time.perf_counter() - begin) * 1000, response.status_code


async def mcp_round_trips(
    base: str, key: str, asked: list[str], user: str = "bench"
) -> list[float]:
    """``search_memories`` latencies (ms) over streamable HTTP with the official MCP client."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from mcp import Client

    latencies = []
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
            await client.call_tool("search_memories", {"query": "warm up", "user_id": user})
            for q in asked:
                begin = time.perf_counter()
                result = await client.call_tool("search_memories", {"query": q, "user_id": user})
                latencies.append((time.perf_counter() - begin) * 1000)
                assert not result.is_error
    return latencies


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(server: subprocess.Popen[str]) -> None:
    server.send_signal(signal.SIGINT)
    server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--embedder", default="local")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    port = free_port()
    home = tempfile.mkdtemp(prefix="memvault-rest-bench-")
    server, key = start_server(home, port, args.embedder)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    result: dict[str, object] = {
        "benchmark": "rest",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "memories": args.memories,
        "embedder": args.embedder,
    }
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            texts = facts(args.memories)
            begin = time.perf_counter()
            for start in range(0, len(texts), 1000):
                items = [{"messages": t, "user_id": "bench"} for t in texts[start : start + 1000]]
                client.post("/v1/memories/batch/", json={"items": items}).raise_for_status()
            result["batch_load_per_second"] = round(len(texts) / (time.perf_counter() - begin), 1)
            asked = questions(args.queries)
            client.post("/v1/memories/search/", json={"query": "warm up", "user_id": "bench"})
            cpu_before = cpu_seconds(server.pid)
            search = [
                timed(
                    client, "POST", "/v1/memories/search/", json={"query": q, "user_id": "bench"}
                )[0]
                for q in asked
            ]
            one_cpu_ms = (cpu_seconds(server.pid) - cpu_before) / len(search) * 1000
            adds = [
                timed(
                    client,
                    "POST",
                    "/v1/memories/",
                    json={"messages": f"single add {i} {q}", "user_id": "bench"},
                )[0]
                for i, q in enumerate(asked[:100])
            ]
            result["one_client"] = {
                "search_ms": {
                    "p50": round(statistics.median(search), 2),
                    "p95": round(pct(search, 0.95), 2),
                },
                "add_ms": {
                    "p50": round(statistics.median(adds), 2),
                    "p95": round(pct(adds, 0.95), 2),
                },
                "search_per_second": round(1000 / statistics.mean(search), 1),
                "server_cpu_ms_per_search": round(one_cpu_ms, 2),
            }

        def search_worker(offset: int, count: int, sink: list[float]) -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=120) as c:
                for q in questions(count, seed=100 + offset):
                    sink.append(
                        timed(
                            c, "POST", "/v1/memories/search/", json={"query": q, "user_id": "bench"}
                        )[0]
                    )

        latencies: list[float] = []
        cpu_before = cpu_seconds(server.pid)
        begin = time.perf_counter()
        workers = [
            threading.Thread(target=search_worker, args=(i, 60, latencies)) for i in range(8)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - begin
        throughput = len(latencies) / elapsed
        one = result["one_client"]["search_per_second"]  # type: ignore[index]
        result["eight_clients"] = {
            "search_per_second": round(throughput, 1),
            "speedup_over_one_client": round(throughput / one, 2),
            "p50_ms": round(statistics.median(latencies), 2),
            "p95_ms": round(pct(latencies, 0.95), 2),
            "p50_explained_by_cores_ms": round(8 / throughput * 1000, 2),
            "server_cpu_ms_per_request": round(
                (cpu_seconds(server.pid) - cpu_before) / len(latencies) * 1000, 2
            ),
        }

        statuses: dict[int, int] = {}
        ids: list[str] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + args.load_seconds

        def mixed_worker(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=base, headers=headers, timeout=120) as c:
                n = 0
                while time.monotonic() < stop_at:
                    n += 1
                    roll = rng.random()
                    if roll < 0.3:
                        r = c.post(
                            "/v1/memories/",
                            json={"messages": f"load {seed} {n}", "user_id": f"load{seed % 4}"},
                        )
                        if r.status_code == 200:
                            with lock:
                                ids.append(r.json()["results"][0]["id"])
                    elif roll < 0.8 or not ids:
                        r = c.post(
                            "/v1/memories/search/",
                            json={"query": f"load {n} notes", "user_id": f"load{seed % 4}"},
                        )
                    else:
                        r = c.get(f"/v1/memories/{rng.choice(ids)}/")
                    with lock:
                        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        begin = time.perf_counter()
        workers = [threading.Thread(target=mixed_worker, args=(i,)) for i in range(16)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        total = sum(statuses.values())
        result["mixed_load_16_clients"] = {
            "seconds": round(time.perf_counter() - begin, 1),
            "requests": total,
            "per_second": round(total / (time.perf_counter() - begin), 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "server_errors": sum(v for k, v in statuses.items() if k >= 500),
        }
        mcp = anyio.run(mcp_round_trips, base, key, questions(200, seed=7))
        result["mcp_search_ms"] = summary(mcp)
    finally:
        stop(server)
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rest-{args.embedder}-{args.memories}.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
