"""Hostile import files: the reader and the importer either take a file or refuse it with a
memvault error that names where (``line N`` / ``record N``), and a refused file stores nothing.

Files are made of records with the keys an import knows (memvault exports, mem0 dumps, ``add()``
items) and hostile values and keys, laid out as JSONL, a JSON list, or a mem0 ``{"results": [...]}``
document; some are then cut short or given bytes that are not UTF-8.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memvault import HashEmbedder, Memory, MemvaultError
from memvault.cli.importer import import_records, json_records
from tests.fuzz.hostile import (
    dumps,
    fuzz_settings,
    hostile_json,
    hostile_key,
    hostile_scalar,
    hostile_text,
)

pytestmark = pytest.mark.fuzz

KNOWN_KEYS = [
    "memory", "messages", "text", "id", "hash", "user_id", "agent_id", "run_id", "metadata",
    "created_at", "updated_at", "type", "history", "memory_type", "categories", "expiration_date",
]  # fmt: skip
PLAIN = {"memory": "Ada likes tea", "user_id": "ada"}


@st.composite
def hostile_record(draw: st.DrawFn) -> Any:
    """Mostly objects with known keys (so the checks past the parser are reached), sometimes
    any hostile JSON value at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(hostile_json())
    record: dict[str, Any] = dict(PLAIN) if draw(st.booleans()) else {}
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.one_of(st.sampled_from(KNOWN_KEYS), hostile_key()))
        record[key] = draw(st.one_of(hostile_scalar(), hostile_json(), st.just(PLAIN["memory"])))
    if draw(st.booleans()):
        record["history"] = draw(
            st.lists(
                st.dictionaries(
                    st.sampled_from(["event", "old_memory", "new_memory", "created_at"]),
                    st.one_of(st.sampled_from(["ADD", "UPDATE", "DELETE", "NONE"]), hostile_text()),
                ),
                max_size=3,
            )
        )
    return record


@st.composite
def hostile_file(draw: st.DrawFn) -> bytes:
    records = draw(st.lists(hostile_record(), min_size=1, max_size=4))
    layout = draw(st.sampled_from(["jsonl", "list", "results"]))
    if layout == "jsonl":
        text = "\n".join(dumps(record) for record in records)
    elif layout == "list":
        text = dumps(records)
    else:
        text = dumps({"results": records})
    data = text.encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none", "none", "cut", "bad-bytes"]))
    if damage == "cut":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif damage == "bad-bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\xff\xfe\xc0" + data[at:]
    return data


@fuzz_settings()
@given(data=hostile_file())
def test_a_hostile_import_file_is_taken_or_refused_whole(tmp_path: Path, data: bytes) -> None:
    run = Path(tempfile.mkdtemp(dir=tmp_path))  # a fresh store per example
    path = run / "import.jsonl"
    path.write_bytes(data)
    with Memory(run / "home", embedder=HashEmbedder()) as memory:
        before = memory.stats()
        try:
            summary = import_records(memory, json_records(path), kind="json")
        except MemvaultError as exc:
            assert str(exc), "an empty error message"
            assert memory.stats() == before, "a refused file stored something"
        else:
            stored = sum(row["memories"] for row in memory.stats())
            assert stored <= summary["records"]
            json.dumps(summary)  # the summary the CLI prints is plain JSON
