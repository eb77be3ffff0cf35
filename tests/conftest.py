"""Hermetic tests: a private home per test, no MEMVAULT_* from the outside, no network but loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from memvault import HashEmbedder, Memory

# CI must not depend on luck: generated tests replay the same examples every run. Run with
# MEMVAULT_HYPOTHESIS_PROFILE=explore (and a larger MEMVAULT_SCHEMATHESIS_EXAMPLES) to hunt.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("MEMVAULT_HYPOTHESIS_PROFILE", "ci"))

# The loopback-only guard, from here on in this process (session fixtures included) and, through
# PYTHONPATH, in every Python process a test starts (tests/netguard/sitecustomize.py).
import tests.netguard.sitecustomize  # noqa: E402,F401  (installs the guard in this process)
from tests.netguard import pythonpath  # noqa: E402

os.environ["PYTHONPATH"] = pythonpath(*filter(None, [os.environ.get("PYTHONPATH")]))


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith("MEMVAULT_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("MEMVAULT_HOME", str(home))
    yield home


@pytest.fixture
def home(hermetic: Path) -> Path:
    return hermetic


@pytest.fixture
def memory(home: Path) -> Iterator[Memory]:
    with Memory(home, embedder=HashEmbedder()) as m:
        yield m


@pytest.fixture(scope="session")
def local_embedder() -> Any:
    """The real all-MiniLM-L6-v2 ONNX model, loaded once for the session."""
    from memvault.embedding.onnx import OnnxEmbedder

    return OnnxEmbedder()


# --- Postgres: one embedded server per session, a fresh database per test ----------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Its data directory is not under pytest's base temp: the server runs as another user,
    which needs to traverse the parents, and pytest makes ``pytest-of-<user>`` 0700 again when
    another session starts on the machine."""
    import shutil
    import tempfile

    from tests.pg import start_server, stop_server

    root = Path(tempfile.mkdtemp(prefix="memvault-test-pg-"))
    data = root / "data"
    data.mkdir()
    try:
        url = start_server(data)
        yield url
    finally:
        stop_server()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> str:
    from tests.pg import fresh_database_url

    return fresh_database_url()
