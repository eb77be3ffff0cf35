"""Two stateless ``memvault serve`` processes over one Postgres database (and one Redis): what
one node writes, erases or rotates, the other sees at once; a node killed mid-write loses no
acknowledged memory and leaves nothing half-written."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import string
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from memvault import Memory, Settings

REDIS_URL = "redis://127.0.0.1:6379/15"
SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Node:
    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def http(self, key: str, timeout: float = 30) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_node(name: str, home: Path, env: dict[str, str]) -> Node:
    """``python -m memvault serve`` with ``env`` (MEMVAULT_*) on a free loopback port."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = home.parent / f"{name}.log"
    full = {k: v for k, v in os.environ.items() if not k.startswith("MEMVAULT_")}
    full.update(env)
    full.update(
        MEMVAULT_HOME=str(home),
        MEMVAULT_HOST="127.0.0.1",
        MEMVAULT_PORT=str(port),
        MEMVAULT_EMBEDDER="hash",
        MEMVAULT_GC_INTERVAL_SECONDS="0",
        PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    )
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "memvault", "serve"],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Node(name, process, f"http://127.0.0.1:{port}", log)


def wait_ready(node: Node, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"node {node.name} exited:\n{node.output()}")
        try:
            if httpx.get(f"{node.base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"node {node.name} not ready after {seconds} s:\n{node.output()}")


def stop(node: Node) -> None:
    if node.process.poll() is None:
        node.process.kill()
    node.process.wait(timeout=20)


@dataclass
class Cluster:
    a: Node
    b: Node
    admin: str
    namespace: str
    nodes: list[Node] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    root: Path = Path()
    started: list[Node] = field(default_factory=list)

    def replace_a(self) -> Node:
        """A new node A with a fresh, empty home over the same database: nodes keep no state."""
        self.a = start_node("a2", self.root / "home-a2", self.env)
        self.started.append(self.a)
        wait_ready(self.a)
        return self.a


def _cluster_factory(pg_server: str, tmp: Path, started: list[Node]) -> Callable[..., Cluster]:
    from tests.pg import fresh_database_url

    def make(**env: str) -> Cluster:
        """A fresh database, an admin key bootstrapped through the library, nodes A and B."""
        pg_url = fresh_database_url()
        master = base64.b64encode(secrets.token_bytes(32)).decode()
        namespace = f"n{uuid.uuid4().hex[:12]}"
        common = {
            "MEMVAULT_DATABASE_URL": pg_url,
            "MEMVAULT_MASTER_KEY": master,
            "MEMVAULT_RATE_LIMIT": "100000/minute",
            **env,
        }
        root = tmp / uuid.uuid4().hex[:8]
        settings = Settings.load(
            home=root / "bootstrap",
            embedder="hash",
            database_url=pg_url,
            master_key=master,
            namespace=namespace,
        )
        with Memory(settings=settings) as memory:
            admin = memory.api_keys.create(namespace, "admin", name="two nodes").key
        a = start_node("a", root / "home-a", common)
        started.append(a)
        b = start_node("b", root / "home-b", common)
        started.append(b)
        wait_ready(a)
        wait_ready(b)
        return Cluster(a, b, admin, namespace, [a, b], common, root, started)

    return make


@pytest.fixture
def make_cluster(pg_server: str, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Clusters of this test only (killed and reaped when it ends)."""
    started: list[Node] = []
    yield _cluster_factory(pg_server, tmp_path, started)
    for node in started:
        stop(node)


@pytest.fixture(scope="module")
def cluster(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the tests that leave both nodes running (each uses its own users):
    starting two server processes costs seconds."""
    started: list[Node] = []
    try:
        yield _cluster_factory(pg_server, tmp_path_factory.mktemp("nodes"), started)()
    finally:
        for node in started:
            stop(node)


def tag() -> str:
    """A unique word without digits (a run of digits can look like a card number and be
    redacted before it is stored)."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(16))


def add(http: httpx.Client, user: str, text: str) -> str:
    response = http.post("/v1/memories/", json={"messages": text, "user_id": user})
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["event"] == "ADD" and result["memory"] == text
    return str(result["id"])


def texts(page: dict[str, Any]) -> set[str]:
    return {item["memory"] for item in page["results"]}


def test_read_your_writes_across_nodes(cluster: Cluster) -> None:
    with cluster.a.http(cluster.admin) as a, cluster.b.http(cluster.admin) as b:
        for n in range(5):
            text = f"alice drinks green tea number {n}"
            memory_id = add(a, "alice", text)
            got = b.get(f"/v1/memories/{memory_id}/")
            assert got.status_code == 200 and got.json()["memory"] == text
            found = b.post("/v1/memories/search/", json={"query": text, "user_id": "alice"})
            assert found.status_code == 200
            assert found.json()["results"][0]["memory"] == text
            listed = b.get("/v1/memories/", params={"user_id": "alice"}).json()
            assert listed["count"] == n + 1 and text in texts(listed)


def test_history_of_an_update_on_the_other_node(cluster: Cluster) -> None:
    with cluster.a.http(cluster.admin) as a, cluster.b.http(cluster.admin) as b:
        memory_id = add(a, "bob", "bob lives in Lyon")
        assert b.get(f"/v1/memories/{memory_id}/history/").status_code == 200  # B caches
        updated = a.put(f"/v1/memories/{memory_id}/", json={"text": "bob lives in Paris"})
        assert updated.status_code == 200, updated.text
        history = b.get(f"/v1/memories/{memory_id}/history/")
        assert history.status_code == 200
        events = [(e["event"], e["old_memory"], e["new_memory"]) for e in history.json()]
        assert events == [
            ("ADD", None, "bob lives in Lyon"),
            ("UPDATE", "bob lives in Lyon", "bob lives in Paris"),
        ]
        assert b.get(f"/v1/memories/{memory_id}/").json()["memory"] == "bob lives in Paris"
        found = b.post("/v1/memories/search/", json={"query": "Paris", "user_id": "bob"})
        assert [r["memory"] for r in found.json()["results"]] == ["bob lives in Paris"]


def test_keys_deletes_and_rules_across_nodes(cluster: Cluster) -> None:
    """API keys, deletions and namespace rules live in the database: no node caches them."""
    with cluster.a.http(cluster.admin) as a, cluster.b.http(cluster.admin) as b:
        made = a.post("/v1/keys/", json={"role": "write", "user_id": "hank"})
        assert made.status_code == 201, made.text
        key, key_id = made.json()["key"], made.json()["info"]["id"]
        with cluster.b.http(key) as hank_b:
            memory_id = add(hank_b, "hank", "hank keeps bees")
            assert a.delete(f"/v1/keys/{key_id}/").status_code == 200
            assert hank_b.get("/v1/memories/", params={"user_id": "hank"}).status_code == 401

        assert b.get(f"/v1/memories/{memory_id}/").status_code == 200  # B caches its index
        assert b.post("/v1/memories/search/", json={"query": "bees", "user_id": "hank"}).json()[
            "results"
        ]
        assert a.delete(f"/v1/memories/{memory_id}/").status_code == 200
        assert b.get(f"/v1/memories/{memory_id}/").status_code == 404
        found = b.post("/v1/memories/search/", json={"query": "bees", "user_id": "hank"})
        assert found.status_code == 200 and found.json()["results"] == []
        assert [e["event"] for e in b.get(f"/v1/memories/{memory_id}/history/").json()] == [
            "ADD",
            "DELETE",
        ]

        rules = a.put("/v1/namespace/settings/", json={"secret_policy": "reject"})
        assert rules.status_code == 200, rules.text
        try:
            refused = b.post(
                "/v1/memories/",
                json={"messages": "hank card 4111 1111 1111 1111", "user_id": "hank"},
            )
            assert refused.status_code == 422, refused.text
        finally:
            a.put("/v1/namespace/settings/", json={"secret_policy": "redact"})


def test_erase_on_one_node_then_add_on_the_other(cluster: Cluster) -> None:
    with cluster.a.http(cluster.admin) as a, cluster.b.http(cluster.admin) as b:
        ids = [add(a, "carol", f"carol secret {n}") for n in range(3)]
        # Both nodes hold carol's data key in their caches.
        for node in (a, b):
            assert node.get("/v1/memories/", params={"user_id": "carol"}).json()["count"] == 3
            assert node.post(
                "/v1/memories/search/", json={"query": "secret", "user_id": "carol"}
            ).json()["results"]
        erased = a.delete("/v1/users/carol/")
        assert erased.status_code == 200, erased.text
        assert erased.json()["data_key_destroyed"] is True
        for memory_id in ids:
            assert b.get(f"/v1/memories/{memory_id}/").status_code == 404
            assert b.get(f"/v1/memories/{memory_id}/history/").status_code in (200, 404)
        listed = b.get("/v1/memories/", params={"user_id": "carol"})
        assert listed.status_code == 200 and listed.json()["count"] == 0
        found = b.post("/v1/memories/search/", json={"query": "secret", "user_id": "carol"})
        assert found.status_code == 200 and found.json()["results"] == []

        # A new add on B after the erase: a new data key generation, readable on A.
        fresh = add(b, "carol", "carol starts over")
        for node in (a, b):
            got = node.get(f"/v1/memories/{fresh}/")
            assert got.status_code == 200, got.text
            assert got.json()["memory"] == "carol starts over"
            listed = node.get("/v1/memories/", params={"user_id": "carol"}).json()
            assert [r["memory"] for r in listed["results"]] == ["carol starts over"]
            found = node.post(
                "/v1/memories/search/", json={"query": "starts over", "user_id": "carol"}
            ).json()
            assert [r["memory"] for r in found["results"]] == ["carol starts over"]
        # And A can add for carol too, under the same new key.
        again = add(a, "carol", "carol again")
        assert b.get(f"/v1/memories/{again}/").json()["memory"] == "carol again"


def test_erase_races_a_stream_of_adds_on_the_other_node(cluster: Cluster) -> None:
    """Adds keep coming to B while A erases the user: none fails, and every add B acknowledged
    after A's erase answered is readable on both nodes (sealed under the new key generation)."""
    erased_at = threading.Event()
    stop_adding = threading.Event()
    after: dict[str, str] = {}
    failures: list[str] = []

    def adder() -> None:
        with cluster.b.http(cluster.admin) as b:
            n = 0
            while not stop_adding.is_set():
                started_after = erased_at.is_set()
                text = f"ivan fact {n} {tag()}"
                n += 1
                response = b.post("/v1/memories/", json={"messages": text, "user_id": "ivan"})
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:300]}")
                    continue
                if started_after:
                    after[response.json()["results"][0]["id"]] = text
                # Reads on B too, so its caches hold the user's key and index.
                found = b.post("/v1/memories/search/", json={"query": text, "user_id": "ivan"})
                if found.status_code != 200:
                    failures.append(f"search {found.status_code} {found.text[:300]}")

    with cluster.a.http(cluster.admin) as a, cluster.b.http(cluster.admin) as b:
        add(a, "ivan", "ivan before")
        thread = threading.Thread(target=adder)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while b.get("/v1/memories/", params={"user_id": "ivan"}).json()["count"] < 10:
                assert time.monotonic() < deadline
            for _ in range(3):  # erase several times while the adds go on
                erased = a.delete("/v1/users/ivan/")
                assert erased.status_code == 200, erased.text
                erased_at.set()
                after.clear()
                deadline = time.monotonic() + 20
                while len(after) < 5:
                    assert time.monotonic() < deadline and not failures, failures[:3]
                    time.sleep(0.01)
        finally:
            stop_adding.set()
            thread.join(timeout=30)
        assert failures == [], failures[:5]
        acknowledged = dict(after)
        assert len(acknowledged) >= 5
        for node in (a, b):
            listed = node.get("/v1/memories/", params={"user_id": "ivan", "page_size": 1000})
            assert listed.status_code == 200, listed.text
            assert set(acknowledged.values()) <= texts(listed.json())
            for memory_id, text in acknowledged.items():
                got = node.get(f"/v1/memories/{memory_id}/")
                assert got.status_code == 200, got.text
                assert got.json()["memory"] == text


