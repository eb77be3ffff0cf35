"""``memvault import`` of mem0 OSS local storage (made by the real mem0ai package) and of
OpenMemory's SQLite file: texts, scopes, metadata, times and history come along; a dry run stores
nothing; an interrupted import run again finishes without doubling anything; the end verifies."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from memvault import HashEmbedder, InvalidInput, Memory
from memvault.cli.importer import import_records
from memvault.cli.sources import read_mem0_local, read_openmemory
from memvault.validation import parse_datetime
from tests.e2e.test_cli_exit_codes import run
from tests.e2e.test_cli_progress import ANSI
from tests.e2e.test_cli_progress import run as run_on_terminal

MEM0_MAKER = Path(__file__).with_name("mem0_local.py")


def utc(value: str) -> str:
    moment = parse_datetime("t", value)
    assert moment is not None
    return moment.isoformat(timespec="microseconds")


# --- mem0 OSS local storage, made by the real mem0ai package ----------------------------------


@pytest.fixture
def embeddings_server(local_embedder: Any) -> Iterator[str]:
    """An OpenAI-compatible ``/embeddings`` endpoint on loopback answering with memvault's local
    model: what mem0's OpenAI embedder is pointed at."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vectors = local_embedder.embed_batch(texts)
            answer = json.dumps(
                {
                    "object": "list",
                    "model": body.get("model", "local"),
                    "data": [
                        {"object": "embedding", "index": i, "embedding": [float(x) for x in v]}
                        for i, v in enumerate(vectors)
                    ],
                    "usage": {"prompt_tokens": 0, "total_tokens": 0},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def mem0_storage(tmp_path: Path, embeddings_server: str, local_embedder: Any) -> dict[str, Any]:
    """A mem0 local install's files, and what mem0 reads back from them."""
    directory = tmp_path / "mem0"
    directory.mkdir()
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "MEM0_DIR": str(directory / "dot-mem0"),
        "MEM0_TELEMETRY": "False",
        "OPENAI_API_KEY": "unused",
        "PYTHONWARNINGS": "ignore",
    }
    made = subprocess.run(
        [sys.executable, str(MEM0_MAKER), str(directory), embeddings_server, "384"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    said = json.loads(made.stdout.strip().splitlines()[-1])
    return {"directory": directory, **said}


def test_mem0_local_storage_imports_with_its_history(
    home: Path, mem0_storage: dict[str, Any]
) -> None:
    directory = mem0_storage["directory"]
    source = [str(directory / "history.db"), "--qdrant", str(directory / "qdrant")]

    dry = run(home, "import", *source, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    counted = json.loads(dry.stdout)
    assert counted["dry_run"] and counted["format"] == "mem0-local"
    assert (counted["records"], counted["memories"], counted["history_events"]) == (3, 3, 4)
    assert counted["orphans"] == 1  # the deleted memory: mem0 kept no owner for it
    with Memory(home, embedder=HashEmbedder()) as memory:
        assert memory.count(user_id="alex") == 0  # the dry run stored nothing

    done = run(home, "import", *source, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["added"], summary["duplicates"], summary["verified"]) == (3, 0, 3)

    with Memory(home, embedder=HashEmbedder()) as memory:
        stored = memory.get_all(user_id="alex")["results"]
        stored += memory.get_all(agent_id="barista")["results"]
        by_text = {m["memory"]: m for m in stored}
        assert len(by_text) == len(mem0_storage["memories"]) == 3
        for theirs in mem0_storage["memories"]:
            mine = by_text[theirs["memory"]]
            for key in ("user_id", "agent_id", "run_id", "actor_id"):
                assert mine[key] == theirs.get(key), key
            assert mine["metadata"] == (theirs.get("metadata") or {})
            assert mine["role"] == theirs.get("role", "user")
            assert mine["created_at"] == utc(theirs["created_at"])
            assert mine["updated_at"] == utc(theirs["updated_at"])
            events = memory.history(mine["id"])
            assert [
                (e["event"], e["old_memory"], e["new_memory"], e["created_at"]) for e in events
            ] == [
                (e["event"], e["old_memory"], e["new_memory"], utc(e["updated_at"]))
                for e in mem0_storage["history"][theirs["id"]]
            ]
        sport = by_text["Likes cricket and tennis"]
        assert sport["metadata"] == {"topic": "sport", "level": 3}
        assert [e["event"] for e in memory.history(sport["id"])] == ["ADD", "UPDATE"]
        assert memory.search("tennis", user_id="alex")["results"][0]["id"] == sport["id"]

    again = run(home, "import", *source, "--json")  # a second run: all there, nothing doubled
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["already_there"], summary["added"], summary["duplicates"]) == (3, 0, 0)
    assert summary["verified"] == 3  # what the first run stored, compared with the source again
    with Memory(home, embedder=HashEmbedder()) as memory:
        assert memory.count(user_id="alex") == 2
        assert len(memory.history(sport["id"])) == 2


def test_a_doctored_qdrant_storage_runs_nothing(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.mkdir, (str(marker),))

    storage = tmp_path / "qdrant" / "collection" / "mem0" / "storage.sqlite"
    storage.parent.mkdir(parents=True)
    with sqlite3.connect(storage) as db:
        db.execute("CREATE TABLE points (id TEXT PRIMARY KEY, point BLOB)")
        db.execute("INSERT INTO points VALUES ('x', ?)", (pickle.dumps(Payload()),))
    db.close()
    history = tmp_path / "history.db"
    with sqlite3.connect(history) as db:
        db.execute(
            "CREATE TABLE history (id TEXT PRIMARY KEY, memory_id TEXT, old_memory TEXT,"
            " new_memory TEXT, event TEXT, created_at DATETIME, updated_at DATETIME,"
            " is_deleted INTEGER, actor_id TEXT, role TEXT)"
        )
    db.close()
    with pytest.raises(InvalidInput, match="something other than points"):
        read_mem0_local(history, tmp_path / "qdrant", "mem0")
    assert not marker.exists()
    result = run(home, "import", str(history), "--qdrant", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "no Qdrant collection 'mem0'" in result.stderr


# --- OpenMemory ---------------------------------------------------------------------------------

# The tables of OpenMemory's database, as its SQLAlchemy models declare them (mem0ai/mem0,
# openmemory/api/app/models.py: User, App, Memory, Category, memory_categories,
# MemoryStatusHistory), written through SQLAlchemy as OpenMemory does, so the file holds what
# SQLAlchemy stores on SQLite (UUIDs as 32 hex digits, enums by name, naive UTC datetimes).
OPENMEMORY = sa.MetaData()
STATES = ("active", "paused", "archived", "deleted")
USERS = sa.Table(
    "users",
    OPENMEMORY,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("user_id", sa.String, nullable=False, unique=True),
    sa.Column("name", sa.String),
    sa.Column("email", sa.String, unique=True),
    sa.Column("metadata", sa.JSON),
    sa.Column("created_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime),
)
APPS = sa.Table(
    "apps",
    OPENMEMORY,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("owner_id", sa.Uuid, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("description", sa.String),
    sa.Column("metadata", sa.JSON),
    sa.Column("is_active", sa.Boolean),
    sa.Column("created_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime),
    sa.UniqueConstraint("owner_id", "name"),
)
MEMORIES = sa.Table(
    "memories",
    OPENMEMORY,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("app_id", sa.Uuid, sa.ForeignKey("apps.id"), nullable=False),
    sa.Column("content", sa.String, nullable=False),
    sa.Column("vector", sa.String),
    sa.Column("metadata", sa.JSON),
    sa.Column("state", sa.Enum(*STATES, name="memorystate")),
    sa.Column("created_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime),
    sa.Column("archived_at", sa.DateTime),
    sa.Column("deleted_at", sa.DateTime),
)
CATEGORIES = sa.Table(
    "categories",
    OPENMEMORY,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String, nullable=False, unique=True),
    sa.Column("description", sa.String),
    sa.Column("created_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime),
)
MEMORY_CATEGORIES = sa.Table(
    "memory_categories",
    OPENMEMORY,
    sa.Column("memory_id", sa.Uuid, sa.ForeignKey("memories.id"), primary_key=True),
    sa.Column("category_id", sa.Uuid, sa.ForeignKey("categories.id"), primary_key=True),
)
STATUS_HISTORY = sa.Table(
    "memory_status_history",
    OPENMEMORY,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("memory_id", sa.Uuid, sa.ForeignKey("memories.id"), nullable=False),
    sa.Column("changed_by", sa.Uuid, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("old_state", sa.Enum(*STATES, name="memorystate"), nullable=False),
    sa.Column("new_state", sa.Enum(*STATES, name="memorystate"), nullable=False),
    sa.Column("changed_at", sa.DateTime),
)


def at(day: int, hour: int = 9) -> datetime:
    return datetime(2025, 3, day, hour, 0, 0, 250000)  # noqa: DTZ001  (naive UTC, as stored)


def make_openmemory(path: Path, extra: int = 0) -> dict[str, uuid.UUID]:
    """An OpenMemory database: Alice with two apps, one memory in each state, categories, state
    changes; ``extra`` more active memories."""
    engine = sa.create_engine(f"sqlite:///{path}")
    OPENMEMORY.create_all(engine)
    alice, claude, cursor = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ids = {name: uuid.uuid4() for name in ("diet", "paused", "archived", "deleted", "toggled")}
    work, food = uuid.uuid4(), uuid.uuid4()

    def memory(key: str, app: uuid.UUID, content: str, state: str, **more: Any) -> dict[str, Any]:
        return {
            "id": ids[key],
            "user_id": alice,
            "app_id": app,
            "content": content,
            "metadata": more.pop("metadata", {}),
            "state": state,
            "created_at": more.pop("created_at", at(1)),
            "updated_at": more.pop("updated_at", at(2)),
            # Every row names every column: an executemany takes its columns from the first.
            "archived_at": more.pop("archived_at", None),
            "deleted_at": more.pop("deleted_at", None),
        }

    with engine.begin() as db:
        db.execute(
            USERS.insert(), [{"id": alice, "user_id": "alice", "name": "Alice", "metadata": {}}]
        )
        db.execute(
            APPS.insert(),
            [
                {"id": claude, "owner_id": alice, "name": "claude", "is_active": True},
                {"id": cursor, "owner_id": alice, "name": "cursor", "is_active": True},
            ],
        )
        db.execute(
            MEMORIES.insert(),
            [
                memory("diet", claude, "Is vegetarian", "active", metadata={"source": "chat"}),
                memory("paused", claude, "Works on project Falcon", "paused"),
                memory("archived", cursor, "Used Python 3.9", "archived", archived_at=at(5)),
                memory("deleted", cursor, "Lives in Rome", "deleted", deleted_at=at(6)),
                memory("toggled", cursor, "Prefers tabs", "active", updated_at=at(8)),
            ]
            + [
                {
                    "id": uuid.uuid4(),
                    "user_id": alice,
                    "app_id": claude,
                    "content": f"Bulk fact {i}",
                    "metadata": {"i": i},
                    "state": "active",
                    "created_at": at(10, i % 20),
                    "updated_at": at(10, i % 20),
                    "archived_at": None,
                    "deleted_at": None,
                }
                for i in range(extra)
            ],
        )
        db.execute(
            CATEGORIES.insert(), [{"id": work, "name": "work"}, {"id": food, "name": "food"}]
        )
        db.execute(
            MEMORY_CATEGORIES.insert(),
            [
                {"memory_id": ids["diet"], "category_id": food},
                {"memory_id": ids["paused"], "category_id": work},
                {"memory_id": ids["archived"], "category_id": work},
            ],
        )

        def change(key: str, old: str, new: str, day: int) -> dict[str, Any]:
            return {
                "id": uuid.uuid4(),
                "memory_id": ids[key],
                "changed_by": alice,
                "old_state": old,
                "new_state": new,
                "changed_at": at(day),
            }

        db.execute(
            STATUS_HISTORY.insert(),
            [
                change("paused", "active", "paused", 3),
                change("archived", "active", "archived", 5),
                change("deleted", "active", "deleted", 6),
                change("toggled", "active", "paused", 7),
                change("toggled", "paused", "active", 8),
            ],
        )
    engine.dispose()
    return ids


def stamp(day: int, hour: int = 9) -> str:
    return at(day, hour).replace(tzinfo=UTC).isoformat(timespec="microseconds")


def test_an_openmemory_database_imports_with_states_and_history(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "openmemory.db"
    make_openmemory(source)
    result = run(home, "import", str(source), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["format"] == "openmemory"
    assert (summary["records"], summary["added"], summary["deleted"]) == (5, 4, 1)
    assert summary["verified"] == 5

    with Memory(home, embedder=HashEmbedder()) as memory:
        stored = {m["memory"]: m for m in memory.get_all(user_id="alice")["results"]}
        assert set(stored) == {
            "Is vegetarian",
            "Works on project Falcon",
            "Used Python 3.9",
            "Prefers tabs",
        }
        diet = stored["Is vegetarian"]
        assert (diet["user_id"], diet["agent_id"]) == ("alice", "claude")
        assert diet["metadata"] == {"source": "chat", "categories": ["food"]}
        assert (diet["created_at"], diet["updated_at"]) == (stamp(1), stamp(2))
        assert stored["Works on project Falcon"]["metadata"] == {
            "categories": ["work"],
            "state": "paused",
        }
        assert stored["Used Python 3.9"]["metadata"] == {
            "categories": ["work"],
            "state": "archived",
            "archived_at": stamp(5),
        }
        active = memory.get_all(
            user_id="alice", filters={"state": {"nin": ["paused", "archived"]}}
        )["results"]
        assert {m["memory"] for m in active} == {"Is vegetarian", "Prefers tabs"}
        assert len(memory.get_all(agent_id="cursor")["results"]) == 2

        tabs = memory.history(stored["Prefers tabs"]["id"])
        assert [(e["event"], e["created_at"]) for e in tabs] == [
            ("ADD", stamp(1)),
            ("UPDATE", stamp(7)),
            ("UPDATE", stamp(8)),
        ]
        assert tabs[1]["provenance"] == {"state": ["active", "paused"], "changed_by": "alice"}

        exported = list(memory.export_user("alice"))
        [rome] = [e for e in exported if e.get("type") == "history"]
        assert [(e["event"], e["created_at"]) for e in rome["events"]] == [
            ("ADD", stamp(1)),
            ("DELETE", stamp(6)),
        ]
        assert rome["events"][1]["old_memory"] == "Lives in Rome"


def test_an_interrupted_import_resumes_without_doubling(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "openmemory.db"
    make_openmemory(source, extra=40)
    records = read_openmemory(source)
    done: list[int] = []

    def stop_after_two_batches(records_done: int) -> None:
        done.append(records_done)
        if len(done) == 3:  # already-there, then two batches
            raise KeyboardInterrupt

    with Memory(home, embedder=HashEmbedder()) as memory:
        dry = import_records(memory, records, kind="openmemory", dry_run=True)
        assert (dry["records"], dry["memories"], dry["deleted"]) == (45, 44, 1)
        assert memory.count(user_id="alice") == 0
        with pytest.raises(KeyboardInterrupt):
            import_records(
                memory, records, kind="openmemory", batch_size=10, advance=stop_after_two_batches
            )
        # Two batches of 10, the oldest first: 19 memories and the deleted one's history.
        assert memory.count(user_id="alice") == 19
        summary = import_records(memory, records, kind="openmemory", batch_size=10)
        assert summary["already_there"] == 20 and summary["added"] + summary["deleted"] == 25
        assert memory.count(user_id="alice") == 44
        assert summary["verified"] == 20
        again = import_records(memory, records, kind="openmemory")
        assert (again["already_there"], again["added"], again["deleted"]) == (45, 0, 0)
        [bulk] = memory.get_all(user_id="alice", filters={"i": 7})["results"]
        assert len(memory.history(bulk["id"])) == 1  # one ADD: no NONE events from re-runs


def test_import_draws_a_bar_on_a_terminal_and_keeps_json_clean(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "openmemory.db"
    make_openmemory(source)
    shown = run_on_terminal(home, "import", str(source), terminal=True)
    assert shown.returncode == 0, shown.stderr
    assert "importing" in shown.stderr and "5/5" in ANSI.sub("", shown.stderr)
    assert "verified" in shown.stdout
    as_json = run_on_terminal(home, "import", str(source), "--json", terminal=True)
    assert as_json.returncode == 0 and as_json.stderr == ""
    assert json.loads(ANSI.sub("", as_json.stdout))["already_there"] == 5


def test_a_bad_openmemory_record_is_named_and_nothing_stored(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "openmemory.db"
    ids = make_openmemory(source)
    with sqlite3.connect(source) as db:
        db.execute("UPDATE memories SET metadata = '[1]' WHERE content = 'Prefers tabs'")
    db.close()
    result = run(home, "import", str(source))
    assert result.returncode == 2
    assert f"memory {ids['toggled'].hex}: metadata must be an object" in result.stderr
    assert "Prefers tabs" not in result.stderr
    with Memory(home, embedder=HashEmbedder()) as memory:
        assert memory.count(user_id="alice") == 0
