"""``memvault jobs list|show|retry``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memvault import HashEmbedder, Memory
from memvault.cli import app, main
from memvault.clock import now_iso

runner = CliRunner()


def cli(*args: str) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_jobs_list_show_retry(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Memory(home, embedder=HashEmbedder(), async_mode=True, job_max_attempts=1) as m:
        job_id = m.add("to be inferred", user_id="alice", infer=True)["job"]["id"]
        queued = m.add("still queued", user_id="bob", infer=True)["job"]["id"]
        store = m.engine.store
        claimed = store.claim("w", "9999-01-01T00:00:00.000000+00:00", now_iso())
        assert claimed is not None and claimed.id == job_id
        store.fail(job_id, "w", "llm_unreachable", None, now_iso())
    listed = cli("jobs", "list", "--json")["results"]
    assert {j["id"]: j["status"] for j in listed} == {job_id: "dead", queued: "queued"}
    assert [j["id"] for j in cli("jobs", "list", "--status", "dead", "--json")["results"]] == [
        job_id
    ]
    assert [j["id"] for j in cli("jobs", "list", "--user", "bob", "--json")["results"]] == [queued]
    shown = cli("jobs", "show", job_id, "--json")
    assert shown["error_code"] == "llm_unreachable" and "payload" not in shown
    assert cli("jobs", "retry", job_id, "--json")["status"] == "queued"
    table = runner.invoke(app, ["jobs", "list"])
    assert table.exit_code == 0 and "queued" in table.stdout
    with pytest.raises(SystemExit) as exited:
        main(["jobs", "retry", queued])
    assert exited.value.code == 1
    assert "[job_not_retryable]" in capsys.readouterr().err
