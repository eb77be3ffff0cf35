"""A bounded mixed load against a real ``memvault serve`` on 127.0.0.1: statuses, RSS, latency.

For each concurrency level a fresh server is started (SQLite store, encryption on, a fresh home,
the rate limits lifted), each client is seeded with ``--live`` memories through the batch API,
then the clients (asyncio tasks over httpx, one keep-alive connection each) run a mix of

    add 20%, search 25%, get 20%, update 10%, delete 10%, list (GET /v1/memories/) 10%,
    history 5%

for ``--seconds``. Each client owns the memories it added (unique texts, users shared between
clients), keeps at most ``--live`` of them alive (an add beyond that deletes its oldest first),
and remembers the last acknowledged text of each: the data set stays bounded, so the server's
memory should stop growing once warm. Reported per level:

- every status code counted (and transport errors); a 5xx or a transport error fails the run
  (the clients drop idle connections after 2 s, as memvault's ``Client`` does: see client.py);
- after the run, every write acknowledged with 2xx read back: each live memory's text, each
  deleted one's 404, and each user's count in the list;
- the server's RSS sampled every ``--sample-seconds`` (psutil if installed, else VmRSS from
  /proc), the mean of the last third against the middle third, and the least-squares slope over
  the last two thirds (MB/min): growth after warm-up over ``--rss-tolerance`` fails the run;
- p50/p95/p99 latency and count per operation, and the load average at the start and the end.

    PYTHONPATH=src .venv/bin/python bench/load.py                      # 60 s at 16 and 64 clients
    PYTHONPATH=src .venv/bin/python bench/load.py --embedder hash --seconds 10 --clients 16

Results: ``bench/results/<date>-load/load-<embedder>.{json,md}`` (``--out`` for elsewhere).
The exit status is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
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
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from memvault.client import KEEPALIVE_EXPIRY_SECONDS

HERE = Path(__file__).resolve().parent
KEY = re.compile(r"mvk_[a-z0-9]{12}_[A-Za-z0-9_-]{49}")
MIX = {
    "add": 20,
    "search": 25,
    "get": 20,
    "update": 10,
    "delete": 10,
    "list": 10,
    "history": 5,
}
USERS = 8
WORDS = [
    "cello",
    "tea",
    "lisbon",
    "garden",
    "bicycle",
    "novel",
    "chess",
    "river",
    "kitchen",
    "violin",
    "mountain",
    "coffee",
    "museum",
    "train",
    "piano",
    "winter",
    "market",
    "harbour",
    "library",
    "tennis",
]


# -- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of a process: psutil when installed, else VmRSS from /proc."""
    try:
        import psutil
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for process {pid}") from None
    return int(psutil.Process(pid).memory_info().rss)


@dataclass
class Server:
    process: subprocess.Popen[str]
    base: str
    key: str
    home: Path

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def serve(embedder: str, home: Path | None = None, timeout: float = 120) -> Iterator[Server]:
    """``memvault serve`` in a child process on a free loopback port, stopped with SIGINT."""
    with tempfile.TemporaryDirectory(prefix="memvault-load-") as scratch:
        root = Path(home) if home is not None else Path(scratch) / "home"
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MEMVAULT_")},
            "MEMVAULT_HOME": str(root),
            "MEMVAULT_EMBEDDER": embedder,
            "MEMVAULT_RATE_LIMIT": "10000000/minute",
            "COLUMNS": "200",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "memvault", "serve", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        drain: threading.Thread | None = None
        try:
            assert process.stdout is not None
            seen = ""
            deadline = time.monotonic() + timeout
            while "memvault serving" not in seen:
                line = process.stdout.readline()
                if not line or time.monotonic() > deadline:
                    raise RuntimeError("memvault serve did not start:\n" + seen[-2000:])
                seen += line
            keys = KEY.findall(seen)
            if not keys:
                raise RuntimeError("memvault serve printed no admin key")
            # Keep reading its output so that the pipe never fills and blocks the server.
            drain = threading.Thread(target=process.stdout.read, daemon=True)
            drain.start()
            base = f"http://127.0.0.1:{port}"
            while True:  # ready: the model loaded (503 "starting" until then)
                try:
                    if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("memvault serve never became ready")
                time.sleep(0.1)
            yield Server(process, base, keys[0], root)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            if drain is not None:
                drain.join(timeout=10)
            if process.stdout is not None:
                process.stdout.close()


