"""`make bench` keeps working: the suite runs end to end at a tiny size and writes its report.

Only the shape is checked here (timings never assert in tests); the figures come from
`make bench` itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def test_the_suite_writes_json_markdown_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "suite.py"),
            "--sizes", "200,400",
            "--queries", "10",
            "--clients", "1,2",
            "--throughput-seconds", "0.5",
            "--skip-mem0",
            "--skip-locomo",
            "--machine", "ci",
            "--out", str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    [report] = out.glob("*-ci.json")
    result = json.loads(report.read_text())
    assert [run["memories"] for run in result["scale"]] == [200, 400]
    for run in result["scale"]:
        assert run["large_user_memories"] == run["memories"] // 10
        assert run["in_process"]["bulk_load"]["memories_per_second"] > 0
        for quantiles in (
            run["in_process"]["search_ms"]["large_user"],
            run["rest"]["search_ms"]["small_users"],
            run["rest"]["mcp_search_ms"],
            run["one_user"]["search_ms"],
        ):
            assert 0 < quantiles["p50"] <= quantiles["p95"] <= quantiles["p99"]
        assert [level["clients"] for level in run["rest"]["throughput"]] == [1, 2]
        assert run["rest"]["server_memory"]["rss_mb"] > 0
        assert run["cold_start"]["seconds"] > 0
    markdown = report.with_suffix(".md").read_text()
    assert "## Targets" in markdown and "## Over the wire" in markdown
    plots = sorted((out / report.stem).glob("*.png"))
    assert {p.name for p in plots} >= {
        "load.png",
        "search_latency.png",
        "add_latency.png",
        "throughput.png",
        "footprint.png",
    }
    for plot in plots:
        assert plot.read_bytes().startswith(PNG)
        assert f"({report.stem}/{plot.name})" in markdown
