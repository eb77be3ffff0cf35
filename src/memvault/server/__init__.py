"""The REST server (``pip install 'memvault[server]'``): ``create_app`` and ``serve``.

``create_app`` is imported on first use: ``memvault serve`` imports this package, and starts
loading the model before it imports FastAPI (see ``server.warmup``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memvault.server.checks import check_settings
from memvault.server.run import serve

if TYPE_CHECKING:
    from memvault.server.app import create_app

__all__ = ["check_settings", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from memvault.server.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
