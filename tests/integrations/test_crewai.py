"""The CrewAI adapter against the real CrewAI, in its own environment.

CrewAI pins ``mcp<2`` and memvault's MCP server needs ``mcp>=2.3``, so CrewAI lives in
``.venv-crewai`` (``make crewai-env``; ``make test`` builds it), with memvault installed editable
beside it. This test runs the checks in tests/integrations/crewai_side/ (the adapter through
CrewAI's own ``Memory``, and the CrewAI example of docs/integrations.md) with that environment's
Python, under the network guard, and fails with their output if any fails or is skipped.
Without ``.venv-crewai`` it skips on a developer's machine and fails in CI (``CI`` set).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.netguard import pythonpath

ROOT = Path(__file__).resolve().parents[2]
SIDE = Path(__file__).resolve().parent / "crewai_side"
PYTHON = ROOT / ".venv-crewai" / "bin" / "python"
# Never handed to the child: it must not find an LLM provider's key or a memvault setting.
DROPPED = ("OPENAI_", "ANTHROPIC_", "CREWAI_", "OTEL_", "MEMVAULT_")


def side_python() -> Path:
    if PYTHON.exists():
        return PYTHON
    reason = f"{PYTHON.relative_to(ROOT)} is missing: make crewai-env builds it (make test does)"
    if os.environ.get("CI"):
        pytest.fail(f"CI runs the CrewAI checks: {reason}")
    pytest.skip(reason)


def test_the_crewai_checks_pass_in_their_own_environment(tmp_path: Path) -> None:
    python = side_python()
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED)}
    env.update(
        PYTHONPATH=pythonpath(ROOT / "src"),  # the guard first, then this checkout's memvault
        HOME=str(tmp_path / "home"),  # CrewAI writes its own files under the home
        MEMVAULT_HOME=str(tmp_path / "memvault"),
        CREWAI_DISABLE_TELEMETRY="true",
        CREWAI_TRACING_ENABLED="false",
        PYTHONDONTWRITEBYTECODE="1",
    )
    done = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-c", "pytest.ini", "--rootdir", ".",
         "--confcutdir", ".", "-p", "no:cacheprovider", "check_crewai.py", "check_docs.py"],
        cwd=SIDE,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,  # under the suite's 300 s per test, so a hang shows its output
        check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    closing = output.strip().splitlines()[-1] if output.strip() else ""
    assert done.returncode == 0, output
    # Every check ran: no skip, no xfail, nothing deselected; and more than a handful.
    assert re.fullmatch(r"=* ?\d+ passed in [\d.]+s ?=*", closing), output
    assert int(closing.strip("= ").split()[0]) >= 20, output


def test_without_crewai_the_adapter_says_how_to_install_it() -> None:
    # memvault's own environment cannot hold CrewAI (mcp<2): importing the adapter there says so.
    assert importlib.util.find_spec("crewai") is None
    with pytest.raises(ImportError, match="environment of its own"):
        import memvault.integrations.crewai  # noqa: F401