# -- the clients ------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What one client has had acknowledged: live memories (id -> user, text) and deleted ids."""

    live: dict[str, tuple[str, str]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: dict[str, Counter[int]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    transport_errors: Counter[str] = field(default_factory=Counter)
    transport_details: list[str] = field(default_factory=list)
    wrong_answers: list[str] = field(default_factory=list)

    def record(self, operation: str, status: int, milliseconds: float) -> None:
        self.statuses[status] += 1
        self.by_operation.setdefault(operation, Counter())[status] += 1
        self.latencies.setdefault(operation, []).append(milliseconds)


def _text(rng: random.Random, client: int, n: int, verb: str) -> str:
    words = " ".join(rng.sample(WORDS, 3))
    return f"client {client} {verb} {n}: enjoys {words}"


async def _request(
    http: httpx.AsyncClient, tally: Tally, operation: str, method: str, path: str, **kw: Any
) -> httpx.Response | None:
    begin = time.perf_counter()
    try:
        response = await http.request(method, path, **kw)
    except httpx.TransportError as exc:
        tally.transport_errors[f"{operation}: {type(exc).__name__}"] += 1
        if len(tally.transport_details) < 20:
            waited = time.perf_counter() - begin
            tally.transport_details.append(f"{operation} after {waited:.2f} s: {exc!r}")
        return None
    tally.record(operation, response.status_code, (time.perf_counter() - begin) * 1000)
    return response


async def _seed(http: httpx.AsyncClient, client: int, ledger: Ledger, live: int) -> None:
    rng = random.Random(client)
    items = []
    for n in range(live):
        user = f"user{(client + n) % USERS}"
        items.append({"messages": _text(rng, client, n, "seed"), "user_id": user})
    response = await http.post("/v1/memories/batch/", json={"items": items})
    response.raise_for_status()
    for item, result in zip(items, response.json()["results"], strict=True):
        ledger.live[result["id"]] = (item["user_id"], item["messages"])


async def _client(
    http: httpx.AsyncClient, client: int, ledger: Ledger, tally: Tally, stop_at: float, live: int
) -> None:
    rng = random.Random(1000 + client)
    operations, weights = list(MIX), list(MIX.values())
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        operation = rng.choices(operations, weights)[0]
        if operation == "add" and len(ledger.live) >= live:
            operation = "delete"
        if operation in ("get", "update", "delete", "history") and not ledger.live:
            operation = "add"
        user = f"user{rng.randrange(USERS)}"
        if operation == "add":
            text = _text(rng, client, n, "add")
            r = await _request(
                http,
                tally,
                "add",
                "POST",
                "/v1/memories/",
                json={"messages": text, "user_id": user},
            )
            if r is not None and r.status_code == 200:
                [result] = r.json()["results"]
                if result["event"] != "ADD":
                    tally.wrong_answers.append(f"add answered {result['event']}")
                ledger.live[result["id"]] = (user, text)
        elif operation == "search":
            query = " ".join(rng.sample(WORDS, 2))
            await _request(
                http,
                tally,
                "search",
                "POST",
                "/v1/memories/search/",
                json={"query": query, "user_id": user, "top_k": 10},
            )
        elif operation == "list":
            await _request(
                http,
                tally,
                "list",
                "GET",
                "/v1/memories/",
                params={"user_id": user, "page_size": 50},
            )
        else:
            memory_id = (
                rng.choice(list(ledger.live)) if operation != "delete" else next(iter(ledger.live))
            )
            owner, text = ledger.live[memory_id]
            if operation == "get":
                r = await _request(http, tally, "get", "GET", f"/v1/memories/{memory_id}/")
                if r is not None and r.status_code == 200 and r.json()["memory"] != text:
                    tally.wrong_answers.append(f"get {memory_id}: not the last acknowledged text")
            elif operation == "history":
                await _request(http, tally, "history", "GET", f"/v1/memories/{memory_id}/history/")
            elif operation == "update":
                new = _text(rng, client, n, "update")
                r = await _request(
                    http, tally, "update", "PUT", f"/v1/memories/{memory_id}/", json={"text": new}
                )
                if r is not None and r.status_code == 200:
                    ledger.live[memory_id] = (owner, new)
            else:
                r = await _request(http, tally, "delete", "DELETE", f"/v1/memories/{memory_id}/")
                if r is not None and r.status_code == 200:
                    del ledger.live[memory_id]
                    ledger.deleted.add(memory_id)


def _http(base: str, key: str, clients: int) -> httpx.AsyncClient:
    # As memvault's own client: an idle connection is dropped before the server closes it.
    limits = httpx.Limits(
        max_connections=clients,
        max_keepalive_connections=clients,
        keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
    )
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.AsyncClient(base_url=base, headers=headers, timeout=120, limits=limits)


async def _seed_all(base: str, key: str, clients: int, live: int) -> list[Ledger]:
    ledgers = [Ledger() for _ in range(clients)]
    async with _http(base, key, clients) as http:
        await asyncio.gather(*(_seed(http, c, ledgers[c], live) for c in range(clients)))
    return ledgers


async def _drive(
    base: str, key: str, ledgers: list[Ledger], seconds: float, live: int
) -> tuple[Tally, float]:
    tally = Tally()
    clients = len(ledgers)
    async with _http(base, key, clients) as http:
        begin = time.monotonic()
        await asyncio.gather(
            *(_client(http, c, ledgers[c], tally, begin + seconds, live) for c in range(clients))
        )
        elapsed = time.monotonic() - begin
    return tally, elapsed


def read_back(base: str, key: str, ledgers: list[Ledger]) -> dict[str, Any]:
    """Every acknowledged write, read back: live texts, deleted 404s, each user's count."""
    headers = {"Authorization": f"Bearer {key}"}
    problems: list[str] = []
    live = {i: entry for ledger in ledgers for i, entry in ledger.live.items()}
    deleted = set().union(*(ledger.deleted for ledger in ledgers))
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        for memory_id, (user, text) in live.items():
            r = http.get(f"/v1/memories/{memory_id}/")
            if r.status_code != 200:
                problems.append(f"live {memory_id}: {r.status_code}")
            elif (r.json()["memory"], r.json()["user_id"]) != (text, user):
                problems.append(f"live {memory_id}: other content")
        for memory_id in deleted:
            r = http.get(f"/v1/memories/{memory_id}/")
            if r.status_code != 404:
                problems.append(f"deleted {memory_id}: {r.status_code}")
        expected = Counter(user for user, _ in live.values())
        for n in range(USERS):
            user = f"user{n}"
            r = http.get("/v1/memories/", params={"user_id": user, "page_size": 1})
            if r.status_code != 200 or r.json()["count"] != expected[user]:
                problems.append(f"{user}: count {r.status_code} {r.text[:80]} != {expected[user]}")
    return {"live": len(live), "deleted": len(deleted), "problems": problems}


# -- memory over time -------------------------------------------------------------------------


class Sampler(threading.Thread):
    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        begin = time.monotonic()
        while not self.done.is_set():
            self.samples.append((time.monotonic() - begin, rss_bytes(self.pid)))
            self.done.wait(self.every)


def rss_trend(samples: list[tuple[float, int]], tolerance: float) -> dict[str, Any]:
    """Middle third against last third, and the slope over both (the first third is warm-up)."""
    mb = [(t, rss / 2**20) for t, rss in samples]
    third = len(mb) // 3
    if third < 2:
        return {"samples": len(mb), "ok": None, "reason": "too few samples for a trend"}
    middle = [v for _, v in mb[third : 2 * third]]
    last = [v for _, v in mb[2 * third :]]
    after = mb[third:]
    mean_t = statistics.fmean(t for t, _ in after)
    mean_v = statistics.fmean(v for _, v in after)
    spread = sum((t - mean_t) ** 2 for t, _ in after)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in after) / spread if spread else 0.0
    growth = statistics.fmean(last) / statistics.fmean(middle) - 1
    return {
        "samples": len(mb),
        "start_mb": round(mb[0][1], 1),
        "peak_mb": round(max(v for _, v in mb), 1),
        "end_mb": round(mb[-1][1], 1),
        "middle_third_mean_mb": round(statistics.fmean(middle), 1),
        "last_third_mean_mb": round(statistics.fmean(last), 1),
        "growth_last_vs_middle": round(growth, 4),
        "slope_after_warmup_mb_per_min": round(slope * 60, 2),
        "tolerance": tolerance,
        "ok": growth <= tolerance,
    }


# -- one level, and the report ----------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def latency(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50": round(percentile(values, 0.50), 2),
        "p95": round(percentile(values, 0.95), 2),
        "p99": round(percentile(values, 0.99), 2),
    }


