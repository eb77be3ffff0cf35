"""Every file memvault writes outside SQLite is private from its first byte (storage.files)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from memvault.storage.files import open_private

SRC = Path(__file__).resolve().parents[2] / "src" / "memvault"


def test_a_new_private_file_is_0600_under_a_loose_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        with open_private(tmp_path / "f", "x") as handle:
            assert os.fstat(handle.fileno()).st_mode & 0o777 == 0o600
            handle.write("x")
    finally:
        os.umask(previous)
    assert (tmp_path / "f").read_text() == "x"


def test_create_refuses_an_existing_path_and_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "exists").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    for name in ("exists", "link"):
        with pytest.raises(FileExistsError):
            open_private(tmp_path / name, "x")
    assert not (tmp_path / "elsewhere").exists()


def test_append_tightens_an_existing_wide_file(tmp_path: Path) -> None:
    path = tmp_path / "sink"
    path.write_text("a\n")
    path.chmod(0o644)
    with open_private(path, "a") as handle:
        handle.write("b\n")
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == "a\nb\n"


def test_no_module_writes_a_file_with_the_builtin_open() -> None:
    """A write-mode ``open(`` (or write_text/write_bytes) outside storage/files.py would use
    the umask: every writer must go through ``open_private``."""
    writes = re.compile(
        r"""(?<![\w.])open\([^)]*["'][^"']*[wax+][^"']*["']|\.write_(text|bytes)\("""
    )
    offenders = [
        f"{path.relative_to(SRC)}:{number}"
        for path in SRC.rglob("*.py")
        if path.name != "files.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if writes.search(line)
    ]
    assert offenders == []
