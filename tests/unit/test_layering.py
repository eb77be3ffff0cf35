"""The core imports no front end and no heavy optional dependency at import time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import typer

from memvault.cli import app

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_core_imports_no_front_end() -> None:
    code = (
        "import sys, json, memvault, memvault.memory, memvault.async_memory, memvault.testing;"
        "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)))
    # click and rich are left out: httpx itself imports them when they are installed.
    for forbidden in (
        "typer",
        "fastapi",
        "starlette",
        "mcp",
        "uvicorn",
        "onnxruntime",
        "tokenizers",
        "memvault.cli",
        "memvault.server",
    ):
        assert forbidden not in loaded, forbidden


def test_serve_starts_the_model_before_importing_the_web_stack() -> None:
    """``memvault serve`` imports the CLI and ``memvault.server``, opens the store and starts
    loading the model, and only then imports FastAPI and uvicorn, so that the load overlaps those
    imports (server/warmup.py); httpx is needed by no server at all until a client is made."""
    code = (
        "import sys, json, memvault.cli, memvault.server, memvault.server.warmup;"
        "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)))
    for later in ("fastapi", "uvicorn", "memvault.server.app", "onnxruntime", "httpx"):
        assert later not in loaded, later


def test_every_cli_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    commands = [c.name or c.callback.__name__ for c in app.registered_commands if c.callback]
    for group in app.registered_groups:
        assert group.typer_instance is not None
        commands += [
            f"{group.name} {c.name or c.callback.__name__}"
            for c in group.typer_instance.registered_commands
            if c.callback
        ]
    assert "keys create" in commands and "serve" in commands
    for name in commands:
        assert f"## memvault {name}" in text, name


def test_cli_app_is_typer() -> None:
    assert isinstance(app, typer.Typer)