def run_level(
    server: Server,
    clients: int,
    seconds: float,
    *,
    live: int = 40,
    sample_seconds: float = 1.0,
    rss_tolerance: float = 0.05,
) -> tuple[dict[str, Any], list[Ledger]]:
    """One level against a started server: the figures and the clients' ledgers.

    The clients are seeded first (``live`` memories each, one batch per client); the run, its
    RSS samples and its load average start after that."""
    ledgers = asyncio.run(_seed_all(server.base, server.key, clients, live))
    seeded_rss = rss_bytes(server.pid)
    sampler = Sampler(server.pid, sample_seconds)
    load_before = os.getloadavg()
    sampler.start()
    try:
        tally, elapsed = asyncio.run(_drive(server.base, server.key, ledgers, seconds, live))
    finally:
        sampler.done.set()
        sampler.join()
    load_after = os.getloadavg()
    checked = read_back(server.base, server.key, ledgers)
    total = sum(tally.statuses.values())
    server_errors = sum(v for k, v in tally.statuses.items() if k >= 500)
    trend = rss_trend(sampler.samples, rss_tolerance)
    result: dict[str, Any] = {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": total,
        "per_second": round(total / elapsed, 1) if elapsed else 0.0,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "statuses_by_operation": {
            op: {str(k): v for k, v in sorted(c.items())}
            for op, c in sorted(tally.by_operation.items())
        },
        "server_errors": server_errors,
        "transport_errors": dict(tally.transport_errors),
        "transport_error_details": tally.transport_details,
        "wrong_answers": tally.wrong_answers[:20],
        "latency_ms": {op: latency(v) for op, v in sorted(tally.latencies.items())},
        "read_back": {**checked, "problems": checked["problems"][:20]},
        "rss_after_seeding_mb": round(seeded_rss / 2**20, 1),
        "rss": trend,
        "rss_samples_mb": [[round(t, 1), round(b / 2**20, 1)] for t, b in sampler.samples],
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }
    result["ok"] = (
        server_errors == 0
        and not tally.transport_errors
        and not tally.wrong_answers
        and not checked["problems"]
        and trend["ok"] is not False
    )
    return result, ledgers


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Load: mixed REST traffic against `memvault serve` ({report['date']})",
        "",
        f"Embedder `{report['embedder']}`, SQLite store, encryption on, {report['seconds']} s per"
        f" level, {report['live']} live memories per client, {USERS} users shared by the clients;"
        f" mix {', '.join(f'{k} {v}%' for k, v in MIX.items())}. Machine: {report['cpus']} cores;"
        " the load generator runs on the same cores as the server.",
        "",
        "`" + report["command"] + "`",
        "",
        "| clients | requests | req/s | 5xx | transport errors | read back | RSS middle / last third"
        " (MB) | growth | slope after warm-up | load average start / end |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level in report["levels"]:
        rss, back = level["rss"], level["read_back"]
        lines.append(
            f"| {level['clients']} | {level['requests']} | {level['per_second']} |"
            f" {level['server_errors']} | {sum(level['transport_errors'].values())} |"
            f" {back['live']} live + {back['deleted']} deleted, {len(back['problems'])} wrong |"
            f" {rss.get('middle_third_mean_mb')} / {rss.get('last_third_mean_mb')} |"
            f" {100 * rss.get('growth_last_vs_middle', 0):+.1f}% |"
            f" {rss.get('slope_after_warmup_mb_per_min')} MB/min |"
            f" {level['load_average_before'][0]} / {level['load_average_after'][0]} |"
        )
    lines += [
        "",
        "Statuses: "
        + "; ".join(
            f"{level['clients']} clients {level['statuses']}" for level in report["levels"]
        ),
        "",
    ]
    lines += [
        "| clients | operation | count | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for level in report["levels"]:
        for op, q in level["latency_ms"].items():
            lines.append(
                f"| {level['clients']} | {op} | {q['count']} | {q['p50']} | {q['p95']} | {q['p99']} |"
            )
    lines += ["", f"All checks passed: **{report['ok']}**.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", default="16,64", help="comma-separated levels")
    parser.add_argument("--embedder", default="local", choices=("local", "hash"))
    parser.add_argument("--live", type=int, default=40, help="live memories per client")
    parser.add_argument("--sample-seconds", type=float, default=1.0)
    parser.add_argument("--rss-tolerance", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    date = datetime.now(UTC)
    out = args.out or HERE / "results" / f"{date:%Y-%m-%d}-load"
    report: dict[str, Any] = {
        "benchmark": "load",
        "date": date.isoformat(timespec="seconds"),
        "command": "PYTHONPATH=src .venv/bin/python bench/load.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "embedder": args.embedder,
        "seconds": args.seconds,
        "live": args.live,
        "cpus": os.cpu_count(),
        "levels": [],
    }
    for clients in (int(c) for c in args.clients.split(",")):
        with serve(args.embedder) as server:
            level, _ = run_level(
                server,
                clients,
                args.seconds,
                live=args.live,
                sample_seconds=args.sample_seconds,
                rss_tolerance=args.rss_tolerance,
            )
        report["levels"].append(level)
        summary = {k: level[k] for k in ("clients", "requests", "per_second", "statuses", "ok")}
        print(json.dumps({**summary, "rss": level["rss"], "latency_ms": level["latency_ms"]}))
    report["ok"] = all(level["ok"] for level in report["levels"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"load-{args.embedder}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"load-{args.embedder}.md").write_text(markdown(report))
    print(f"saved {out}/load-{args.embedder}.{{json,md}}; all checks passed: {report['ok']}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
