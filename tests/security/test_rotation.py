"""Master key rotation: rewrap every data key, retire the old version, keep serving throughout."""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memvault import Client, HashEmbedder, Memory, WrongMasterKey
from memvault.cli import app
from tests.server.conftest import RunningServer

runner = CliRunner()


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def key_file(home: Path) -> dict:
    return json.loads((home / "master.key").read_text())


def test_rotate_and_retire_with_the_key_file(home: Path, tmp_path: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        for user in ("a", "b", "c"):
            m.add(f"{user} remembers", user_id=user)
    shutil.copy(home / "master.key", tmp_path / "old.key")
    rotated = runner.invoke(app, ["keys", "rotate-master", "--json"])
    assert rotated.exit_code == 0, rotated.output
    report = json.loads(rotated.stdout)
    assert report["current_version"] == 2 and report["rewrapped"] >= 3
    assert set(report["versions_in_use"]) == {"2"}
    assert key_file(home)["current"] == 2 and set(key_file(home)["keys"]) == {"1", "2"}
    with Memory(home, embedder=HashEmbedder()) as m:
        assert [x["memory"] for x in m.get_all(user_id="b")["results"]] == ["b remembers"]
    retired = json.loads(
        runner.invoke(app, ["keys", "rotate-master", "--retire-old", "--json"]).stdout
    )
    assert retired["current_version"] == 3 and retired["retired"] == [1, 2]
    assert set(key_file(home)["keys"]) == {"3"}
    with Memory(home, embedder=HashEmbedder()) as m:
        assert m.search("remembers", user_id="c")["results"][0]["memory"] == "c remembers"
    # The old key file no longer opens the store.
    shutil.copy(tmp_path / "old.key", home / "master.key")
    with pytest.raises(WrongMasterKey):
        Memory(home, embedder=HashEmbedder())


def test_rotate_with_the_environment(home: Path) -> None:
    old, new = new_key(), new_key()
    with Memory(home, embedder=HashEmbedder(), master_key=old) as m:
        m.add("sealed under the old key", user_id="u")
    with Memory(home, embedder=HashEmbedder(), master_key=f"2:{new},1:{old}") as m:
        assert m.get_all(user_id="u")["results"][0]["memory"] == "sealed under the old key"
        report = m.rotate_master_key(retire_old=True)
        assert report["current_version"] == 2 and report["retired"] == [1]
    with Memory(home, embedder=HashEmbedder(), master_key=f"2:{new}") as m:
        assert m.get_all(user_id="u")["results"][0]["memory"] == "sealed under the old key"
    with pytest.raises(WrongMasterKey):
        Memory(home, embedder=HashEmbedder(), master_key=old)
    with pytest.raises(WrongMasterKey):  # right version number, wrong key
        Memory(home, embedder=HashEmbedder(), master_key=f"2:{old}")


def test_a_server_keeps_serving_during_rotation(server: RunningServer, home: Path) -> None:
    key = server.key("write")
    with Client(server.base_url, key) as c:
        for i in range(20):
            c.add(f"user {i} likes tea number {i}", user_id=f"user{i}")
    failures: list[str] = []
    done = threading.Event()
    served = [0]

    def traffic(worker: int) -> None:
        with Client(server.base_url, key) as c:
            n = 0
            while not done.is_set() and n < 2000:
                n += 1
                try:
                    user = f"user{n % 20}"
                    assert c.search("tea", user_id=user)["results"][0]["user_id"] == user
                    c.add(
                        f"new fact {worker}-{n}", user_id=f"fresh{worker}-{n % 7}"
                    )  # new data keys
                    served[0] += 1
                except Exception as exc:  # noqa: BLE001 - every failure is the finding
                    failures.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=traffic, args=(i,)) for i in range(3)]
    for w in workers:
        w.start()
    time.sleep(0.5)
    result = runner.invoke(app, ["keys", "rotate-master", "--json"])
    time.sleep(0.5)
    done.set()
    for w in workers:
        w.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert failures == [] and served[0] > 10
    # Keys the server made after the rotation use the new version; finish and retire the old one.
    final = json.loads(
        runner.invoke(app, ["keys", "rotate-master", "--retire-old", "--json"]).stdout
    )
    assert set(final["versions_in_use"]) == {str(final["current_version"])}
    with Client(server.base_url, key) as c:
        assert (
            c.search("tea", user_id="user3")["results"][0]["memory"] == "user 3 likes tea number 3"
        )
