"""``memvault import`` of a memvault export (a round trip leaves every memory as it was) and of
mem0's dumps (``get_all`` of mem0 OSS and of the platform), errors naming the line or record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memvault import HashEmbedder, InvalidInput, Memory
from memvault.cli.importer import import_jsonl
from tests.e2e.test_cli_exit_codes import run

# What a memory is besides its id and read statistics: all of it must survive a round trip.
KEPT = (
    "memory",
    "metadata",
    "user_id",
    "agent_id",
    "run_id",
    "actor_id",
    "role",
    "memory_type",
    "created_at",
    "updated_at",
    "expires_at",
    "importance",
)


def memories_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: line[k] for k in KEPT} for line in lines if line["type"] == "memory"]


# What a history event is besides its id and its memory's id.
EVENT_KEPT = ("event", "old_memory", "new_memory", "user_id", "agent_id", "run_id", "created_at")


def histories_of(lines: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Each memory's history, then each deleted memory's, in the export's order."""
    found = [line["history"] for line in lines if line["type"] == "memory"]
    found += [line["events"] for line in lines if line["type"] == "history"]
    return [[{k: e.get(k) for k in EVENT_KEPT} for e in events] for events in found]


def counts(summary: dict[str, Any]) -> tuple[int, int, int, int, int]:
    keys = ("records", "added", "duplicates", "deleted", "already_there")
    return tuple(summary[k] for k in keys)  # type: ignore[return-value]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def test_a_memvault_export_imports_back_unchanged(home: Path, tmp_path: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as source:
        source.add("Alice likes tea", user_id="alice", metadata={"topic": "drink", "n": 1})
        source.add(
            [{"role": "assistant", "content": "Noted: Alice is in Oslo", "name": "helper"}],
            user_id="alice",
            agent_id="planner",
            run_id="trip-1",
            memory_type="episodic",
            importance=0.75,
            expiration_date="2999-01-01T00:00:00+00:00",
        )
        changed = source.add("Alice likes coffee", user_id="alice")["results"][0]["id"]
        source.update(changed, "Alice likes strong coffee", {"revised": True})
        gone = source.add("Alice had a cold", user_id="alice")["results"][0]["id"]
        source.delete(gone)
        before = list(source.export_user("alice"))
    path = write_jsonl(tmp_path / "alice.jsonl", before)

    with Memory(tmp_path / "fresh", embedder=HashEmbedder()) as fresh:
        done = import_jsonl(fresh, path)
        assert counts(done) == (4, 3, 0, 1, 0) and done["verified"] == 4
        after = list(fresh.export_user("alice"))
        again = import_jsonl(fresh, path)  # the same file twice: every memory already there
        assert counts(again) == (4, 0, 0, 0, 4)
        assert list(fresh.export_user("alice"))[1:] == after[1:]  # nothing doubled
    assert memories_of(after) == memories_of(before)
    assert histories_of(after) == histories_of(before)  # history and its times come along
    assert [e["event"] for e in histories_of(after)[-1]] == ["ADD", "DELETE"]
    updated = next(m for m in memories_of(after) if m["memory"] == "Alice likes strong coffee")
    assert updated["updated_at"] > updated["created_at"]  # both times kept, not "now"


def test_the_cli_imports_an_export_made_by_the_cli(home: Path, tmp_path: Path) -> None:
    with Memory(home, embedder=HashEmbedder()) as memory:
        memory.add("Bea plays go", user_id="bea", metadata={"level": "5k"})
        memory.add("Bea lives in Lyon", user_id="bea", agent_id="a1")
    exported = tmp_path / "bea.jsonl"
    made = run(home, "user", "export", "bea", "--out", str(exported))
    assert made.returncode == 0, made.stderr
    before = [json.loads(line) for line in exported.read_text().splitlines()]
    other = tmp_path / "other"
    result = run(other, "import", str(exported), "--json")
    assert result.returncode == 0, result.stderr
    assert counts(json.loads(result.stdout)) == (2, 2, 0, 0, 0)
    with Memory(other, embedder=HashEmbedder()) as memory:
        assert memories_of(list(memory.export_user("bea"))) == memories_of(before)