def test_rotate_on_one_node_while_the_other_reads(cluster: Cluster) -> None:
    # More rows than one rotation batch (200): reads meet both generations at once.
    expected = {f"dave note {n}" for n in range(450)}
    with cluster.a.http(cluster.admin) as a, cluster.b.http(cluster.admin, timeout=60) as b:
        items = [{"messages": t, "user_id": "dave"} for t in sorted(expected)]
        assert a.post("/v1/memories/batch/", json={"items": items}).status_code == 200
        page = a.get("/v1/memories/", params={"user_id": "dave", "page_size": 1000}).json()
        # Memories of each rotation batch (and of none yet), read one by one.
        sample = {r["id"]: r["memory"] for r in page["results"][::45]}

        done = threading.Event()
        rotating = threading.Event()
        problems: list[str] = []
        reads = 0
        during = 0  # reads that began and ended while the rotation ran

        def read(mine: httpx.Client, n: int) -> None:
            if n % 4 == 0:  # the whole list, now and then (it decrypts 450 rows)
                listed = mine.get("/v1/memories/", params={"user_id": "dave", "page_size": 1000})
                if listed.status_code != 200 or texts(listed.json()) != expected:
                    problems.append(f"list {listed.status_code} {listed.text[:200]}")
            memory_id, text = list(sample.items())[n % len(sample)]
            got = mine.get(f"/v1/memories/{memory_id}/")
            if got.status_code != 200 or got.json()["memory"] != text:
                problems.append(f"get {got.status_code} {got.text[:200]}")
            found = mine.post("/v1/memories/search/", json={"query": text, "user_id": "dave"})
            if found.status_code != 200 or text not in texts(found.json()):
                problems.append(f"search {found.status_code} {found.text[:200]}")
            if not texts(found.json()) <= expected:
                problems.append(f"search {found.text[:200]}")

        reading = threading.Event()

        def reader() -> None:
            nonlocal reads, during
            with cluster.a.http(cluster.admin) as mine:
                while not done.is_set() or reads < 3:
                    reading.set()
                    began = rotating.is_set() and not done.is_set()
                    read(mine, reads)
                    reads += 1
                    during += began and not done.is_set()

        thread = threading.Thread(target=reader)
        rotating.set()
        thread.start()
        try:
            assert reading.wait(30), "the reader never started"
            rotated = b.post("/v1/users/dave/rotate-key/")
        finally:
            done.set()
            thread.join(timeout=60)
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["memories_rekeyed"] == 450
        assert problems == [], problems[:5]
        assert reads >= 3
        # The reader was reading when the rotation began; how many reads fit inside it depends
        # on the machine's load, so one is what can be asked.
        assert during >= 1, f"{during} reads overlapped the rotation"
        # After the rotation both nodes read and write under the new key.
        for node in (a, b):
            listed = node.get("/v1/memories/", params={"user_id": "dave", "page_size": 1000})
            assert texts(listed.json()) == expected
        new = add(a, "dave", "dave after rotation")
        assert b.get(f"/v1/memories/{new}/").json()["memory"] == "dave after rotation"


