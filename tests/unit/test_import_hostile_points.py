"""Hostile values in a mem0 local Qdrant file: the restricted unpickler builds only plain data,
and what it builds is refused by the same checks as any add (lone surrogates, wrong types,
deep nesting, shared references)."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from memvault import HashEmbedder, Memory
from memvault.cli.importer import import_records
from memvault.cli.sources import read_mem0_local
from memvault.errors import InvalidInput

_MODULE = "qdrant_client.http.models.models"


class _Point:
    """Pickled as Qdrant's ``PointStruct`` (its global name is rewritten in the bytes), with
    a pydantic model's state."""

    def __getstate__(self) -> dict[str, Any]:
        return {"__dict__": dict(self.__dict__), "__pydantic_private__": None}


def _pickled(payload: Any, number: int) -> bytes:
    point = _Point()
    point.__dict__.update({"id": f"p{number}", "payload": payload})
    data = pickle.dumps(point, protocol=2)
    ours = f"c{__name__}\n_Point\n".encode()
    assert ours in data
    return data.replace(ours, f"c{_MODULE}\nPointStruct\n".encode())


def _storage(tmp_path: Path, payloads: list[Any]) -> Path:
    storage = tmp_path / "qdrant" / "collection" / "mem0" / "storage.sqlite"
    storage.parent.mkdir(parents=True)
    db = sqlite3.connect(storage)
    db.execute("CREATE TABLE points (id TEXT PRIMARY KEY, point BLOB)")
    for number, payload in enumerate(payloads):
        db.execute(
            "INSERT INTO points VALUES (?, ?)",
            (f"p{number}", _pickled({"created_at": "2026-01-01T00:00:00", **payload}, number)),
        )
    db.commit()
    db.close()
    history = tmp_path / "history.db"
    db = sqlite3.connect(history)
    db.execute(
        "CREATE TABLE history (id TEXT PRIMARY KEY, memory_id TEXT, old_memory TEXT,"
        " new_memory TEXT, event TEXT, created_at DATETIME, updated_at DATETIME)"
    )
    db.commit()
    db.close()
    return history


def _laughs(depth: int) -> list[Any]:
    level: list[Any] = ["lol"]
    for _ in range(depth):
        level = [level, level]  # shared: a small pickle, 2**depth values when walked
    return level


def _deep(depth: int) -> list[Any]:
    level: list[Any] = []
    for _ in range(depth):
        level = [level]
    return level


@pytest.mark.parametrize(
    "payload",
    [
        {"data": "lone \ud800 surrogate", "user_id": "ann"},
        {"data": "fine", "user_id": "ann\udfff"},
        {"data": "fine", "user_id": ["ann"]},
        {"data": "fine", "user_id": "ann", "topic": "bad \ud800"},
        {"data": "fine", "user_id": "ann", "laughs": _laughs(60)},
        {"data": "fine", "user_id": "ann", "deep": _deep(200)},
        {"data": "fine", "user_id": "ann", "created_at": "\ud800"},
        {"data": "fine", "user_id": "ann", "blob": b"\x00bytes"},
        {"data": "x" * 2_000_000, "user_id": "ann"},
    ],
    ids=[
        "text",
        "user",
        "user-list",
        "meta",
        "laughs",
        "deep",
        "time",
        "bytes",
        "huge",
    ],
)
def test_a_hostile_point_is_refused_and_nothing_stored(
    tmp_path: Path, home: Path, payload: Any
) -> None:
    history = _storage(tmp_path, [payload])
    with Memory(home, embedder=HashEmbedder()) as m:
        with pytest.raises(InvalidInput) as refused:
            records, _ = read_mem0_local(history, tmp_path / "qdrant", "mem0")
            import_records(m, records, kind="mem0-local")
        assert m.count(user_id="ann") == 0
        # The record is named (not a crash); bytes need a global the unpickler refuses.
        message = refused.value.message
        assert "p0" in message or "other than points" in message


def test_a_plain_point_imports(tmp_path: Path, home: Path) -> None:
    """The control: the same file with ordinary values is read and stored."""
    history = _storage(tmp_path, [{"data": "fine", "user_id": "ann", "topic": "ok"}])
    records, _ = read_mem0_local(history, tmp_path / "qdrant", "mem0")
    with Memory(home, embedder=HashEmbedder()) as m:
        import_records(m, records, kind="mem0-local")
        [stored] = m.get_all(user_id="ann")["results"]
        assert (stored["memory"], stored["metadata"]) == ("fine", {"topic": "ok"})


@pytest.mark.parametrize(
    "blob",
    [
        # A name in the allowed module that is a callable elsewhere: it is still only _Fields,
        # and calling it with arguments fails (the row is named).
        b"cqdrant_client.http.models.models\nexec\n(Vimport os; os.mkdir('MARK')\ntR.",
        # Any other module, however it is spelled.
        b"cbuiltins\nexec\n(Vimport os; os.mkdir('MARK')\ntR.",
        b"cqdrant_client.http.models.models.os\nsystem\n(Vtrue\ntR.",
        b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93.",
    ],
    ids=["allowed-module-reduce", "builtins", "submodule", "stack-global"],
)
def test_a_gadget_runs_nothing(
    tmp_path: Path, blob: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    history = _storage(tmp_path, [])
    db = sqlite3.connect(tmp_path / "qdrant" / "collection" / "mem0" / "storage.sqlite")
    db.execute("INSERT INTO points VALUES ('g', ?)", (blob,))
    db.commit()
    db.close()
    with pytest.raises(InvalidInput):
        read_mem0_local(history, tmp_path / "qdrant", "mem0")
    assert not (tmp_path / "MARK").exists()