# mem0 OSS ``Memory.get_all`` (mem0/memory/main.py, _get_all_from_vector_store): MemoryItem's
# fields, the promoted payload keys, the rest of the payload as metadata; times in US/Pacific.
MEM0_OSS_DUMP = {
    "results": [
        {
            "id": "0b7a3c0e-6f3e-4d59-9a49-3d1f5c1c2a10",
            "memory": "Likes to play cricket on weekends",
            "hash": "285d07801ae42054732314853e9eadd7",
            "metadata": {"category": "hobbies"},
            "created_at": "2024-07-26T10:29:36.630547-07:00",
            "updated_at": "2024-07-27T09:00:00.000000-07:00",
            "user_id": "alex",
            "role": "user",
        },
        {
            "id": "4cd2e7a1-51ce-4b5e-8f41-0f8e6a9d8e3c",
            "memory": "Prefers window seats",
            "hash": "9a3b6f0f0a3c4f1c5d6e7f8091a2b3c4",
            "created_at": "2024-07-26T11:00:00.000000-07:00",
            "updated_at": None,
            "user_id": "alex",
            "agent_id": "travel-agent",
            "actor_id": "alex",
            "expiration_date": "2999-12-31",
        },
    ]
}
# A platform ``MemoryClient.get_all`` / export record: categories, app_id and the rest.
MEM0_PLATFORM_RECORD = {
    "id": "f1b2c3d4-0000-4000-8000-000000000001",
    "memory": "Is allergic to nuts",
    "user_id": "alex",
    "app_id": "health-app",
    "hash": "1f2e3d4c5b6a79880716253443526170",
    "metadata": None,
    "categories": ["health"],
    "immutable": False,
    "created_at": "2024-08-01T08:00:00Z",
    "updated_at": "2024-08-01T08:00:00Z",
    "expiration_date": None,
    "owner": "someone@example.org",
    "organization": "org",
}


def test_a_mem0_oss_get_all_dump_imports(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "mem0.json"
    path.write_text(json.dumps(MEM0_OSS_DUMP, indent=2))  # a JSON document, not JSONL
    with Memory(home, embedder=HashEmbedder()) as memory:
        assert import_jsonl(memory, path)["added"] == 2
        cricket, seats = sorted(
            memory.get_all(user_id="alex")["results"], key=lambda m: m["memory"]
        )
    assert cricket["memory"] == "Likes to play cricket on weekends"
    assert cricket["metadata"] == {"category": "hobbies"} and cricket["role"] == "user"
    assert cricket["created_at"] == "2024-07-26T17:29:36.630547+00:00"
    assert cricket["updated_at"] == "2024-07-27T16:00:00.000000+00:00"
    assert seats["agent_id"] == "travel-agent" and seats["actor_id"] == "alex"
    assert seats["created_at"] == seats["updated_at"] == "2024-07-26T18:00:00.000000+00:00"
    assert seats["expires_at"] == "2999-12-31T00:00:00.000000+00:00"


@pytest.mark.parametrize("shape", ["list", "memories", "jsonl"])
def test_a_mem0_platform_dump_imports(home: Path, tmp_path: Path, shape: str) -> None:
    path = tmp_path / "platform.json"
    if shape == "jsonl":
        write_jsonl(path, [MEM0_PLATFORM_RECORD])
    else:
        document: Any = [MEM0_PLATFORM_RECORD]
        path.write_text(json.dumps(document if shape == "list" else {"memories": document}))
    with Memory(home, embedder=HashEmbedder()) as memory:
        assert import_jsonl(memory, path)["added"] == 1
        [stored] = memory.get_all(user_id="alex")["results"]
        [found] = memory.get_all(user_id="alex", filters={"app_id": "health-app"})["results"]
    assert stored["metadata"] == {
        "categories": ["health"],
        "app_id": "health-app",
        "immutable": False,
    }
    assert stored["created_at"] == "2024-08-01T08:00:00.000000+00:00" and found == stored


def test_import_errors_name_the_line_or_record(home: Path, tmp_path: Path) -> None:
    good = {"memory": "fine", "user_id": "u"}
    jsonl = write_jsonl(
        tmp_path / "bad.jsonl",
        [good, good | {"memory": "two"}, {"type": "export"}, {"memory": "no scope"}],
    )
    result = run(home, "import", str(jsonl))
    assert result.returncode == 2 and "line 4:" in result.stderr, result.stderr
    assert "missing_scope" in result.stderr and "no scope" not in result.stderr

    document = tmp_path / "bad.json"
    records = [good, good | {"memory": "later", "created_at": "2999-01-01T00:00:00Z"}]
    document.write_text(json.dumps({"results": records}))
    result = run(home, "import", str(document))
    assert result.returncode == 2 and "record 2: created_at is in the future" in result.stderr

    clash = [good | {"categories": ["a"], "metadata": {"categories": ["b"]}}]
    document.write_text(json.dumps(clash))
    with Memory(home, embedder=HashEmbedder()) as memory:
        with pytest.raises(InvalidInput, match=r"^record 1: categories is also a metadata key"):
            import_jsonl(memory, document)
        assert memory.count(user_id="u") == 0  # nothing of any bad file was stored
