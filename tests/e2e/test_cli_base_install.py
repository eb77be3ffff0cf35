"""``pip install memvault`` without extras starts the CLI: every module the commands below import
comes from a dependency declared in pyproject.toml's base list (or their own dependencies).

The commands run in a process where any other third-party import fails, as it would in a
fresh environment with only the base dependencies installed."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]

# Installed before the commands run, in the child process: refuses undeclared modules.
BLOCKER = """
import importlib.abc, sys
ALLOWED = set({allowed!r})
class Undeclared(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names or top in ALLOWED or top.startswith("_"):
            return None
        raise ModuleNotFoundError(f"{{top}} is not a base dependency", name=top)
sys.meta_path.insert(0, Undeclared())
from memvault.cli import main
main(sys.argv[1:])
"""


def _name(requirement: Requirement) -> str:
    return requirement.name.lower().replace("_", "-")


def base_modules() -> set[str]:
    """Top-level modules of the base dependencies and, transitively, of theirs."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pending = [_name(Requirement(r)) for r in declared]
    seen: set[str] = set()
    while pending:
        dist = pending.pop()
        if dist in seen:
            continue
        seen.add(dist)
        for text in importlib.metadata.requires(dist) or []:
            requirement = Requirement(text)
            # What an install without extras brings on this platform and Python.
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(_name(requirement))
    modules = {"memvault"}
    for module, dists in importlib.metadata.packages_distributions().items():
        if any(d.lower().replace("_", "-") in seen for d in dists):
            modules.add(module)
    return modules


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["add", "base install", "--user", "u", "--json"],
        ["search", "install", "--user", "u", "--json"],
        ["doctor", "--json"],
        ["db", "status", "--json"],
    ],
    ids=lambda a: " ".join(a),
)
def test_commands_start_with_only_the_base_dependencies(home: Path, args: list[str]) -> None:
    env = {**os.environ, "MEMVAULT_HOME": str(home), "MEMVAULT_EMBEDDER": "hash"}
    script = BLOCKER.format(allowed=sorted(base_modules()))
    if args[0] == "search":
        subprocess.run(
            [sys.executable, "-c", script, "add", "seed", "--user", "u"], env=env, timeout=60
        )
    result = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert "not a base dependency" not in result.stderr, result.stderr
    assert result.returncode in (0, 1), result.stderr  # doctor: 1 for a store with problems
    if "--json" in args:
        json.loads(result.stdout)
