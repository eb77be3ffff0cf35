"""Help, ``--version`` and shell completion of the ``memvault`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from memvault import __version__
from memvault.cli import app

runner = CliRunner()
CONSOLE_SCRIPT = Path(sys.executable).with_name("memvault")


def command_paths() -> list[list[str]]:
    """Every command and group, as the words that reach it (``[]`` is the top level)."""
    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "memvault")
def test_help_shows_flags_as_flags(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "--no-no-" not in result.output
    for line in result.output.splitlines():
        # "--json", "--yes", "--all", ... take no value: no "--json / --no-json" pairs either.
        assert " / --no-" not in line, line


def test_every_boolean_option_is_a_plain_flag() -> None:
    def walk(command: object) -> None:
        for param in getattr(command, "params", []):
            if getattr(param, "is_bool_flag", False):
                assert not param.secondary_opts, (command, param.opts, param.secondary_opts)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))


def test_version() -> None:
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"memvault {__version__}"


def test_shell_completion_is_offered_and_completes_commands() -> None:
    top = runner.invoke(app, ["--help"])
    assert "--install-completion" in top.output and "--show-completion" in top.output
    # The installed command, as a shell would run it (typer's completion registry is global
    # state that other in-process CLI runs of the suite can leave unready).
    script = subprocess.run(
        [str(CONSOLE_SCRIPT), "--show-completion", "bash"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert script.returncode == 0 and "_memvault_completion" in script.stdout, script.stderr
    # What the installed script does on <TAB>: run the command with the completion variables.
    env = {**os.environ, "_MEMVAULT_COMPLETE": "complete_bash", "COMP_CWORD": "2"}
    completed = subprocess.run(
        [str(CONSOLE_SCRIPT)],
        env={**env, "COMP_WORDS": "memvault user e"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["export", "erase"]
