"""The random-SIGKILL harness: a real ``memvault serve`` process under concurrent writers, killed
with SIGKILL at a random moment, restarted on the same store, and checked against what its
answers acknowledged.

Each client thread owns the memories it added (so one memory's operations are sequential) and
records every request with the time it was sent and the time its answer arrived. A request
without an answer (the kill cut it) is *in flight*: it may or may not have been applied, but never
half. Erases race with everything of their user; what they must have removed is decided by time:
an add whose answer arrived before an acknowledged erase was sent must be gone, one sent after
the erase's answer must be there, and one overlapping the erase may be either.

After each kill the store is checked before anything else opens it (``PRAGMA integrity_check`` on
a read-only connection, SQLite), the audit chain is verified, and then, through the restarted
server, every user's memories and every memory's history are compared with the model (the
listings, and the histories from the users' exports): an acknowledged add, update or delete is
there as acknowledged, an in-flight one is wholly there or wholly absent (row and history agree;
a batch all or nothing), and a search finds what is listed.
The model then takes what the check found, and the next burst starts.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sqlite3
import string
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from memvault import Memory, Settings

SRC = Path(__file__).resolve().parents[2] / "src"
USERS = ("ada", "bob", "cyd")
THREADS = 4
INFINITY = math.inf


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def words(rng: random.Random, n: int = 3) -> str:
    """Letters only: a run of digits can look like a card number and be redacted."""
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=7)) for _ in range(n))


# --- the model ------------------------------------------------------------------------------


@dataclass
class Op:
    kind: str  # "add", "update" or "delete"
    text: str | None  # the text it sets (None for a delete)
    sent: float
    received: float | None = None  # None: no answer, in flight when the server died
    status: int | None = None

    @property
    def acked(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Tracked:
    """One memory and every operation on it, in order (one thread at a time touches it)."""

    id: str
    user: str
    ops: list[Op]
    lost: bool = False  # an update or delete answered 404: an erase took it

    def live(self) -> bool:
        last = self.ops[-1]
        return not self.lost and last.acked and last.kind != "delete"

    def text(self) -> str | None:
        return self.ops[-1].text


@dataclass
class PendingAdd:
    """An add (or batch) without an answer: its ids are unknown, its texts are not."""

    user: str
    texts: list[str]
    sent: float


@dataclass
class Erase:
    user: str
    sent: float
    received: float | None = None
    status: int | None = None


@dataclass
class Model:
    memories: dict[str, Tracked] = field(default_factory=dict)
    pending: list[PendingAdd] = field(default_factory=list)
    erases: list[Erase] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    acknowledged: int = 0  # answers 2xx (or 404 for an erase: a user with nothing left)
    lock: threading.Lock = field(default_factory=threading.Lock)


# --- the server -----------------------------------------------------------------------------


@dataclass
class Target:
    """Where the server keeps its data: a home (SQLite) or a home plus a Postgres database."""

    home: Path
    env: dict[str, str]
    settings: Settings
    sqlite: bool


def sqlite_target(home: Path) -> Target:
    settings = Settings.load(home=home, embedder="hash")
    return Target(home, {}, settings, sqlite=True)


def postgres_target(home: Path, database_url: str) -> Target:
    import base64
    import secrets

    master = base64.b64encode(secrets.token_bytes(32)).decode()
    env = {"MEMVAULT_DATABASE_URL": database_url, "MEMVAULT_MASTER_KEY": master}
    settings = Settings.load(
        home=home, embedder="hash", database_url=database_url, master_key=master
    )
    return Target(home, env, settings, sqlite=False)


class Server:
    """``memvault serve`` over the target, on a fresh loopback port each start.

    Importing memvault takes a second or more of the restart; the next process is therefore
    started while the current one serves (a *spare*): it imports, then waits for a line on stdin
    before it runs ``memvault serve`` (``memvault.cli.main``, what ``python -m memvault`` runs)."""

    SPARE = (
        "import sys; import memvault.server.app, memvault.server.run, uvicorn;"
        " from memvault.cli import main; sys.stdin.readline(); main()"
    )

    def __init__(self, target: Target, log: Path) -> None:
        self.target = target
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.spare: tuple[subprocess.Popen[bytes], int] | None = None
        self.base_url = ""

    def _spawn(self) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVAULT_")}
        env.update(self.target.env)
        env.update(
            MEMVAULT_HOME=str(self.target.home),
            MEMVAULT_HOST="127.0.0.1",
            MEMVAULT_PORT=str(port),
            MEMVAULT_EMBEDDER="hash",
            MEMVAULT_GC_INTERVAL_SECONDS="0",
            MEMVAULT_RATE_LIMIT="1000000/minute",
            PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
        )
        with open(self.log, "ab") as out:  # the child has its own copy of the descriptor
            process = subprocess.Popen(
                [sys.executable, "-c", self.SPARE, "serve"],
                env=env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return process, port

    def start(self, seconds: float = 60) -> None:
        process, port = self.spare or self._spawn()
        self.spare = None
        assert process.stdin is not None
        process.stdin.write(b"serve\n")
        process.stdin.close()
        self.process, self.base_url = process, f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + seconds
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited on start:\n{self.output()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server was not ready in {seconds} s:\n{self.output()}")
            time.sleep(0.02)
        self.spare = self._spawn()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def close(self) -> None:
        self.kill()
        if self.spare is not None:
            spare, _ = self.spare
            self.spare = None
            spare.kill()
            spare.wait(timeout=30)
            if spare.stdin is not None:
                spare.stdin.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def admin_key(target: Target) -> str:
    with Memory(settings=target.settings) as memory:
        return memory.api_keys.create("default", "admin", name="crash harness").key


# --- the clients ----------------------------------------------------------------------------


class Client(threading.Thread):
    """Adds, updates, deletes and erases until told to stop or the server stops answering."""

    def __init__(
        self, model: Model, base_url: str, key: str, seed: int, owned: list[Tracked]
    ) -> None:
        super().__init__(daemon=True)
        self.model = model
        self.rng = random.Random(seed)
        self.owned = owned
        self.stop = threading.Event()
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                if not self.step():
                    return
        except httpx.TransportError:
            return  # the server died: the request is in flight, recorded as such
        finally:
            self.http.close()

    def step(self) -> bool:
        live = [m for m in self.owned if m.live()]
        roll = self.rng.random()
        if roll < 0.03:
            return self.erase(self.rng.choice(USERS))
        if live and roll < 0.25:
            return self.update(self.rng.choice(live))
        if live and roll < 0.40:
            return self.delete(self.rng.choice(live))
        if roll < 0.50:
            return self.add(self.rng.choice(USERS), batch=self.rng.randint(2, 4))
        return self.add(self.rng.choice(USERS), batch=0)

    def unexpected(self, what: str, answer: httpx.Response) -> bool:
        with self.model.lock:
            self.model.unexpected.append(f"{what}: {answer.status_code} {answer.text[:300]}")
        return False

    def add(self, user: str, batch: int) -> bool:
        texts = [f"{user} {words(self.rng)}" for _ in range(max(batch, 1))]
        pending = PendingAdd(user, texts, time.monotonic())
        with self.model.lock:
            self.model.pending.append(pending)
        if batch:
            items = [{"messages": text, "user_id": user} for text in texts]
            answer = self.http.post("/v1/memories/batch/", json={"items": items})
        else:
            answer = self.http.post("/v1/memories/", json={"messages": texts[0], "user_id": user})
        received = time.monotonic()
        if answer.status_code != 200:
            return self.unexpected("add", answer)
        results = answer.json()["results"]
        if [(r["event"], r["memory"]) for r in results] != [("ADD", t) for t in texts]:
            return self.unexpected("add results", answer)
        with self.model.lock:
            self.model.pending.remove(pending)
            self.model.acknowledged += 1
            for result, text in zip(results, texts, strict=True):
                op = Op("add", text, pending.sent, received, answer.status_code)
                tracked = Tracked(result["id"], user, [op])
                self.model.memories[tracked.id] = tracked
                self.owned.append(tracked)
        return True

    def update(self, memory: Tracked) -> bool:
        text = f"{memory.user} {words(self.rng)}"
        op = Op("update", text, time.monotonic())
        memory.ops.append(op)
        answer = self.http.put(f"/v1/memories/{memory.id}/", json={"text": text})
        return self.answered(memory, op, answer)

    def delete(self, memory: Tracked) -> bool:
        op = Op("delete", None, time.monotonic())
        memory.ops.append(op)
        answer = self.http.delete(f"/v1/memories/{memory.id}/")
        return self.answered(memory, op, answer)

    def answered(self, memory: Tracked, op: Op, answer: httpx.Response) -> bool:
        op.received, op.status = time.monotonic(), answer.status_code
        if answer.status_code == 404 and answer.json()["error"]["code"] == "not_found":
            memory.lost = True  # erased since its last operation
            return True
        if answer.status_code != 200:
            return self.unexpected(op.kind, answer)
        with self.model.lock:
            self.model.acknowledged += 1
        return True

    def erase(self, user: str) -> bool:
        erase = Erase(user, time.monotonic())
        with self.model.lock:
            self.model.erases.append(erase)
        answer = self.http.delete(f"/v1/users/{user}/")
        erase.received, erase.status = time.monotonic(), answer.status_code
        if answer.status_code not in (200, 404):
            return self.unexpected("erase", answer)
        with self.model.lock:
            self.model.acknowledged += 1
        return True


# --- the check ------------------------------------------------------------------------------


def integrity(home: Path) -> None:
    """``PRAGMA integrity_check`` of both SQLite files, read-only, before anything reopens them
    (the read-only connection still replays the WAL the killed process left)."""
    for name in ("memvault.db", "keys.db"):
        db = sqlite3.connect(f"file:{home / name}?mode=ro", uri=True)
        try:
            verdict = db.execute("PRAGMA integrity_check").fetchall()
        finally:
            db.close()
        assert verdict == [("ok",)], f"{name}: {verdict}"


def audit_verifies(target: Target) -> int:
    with Memory(settings=target.settings) as memory:
        result = memory.audit.verify()
    assert result.ok, f"audit chain broken at {result.first_bad_seq}: {result.problem}"
    return result.entries


def listing(http: httpx.Client, user: str) -> dict[str, str]:
    found: dict[str, str] = {}
    page = 1
    while True:
        answer = http.get(
            "/v1/memories/", params={"user_id": user, "page": page, "page_size": 1000}
        )
        if answer.status_code == 404:
            return found
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        found.update({item["id"]: item["memory"] for item in results})
        if len(results) < 1000:
            return found
        page += 1


def histories(http: httpx.Client, user: str) -> dict[str, list[tuple[str, str | None]]]:
    """Every memory of the user that has history, from the user's export: ``(event, text it
    leaves)`` oldest first (one request per user, not one per memory)."""
    answer = http.get(f"/v1/users/{user}/export/")
    if answer.status_code == 404:
        return {}
    assert answer.status_code == 200, answer.text
    found: dict[str, list[tuple[str, str | None]]] = {}
    for line in answer.text.splitlines():
        item = json.loads(line)
        if item["type"] == "memory":
            found[item["id"]] = [(e["event"], e["new_memory"]) for e in item["history"]]
        elif item["type"] == "history":
            found[item["memory_id"]] = [(e["event"], e["new_memory"]) for e in item["events"]]
    return found


def expected_events(ops: list[Op]) -> list[tuple[str, str | None]]:
    return [
        ({"add": "ADD", "update": "UPDATE", "delete": "DELETE"}[op.kind], op.text) for op in ops
    ]


def check_memory(
    memory: Tracked,
    row: str | None,
    events: list[tuple[str, str | None]] | None,
    erases: list[Erase],
) -> int:
    """Assert what the restarted server shows of ``memory`` is a state its acknowledged
    operations allow; return how many of its operations were applied (0: erased or never)."""
    ops = memory.ops
    acked = [i for i, op in enumerate(ops) if op.acked]
    done = acked[-1] + 1 if acked else 0  # operations known applied (one thread, in order)
    in_flight = done < len(ops) and ops[done].received is None
    add = ops[0]
    add_received = add.received if add.acked else INFINITY
    user_erases = [e for e in erases if e.user == memory.user]
    # An acknowledged erase sent after the add's answer came removed it for good.
    must_be_erased = memory.lost or any(
        e.status == 200 and e.sent > add_received for e in user_erases
    )
    # An erase that answered (or died) after the add was sent may have removed it.
    may_be_erased = must_be_erased or any(
        e.status in (200, None) and (e.received or INFINITY) > add.sent for e in user_erases
    )
    where = f"memory {memory.id} of {memory.user}, ops {[(o.kind, o.status) for o in ops]}"
    if events is None:
        assert row is None, f"{where}: a row without history"
        assert may_be_erased or done == 0, f"{where}: acknowledged, but gone with its history"
        return 0
    assert not must_be_erased, f"{where}: erased, but still has history {events}"
    applied = len(events)
    allowed = {done, done + 1} if in_flight else {done}
    assert applied in allowed, f"{where}: history {events} is not what was acknowledged"
    assert events == expected_events(ops[:applied]), f"{where}: history {events}"
    last = ops[applied - 1]
    if last.kind == "delete":
        assert row is None, f"{where}: deleted in its history, yet listed"
    else:
        assert row == last.text, f"{where}: lists {row!r}, its history ends at {last.text!r}"
    return applied


def check_and_resolve(http: httpx.Client, model: Model, now: float) -> dict[str, int]:
    """Compare the restarted server with the model, then make the model what was found."""
    listed: dict[str, str] = {}
    events: dict[str, list[tuple[str, str | None]]] = {}
    for user in USERS:
        listed.update(listing(http, user))  # first: a listing finishes a cut-off erase
        events.update(histories(http, user))
    counts = {"in_flight_applied": 0, "in_flight_absent": 0}
    for memory in list(model.memories.values()):
        row = listed.pop(memory.id, None)
        applied = check_memory(memory, row, events.get(memory.id), model.erases)
        for n, op in enumerate(memory.ops):
            if op.received is not None:
                continue
            if n < applied:
                counts["in_flight_applied"] += 1
            else:
                counts["in_flight_absent"] += 1
        if applied == 0 or memory.ops[applied - 1].kind == "delete":
            del model.memories[memory.id]  # erased or deleted: nothing more to do with it
            continue
        del memory.ops[applied:]
        for op in memory.ops:
            if op.received is None:  # applied though unanswered: known from now on
                op.received, op.status = now, 200
        memory.lost = False
    # What is left was not acknowledged: it must be an in-flight add, whole (a batch all or none).
    for pending in model.pending:
        ids = [mid for mid, text in listed.items() if text in pending.texts]
        assert len(ids) in (0, len(pending.texts)), (
            f"a batch of {len(pending.texts)} in flight is {len(ids)} present"
        )
        for memory_id in ids:
            text = listed.pop(memory_id)
            assert events.get(memory_id) == [("ADD", text)], f"in-flight add {memory_id}"
            op = Op("add", text, pending.sent, now, 200)
            model.memories[memory_id] = Tracked(memory_id, pending.user, [op])
        counts["in_flight_applied" if ids else "in_flight_absent"] += len(pending.texts)
    assert not listed, f"listed but never written: {listed}"
    # A search finds what is stored (the index and the rows agree after the restart).
    for user in USERS:
        mine = [m for m in model.memories.values() if m.user == user]
        if mine:
            probe = mine[-1]
            answer = http.post(
                "/v1/memories/search/",
                json={"query": probe.text(), "user_id": user, "top_k": 5},
            )
            assert answer.status_code == 200, answer.text
            assert probe.id in [hit["id"] for hit in answer.json()["results"]], probe.text()
    model.pending.clear()
    model.erases.clear()
    return counts


# --- the loop -------------------------------------------------------------------------------


@dataclass
class Run:
    seed: int
    kills: int = 0
    acknowledged: int = 0
    in_flight_applied: int = 0
    in_flight_absent: int = 0
    audit_entries: int = 0


def run_harness(target: Target, log: Path, kills: int, seed: int) -> Run:
    """``kills`` cycles of: start (on the same store), a burst of 0.3 to 1 s of traffic, SIGKILL,
    check. Assertion messages carry the seed (``MEMVAULT_CRASH_SEED`` replays its choices)."""
    run = Run(seed)
    rng = random.Random(seed)
    key = admin_key(target)
    model = Model()
    server = Server(target, log)
    try:
        server.start()
        for _ in range(kills):
            owned: list[list[Tracked]] = [[] for _ in range(THREADS)]
            for memory in model.memories.values():
                owned[rng.randrange(THREADS)].append(memory)
            clients = [
                Client(model, server.base_url, key, rng.getrandbits(32), owned[i])
                for i in range(THREADS)
            ]
            for client in clients:
                client.start()
            time.sleep(rng.uniform(0.3, 1.0))  # the random kill point (not a synchronisation)
            server.kill()
            for client in clients:
                client.join(timeout=30)
                assert not client.is_alive(), "a client did not notice the kill"
            assert not model.unexpected, model.unexpected
            run.kills += 1
            if target.sqlite:
                integrity(target.home)
            run.audit_entries = audit_verifies(target)
            server.start()
            with httpx.Client(
                base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as http:
                counts = check_and_resolve(http, model, time.monotonic())
            run.acknowledged = model.acknowledged
            run.in_flight_applied += counts["in_flight_applied"]
            run.in_flight_absent += counts["in_flight_absent"]
    except AssertionError as exc:
        raise AssertionError(
            f"crash harness, seed {seed} (MEMVAULT_CRASH_SEED={seed} replays it), "
            f"after {run.kills} kills: {exc}\nserver log:\n{server.output()}"
        ) from exc
    finally:
        server.close()
    return run


def seed_from_environment() -> int:
    given = os.environ.get("MEMVAULT_CRASH_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)
