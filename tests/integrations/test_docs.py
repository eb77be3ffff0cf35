"""Every Python example in docs/integrations.md runs, against the real framework packages."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "integrations.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
# The framework package each adapter module needs (its extra may not be installed).
NEEDS = {
    "langgraph": "langgraph",
    "langchain": "langchain_core",
    "llamaindex": "llama_index.core",
    "openai_agents": "agents",
}


def test_every_adapter_has_an_example() -> None:
    used = {
        m for snippet in SNIPPETS for m in re.findall(r"memvault\.integrations\.(\w+)", snippet)
    }
    assert used == set(NEEDS)


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_the_documented_examples_run(index: int) -> None:
    snippet = SNIPPETS[index]
    for module in re.findall(r"memvault\.integrations\.(\w+)", snippet):
        if importlib.util.find_spec(NEEDS[module].split(".")[0]) is None:
            pytest.skip(f"the extra for memvault.integrations.{module} is not installed")
    exec(compile(snippet, f"{DOC}#{index}", "exec"), {})
