"""Faults of what memvault depends on, against a real server on 127.0.0.1: each answers 503 with a
stable code and ``Retry-After`` (never a 500), applies nothing of the refused request, shows in
``/readyz``, and clears by itself when the fault does (docs/reliability.md lists them)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from memvault.testing import FakeOpenAIServer, Reply, ScriptedChatServer

from .conftest import free_port, launch_server

ADD = "/v1/memories/"


def assert_unavailable(answer: httpx.Response, code: str) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == code
    assert int(answer.headers["Retry-After"]) >= 1


def assert_not_ready(http: httpx.Client, code: str) -> None:
    answer = http.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable", "code": code}
    assert int(answer.headers["Retry-After"]) >= 1


def stored(http: httpx.Client, user_id: str) -> list[str]:
    answer = http.get(ADD, params={"user_id": user_id, "page_size": 100})
    assert answer.status_code == 200, answer.text
    return sorted(item["memory"] for item in answer.json()["results"])


def until_ready(http: httpx.Client, seconds: float = 15) -> None:
    """Poll ``/readyz`` (bounded) until the fault has cleared on the server's side too."""
    deadline = time.monotonic() + seconds
    while (answer := http.get("/readyz")).status_code != 200:
        assert answer.status_code == 503, answer.text
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.1)


# --- SQLite -----------------------------------------------------------------------------------

_LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


def test_a_database_locked_by_another_process_answers_storage_busy(home: Path) -> None:
    running, stop = launch_server(home, sqlite_busy_timeout_seconds=0.3)
    try:
        with running.http(running.key("write")) as http:
            assert http.post(ADD, json={"messages": "before the lock", "user_id": "u"}).is_success
            with subprocess.Popen(
                [sys.executable, "-c", _LOCKER, str(home / "memvault.db")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            ) as locker:
                assert locker.stdin is not None and locker.stdout is not None
                try:
                    assert locker.stdout.readline() == "locked\n"
                    refused = http.post(ADD, json={"messages": "while locked", "user_id": "u"})
                    assert_unavailable(refused, "storage_busy")
                    assert stored(http, "u") == ["before the lock"]  # reads go on (WAL)
                    assert_not_ready(http, "storage_busy")
                finally:
                    locker.stdin.write("release\n")
                    locker.stdin.flush()
                    assert locker.wait(10) == 0
            assert http.get("/readyz").json() == {"status": "ready"}
            assert http.post(ADD, json={"messages": "after the lock", "user_id": "u"}).is_success
            assert stored(http, "u") == ["after the lock", "before the lock"]
    finally:
        stop()


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    if not shutil.which("mount") or not shutil.which("umount"):
        pytest.skip("mount/umount are not installed: no small file system to fill")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN): no full disk")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(directory: Path) -> Path:
    """Take every free byte of the file system holding ``directory``."""
    filler = directory / "filler"
    with open(filler, "wb") as handle:
        with contextlib.suppress(OSError):  # ENOSPC: full
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
    with contextlib.suppress(OSError):
        with open(filler, "ab") as handle:
            while True:
                handle.write(b"\0" * 512)
                handle.flush()
    return filler


def test_a_full_disk_answers_storage_busy_and_recovers_when_space_returns(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "small", "8m") as disk:
        running, stop = launch_server(disk / "home")
        try:
            with running.http(running.key("write")) as http:
                assert http.post(ADD, json={"messages": "before", "user_id": "u"}).is_success
                filler = fill(disk)
                acknowledged = ["before"]
                answers = []
                # The WAL may still hold free pages: writes go on until it must grow.
                for n in range(60):
                    text = f"memory number {n} " + "words of filler text " * 1200
                    answer = http.post(ADD, json={"messages": text, "user_id": "u"})
                    answers.append(answer.status_code)
                    if answer.status_code == 503:
                        assert_unavailable(answer, "storage_busy")
                        break
                    assert answer.is_success, answer.text
                    acknowledged.append(text)
                assert answers[-1] == 503, answers
                assert_not_ready(http, "storage_busy")
                assert stored(http, "u") == sorted(acknowledged)
                filler.unlink()
                until_ready(http)
                assert http.post(ADD, json={"messages": "after", "user_id": "u"}).is_success
                assert stored(http, "u") == sorted([*acknowledged, "after"])
        finally:
            stop()


