"""docs/security.md makes no claim without a test: every test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `tests/a/b.py::name`, `tests/a/b.py`, or `::name` after a file named earlier in the same cell.
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


def _references() -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for line in (ROOT / "docs" / "security.md").read_text().splitlines():
        current: str | None = None
        for match in REFERENCE.finditer(line):
            current = match.group(1) or current
            if current is not None:
                found.append((current, match.group(2)))
    return found


def test_every_test_named_in_the_security_doc_exists() -> None:
    references = _references()
    assert len(references) > 100  # the doc names its tests; a broken pattern finds none
    missing = []
    for path, name in references:
        source = ROOT / path
        if not source.is_file():
            missing.append(path)
        elif name and not re.search(rf"^(?:async )?def {name}\b", source.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert not missing, missing


def test_every_row_of_the_controls_table_names_a_test() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    table = text.split("## Controls and their tests", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| claim")
    claims = [row for row in rows[1:] if "`tests/" not in row and "memvault/" not in row]
    assert not claims, claims
