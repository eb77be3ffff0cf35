"""Every Python example in docs/integrations.md runs, against the real framework packages."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "integrations.md"
ALL_SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
# CrewAI cannot be installed here (it pins mcp<2): its example runs in .venv-crewai, by
# tests/integrations/test_crewai.py (crewai_side/check_docs.py).
SIDE = {"crewai"}
SNIPPETS = [
    s for s in ALL_SNIPPETS if not SIDE & set(re.findall(r"memvault\.integrations\.(\w+)", s))
]
# The framework package each adapter module needs (its extra may not be installed).
NEEDS = {
    "langgraph": "langgraph",
    "langchain": "langchain_core",
    "llamaindex": "llama_index.core",
    "openai_agents": "agents",
}


def test_every_adapter_has_an_example() -> None:
    used = {
        m for snippet in ALL_SNIPPETS for m in re.findall(r"memvault\.integrations\.(\w+)", snippet)
    }
    assert used == set(NEEDS) | SIDE


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_the_documented_examples_run(index: int) -> None:
    snippet = SNIPPETS[index]
    for module in re.findall(r"memvault\.integrations\.(\w+)", snippet):
        if importlib.util.find_spec(NEEDS[module].split(".")[0]) is None:
            pytest.skip(f"the extra for memvault.integrations.{module} is not installed")
    exec(compile(snippet, f"{DOC}#{index}", "exec"), {})