@contextlib.contextmanager
def ext4_disk(where: Path) -> Iterator[tuple[Path, Callable[[], None], Callable[[], None]]]:
    """A small ext4 file system on a loop device, mounted ``errors=remount-ro``; yields the
    mount point, what turns it read-only (an ext4 error, as a failing disk raises one), and
    what mounts it again (checked by ``e2fsck`` first, as an operator would)."""
    tools = ("mount", "umount", "mkfs.ext4", "e2fsck", "findmnt")
    if not all(shutil.which(tool) for tool in tools):
        pytest.skip("mount, mkfs.ext4, e2fsck or findmnt is missing: no ext4 to turn read-only")
    image, mountpoint = where / "disk.img", where / "disk"
    mountpoint.mkdir()
    with open(image, "wb") as handle:
        handle.truncate(32 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)

    def mount() -> None:
        done = subprocess.run(
            ["mount", "-o", "loop,errors=remount-ro", str(image), str(mountpoint)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip("cannot mount a loop device here (needs root and /dev/loop*)")

    def turn_read_only() -> None:
        source = subprocess.run(
            ["findmnt", "-n", "-o", "SOURCE", str(mountpoint)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        trigger = Path("/sys/fs/ext4") / Path(source).name / "trigger_fs_error"
        if not trigger.exists():
            pytest.skip("this kernel has no ext4 trigger_fs_error: no read-only fault to stage")
        trigger.write_text("memvault test\n")

    def remount() -> None:
        subprocess.run(["umount", str(mountpoint)], check=True, capture_output=True)
        # 0: clean, 1: errors corrected (the error the test raised is recorded in the superblock)
        fsck = subprocess.run(["e2fsck", "-fy", str(image)], capture_output=True, check=False)
        assert fsck.returncode in (0, 1), fsck.stdout
        mount()

    mount()
    try:
        yield mountpoint, turn_read_only, remount
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=False)


def integrity_check(database: Path) -> list[tuple[str]]:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return db.execute("PRAGMA integrity_check").fetchall()
    finally:
        db.close()


def test_a_read_only_file_system_answers_storage_busy_and_loses_nothing(tmp_path: Path) -> None:
    """ext4 turns itself read-only on an error (``errors=remount-ro``, the usual way a database
    becomes read-only in production); a read-only remount by hand is refused while the store
    holds its files open for writing. The kernel keeps that file system read-only until it is
    mounted again, which needs memvault's files closed: recovery is the operator's remount
    and a restart, and then every write acknowledged before the fault is there."""
    with ext4_disk(tmp_path) as (disk, turn_read_only, remount):
        running, stop = launch_server(disk / "home")
        acknowledged = [f"before the fault {n}" for n in range(3)]
        try:
            with running.http(running.key("write")) as http:
                for text in acknowledged:
                    assert http.post(ADD, json={"messages": text, "user_id": "u"}).is_success
                [first] = [
                    m["id"]
                    for m in http.get(ADD, params={"user_id": "u"}).json()["results"]
                    if m["memory"] == acknowledged[0]
                ]
                turn_read_only()
                refused = http.post(ADD, json={"messages": "while read-only", "user_id": "u"})
                assert_unavailable(refused, "storage_busy")
                update = http.put(f"{ADD}{first}/", json={"text": "changed while read-only"})
                assert_unavailable(update, "storage_busy")
                assert_unavailable(http.delete(f"{ADD}{first}/"), "storage_busy")
                assert stored(http, "u") == sorted(acknowledged)  # reads go on
                found = http.post("/v1/memories/search/", json={"query": "fault", "user_id": "u"})
                assert found.status_code == 200 and len(found.json()["results"]) == 3
                assert_not_ready(http, "storage_busy")
                assert_not_ready(http, "storage_busy")  # and stays so while the fault lasts
        finally:
            with contextlib.suppress(Exception):  # closing cannot checkpoint a read-only disk
                stop()
        remount()
        assert integrity_check(disk / "home" / "memvault.db") == [("ok",)]
        assert integrity_check(disk / "home" / "keys.db") == [("ok",)]
        running, stop = launch_server(disk / "home")
        try:
            with running.http(running.key("write")) as http:
                assert http.get("/readyz").json() == {"status": "ready"}
                assert stored(http, "u") == sorted(acknowledged)
                assert http.post(ADD, json={"messages": "after", "user_id": "u"}).is_success
                assert stored(http, "u") == sorted([*acknowledged, "after"])
        finally:
            stop()


# --- Postgres ---------------------------------------------------------------------------------


def test_postgres_stopped_mid_traffic_answers_storage_busy_then_recovers(
    home: Path, pg_url: str
) -> None:
    from tests.pg import start_postgres, stop_postgres

    running, stop = launch_server(home, database_url=pg_url, database_pool_timeout_seconds=0.5)
    try:
        with running.http(running.key("write")) as http:
            assert http.post(ADD, json={"messages": "before", "user_id": "u"}).is_success
            stop_postgres()
            try:
                refused = http.post(ADD, json={"messages": "while stopped", "user_id": "u"})
                assert_unavailable(refused, "storage_busy")
                assert_unavailable(http.get(ADD, params={"user_id": "u"}), "storage_busy")
                assert_not_ready(http, "storage_busy")
            finally:
                start_postgres()
            until_ready(http)
            # Connections the pool held died with the server: each costs one 503, never a 500.
            for _ in range(20):
                answer = http.post(ADD, json={"messages": "after", "user_id": "u"})
                if answer.is_success:
                    break
                assert_unavailable(answer, "storage_busy")
            assert answer.is_success, answer.text
            assert stored(http, "u") == ["after", "before"]
    finally:
        stop()


# --- Redis ------------------------------------------------------------------------------------


@contextlib.contextmanager
def private_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of this test's own (the shared one on 6379 must stay up for others)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed: no Redis outage to stage")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        process.wait(10)


def test_redis_down_refuses_requests_as_rate_limiter_unavailable(home: Path) -> None:
    port = free_port()
    with private_redis(port):
        running, stop = launch_server(home, redis_url=f"redis://127.0.0.1:{port}/0")
    try:
        # private_redis has stopped: the counters are gone while the server runs.
        with running.http(running.key("write")) as http:
            assert_unavailable(http.get(ADD, params={"user_id": "u"}), "rate_limiter_unavailable")
            refused = http.post(ADD, json={"messages": "uncounted", "user_id": "u"})
            assert_unavailable(refused, "rate_limiter_unavailable")
            assert_not_ready(http, "rate_limiter_unavailable")
            with private_redis(port):
                assert http.get("/readyz").json() == {"status": "ready"}
                assert http.post(ADD, json={"messages": "counted", "user_id": "u"}).is_success
                assert stored(http, "u") == ["counted"]
    finally:
        stop()


# --- the embedding endpoint -------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["http 500", "http 429", "timeout"])
def test_embedding_endpoint_faults_answer_embedder_unavailable(home: Path, fault: str) -> None:
    with FakeOpenAIServer() as fake:
        running, stop = launch_server(
            home,
            embedder="openai",
            openai_base_url=fake.base_url,
            openai_model="fake",
            openai_timeout_seconds=0.3,
        )
        try:
            with running.http(running.key("write")) as http:
                until_ready(http)
                assert http.post(ADD, json={"messages": "before", "user_id": "u"}).is_success
                if fault == "timeout":
                    fake.delay = 1.0
                else:
                    fake.fail_with = int(fault.split()[1])
                text = f"refused {uuid.uuid4().hex}"
                refused = http.post(ADD, json={"messages": text, "user_id": "u"})
                assert_unavailable(refused, "embedder_unavailable")
                search = http.post("/v1/memories/search/", json={"query": "x", "user_id": "u"})
                assert_unavailable(search, "embedder_unavailable")
                fake.delay, fake.fail_with = 0.0, None
                assert http.post(ADD, json={"messages": "after", "user_id": "u"}).is_success
                assert stored(http, "u") == ["after", "before"]
        finally:
            stop()


# --- the LLM endpoint -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [Reply(status=500), Reply(status=503), Reply(delay=1.0)],
    ids=["500", "503", "timeout"],
)
def test_llm_endpoint_faults_store_the_messages_raw(home: Path, failure: Reply) -> None:
    """No 5xx for an LLM outage: after its retries the messages are stored as they are, the
    result saying ``llm_unavailable`` (the queue's jobs take the same path)."""
    with ScriptedChatServer(default=failure) as chat:
        running, stop = launch_server(
            home,
            async_mode=False,
            llm_base_url=chat.base_url,
            llm_model="scripted",
            llm_timeout_seconds=0.3,
            llm_max_attempts=2,
            llm_backoff_seconds=0,
        )
        try:
            with running.http(running.key("write")) as http:
                answer = http.post(
                    ADD, json={"messages": "I like green tea", "user_id": "u", "infer": True}
                )
                assert answer.status_code == 200, answer.text
                [result] = answer.json()["results"]
                assert result["inferred"] is False
                assert result["error"]["code"] == "llm_unavailable"
                assert stored(http, "u") == ["I like green tea"]
                # Recovered (another user: nothing similar stored, one call to the model).
                chat.default = json.dumps({"facts": [{"text": "Likes tea", "type": "semantic"}]})
                answer = http.post(
                    ADD, json={"messages": "I like black tea", "user_id": "v", "infer": True}
                )
                assert answer.status_code == 200, answer.text
                assert [r["inferred"] for r in answer.json()["results"]] == [True], answer.text
        finally:
            stop()


def test_the_sqlite_busy_timeout_is_a_setting() -> None:
    """The lock test above runs in a second because the wait is configurable (default 30 s)."""
    from memvault import Settings

    assert Settings.load().sqlite_busy_timeout_seconds == 30
    assert Settings.load(sqlite_busy_timeout_seconds=0.3).sqlite_busy_timeout_seconds == 0.3
