"""The web dashboard at ``/ui``: server-rendered pages over the REST API's own authorization.

See docs/dashboard.md. ``mount_dashboard`` adds the routes and the static files to an app;
``create_app`` calls it unless ``MEMVAULT_DASHBOARD=false``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from memvault.config import Settings
from memvault.memory import Memory
from memvault.server.ui import admin, login, memories
from memvault.server.ui.base import HERE
from memvault.server.ui.session import Sessions

__all__ = ["STATIC_PATH", "mount_dashboard"]

STATIC_PATH = "/ui/static"


def mount_dashboard(
    app: FastAPI, memory: Memory, settings: Settings, clock: Callable[[], float] = time.time
) -> None:
    """``clock``: what session expiry is measured with (tests pass one they move)."""
    app.state.ui_sessions = Sessions(
        memory.sealing_key("dashboard-session"),
        session_seconds=settings.dashboard_session_seconds,
        idle_seconds=settings.dashboard_idle_seconds,
        clock=clock,
    )
    for module in (login, memories, admin):
        app.include_router(module.router)
    app.mount(STATIC_PATH, StaticFiles(directory=HERE / "static"), name="ui-static")
