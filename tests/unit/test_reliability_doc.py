"""docs/reliability.md makes no promise without a test: every test it names exists, and every
row of its durability and fault tables names one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
# `tests/a/b.py::name` or `tests/a/b.py`
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def test_every_test_named_in_the_reliability_doc_exists() -> None:
    references = REFERENCE.findall(DOC.read_text())
    assert len(references) >= 10  # a broken pattern finds none
    missing = []
    for path, name in references:
        source = ROOT / path
        if not source.is_file():
            missing.append(path)
        elif name and not re.search(rf"^def {name}\b", source.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert not missing, missing


def test_every_guarantee_and_fault_row_names_a_test_or_says_why_not() -> None:
    text = DOC.read_text()
    rows = [
        line
        for section in ("## Durability", "## Faults")
        for line in text.split(section, 1)[1].split("\n## ", 1)[0].splitlines()
        if line.startswith("| ")
        and "---" not in line
        and not line.startswith(("| guarantee", "| fault"))
    ]
    assert len(rows) >= 10
    untested = [row for row in rows if "`tests/" not in row and "not staged" not in row]
    assert not untested, untested