def test_rate_limits_are_one_budget_over_both_nodes(make_cluster: Callable[..., Cluster]) -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    cluster = make_cluster(
        MEMVAULT_RATE_LIMIT="6/minute",
        MEMVAULT_NAMESPACE_RATE_LIMIT="1000/minute",
        MEMVAULT_REDIS_URL=REDIS_URL,
    )
    codes = []
    for node in (cluster.a, cluster.b) * 4:
        with node.http(cluster.admin) as http:
            codes.append(http.get("/v1/memories/", params={"user_id": "erin"}).status_code)
    assert codes == [200] * 6 + [429, 429]


def test_sigkill_mid_stream_loses_no_acknowledged_add(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster()
    lock = threading.Lock()
    acked: dict[str, dict[str, str]] = {"frank": {}, "grace": {}}  # user -> id -> text
    sent: dict[str, set[str]] = {"frank": set(), "grace": set()}
    stop_b = threading.Event()
    killed = threading.Event()

    def sender(node: Node, user: str, worker: int, until: threading.Event) -> None:
        with node.http(cluster.admin, timeout=10) as http:
            n = 0
            while not until.is_set():
                text = f"{user} fact {worker} {n} {tag()}"
                n += 1
                with lock:
                    sent[user].add(text)
                try:
                    response = http.post("/v1/memories/", json={"messages": text, "user_id": user})
                except httpx.TransportError:
                    return  # the node is gone: this add was never acknowledged
                if response.status_code != 200:
                    if killed.is_set():
                        return
                    raise AssertionError(response.text)
                (result,) = response.json()["results"]
                assert result["memory"] == text and result["event"] == "ADD"
                with lock:
                    acked[user][result["id"]] = text

    a_threads = [
        threading.Thread(target=sender, args=(cluster.a, "frank", w, threading.Event()))
        for w in range(4)
    ]
    b_threads = [
        threading.Thread(target=sender, args=(cluster.b, "grace", w, stop_b)) for w in range(2)
    ]
    for thread in a_threads + b_threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acked["frank"]) < 60:
        assert time.monotonic() < deadline, "node A acknowledged too few adds"
        time.sleep(0.005)
    killed.set()
    os.kill(cluster.a.process.pid, signal.SIGKILL)
    cluster.a.process.wait(timeout=10)
    for thread in a_threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    time.sleep(0.2)  # B keeps taking adds after A died
    stop_b.set()
    for thread in b_threads:
        thread.join(timeout=30)

    fresh = cluster.replace_a()
    with cluster.b.http(cluster.admin) as b, fresh.http(cluster.admin) as a2:
        assert b.get("/readyz").status_code == 200
        for memory_id, text in acked["frank"].items():  # and through the replacement node
            got = a2.get(f"/v1/memories/{memory_id}/")
            assert got.status_code == 200 and got.json()["memory"] == text
        for user in ("frank", "grace"):
            for memory_id, text in acked[user].items():
                got = b.get(f"/v1/memories/{memory_id}/")
                assert got.status_code == 200, got.text
                assert got.json()["memory"] == text
            listed = b.get("/v1/memories/", params={"user_id": user, "page_size": 1000}).json()
            ids = [r["id"] for r in listed["results"]]
            assert len(ids) == len(set(ids)) == listed["count"]
            # Every acknowledged add is there; anything else is one of the adds in flight
            # when A died (committed, but its answer was lost), fully readable.
            assert set(acked[user]) <= set(ids)
            unacknowledged = [r for r in listed["results"] if r["id"] not in acked[user]]
            assert all(r["memory"] in sent[user] for r in unacknowledged)
            in_flight = len(a_threads) if user == "frank" else 0
            assert len(unacknowledged) <= in_flight
            for r in unacknowledged:
                history = b.get(f"/v1/memories/{r['id']}/history/").json()
                assert [e["event"] for e in history] == ["ADD"]
        assert len(acked["grace"]) > 0
