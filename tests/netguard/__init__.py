"""The tests' network guard (``sitecustomize.py``) and how a test passes it to a child process."""

from __future__ import annotations

import os
from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def pythonpath(*paths: object) -> str:
    """A ``PYTHONPATH`` for a child process: the guard's folder first, then ``paths``."""
    return os.pathsep.join([str(FOLDER), *(str(p) for p in paths)])
