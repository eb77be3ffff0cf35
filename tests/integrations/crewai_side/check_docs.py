"""The CrewAI example of docs/integrations.md runs (the other examples run in the main suite,
tests/integrations/test_docs.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "integrations.md"
SNIPPETS = [
    snippet
    for snippet in re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    if "memvault.integrations.crewai" in snippet
]


def test_the_docs_have_a_crewai_example() -> None:
    assert SNIPPETS


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_the_crewai_example_runs(index: int) -> None:
    exec(compile(SNIPPETS[index], f"{DOC}#crewai-{index}", "exec"), {})
