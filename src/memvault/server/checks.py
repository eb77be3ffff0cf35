"""``check_settings``: refuse insecure server settings before anything is opened or imported.

Kept apart from ``server.app`` so that ``serve`` can refuse bad settings, open the store and start
loading the model before it imports FastAPI (see ``server.warmup``)."""

from __future__ import annotations

from memvault.config import Settings
from memvault.errors import InvalidConfig
from memvault.server.network import Proxies, is_loopback

__all__ = ["check_settings"]


def check_settings(settings: Settings) -> None:
    """Refuse combinations that would expose memories, each with how to fix it."""
    if not settings.auth and not is_loopback(settings.host):
        raise InvalidConfig(
            f"refusing to serve {settings.host} without API keys: anyone on the network could read"
            " every memory. Keep MEMVAULT_AUTH=true (the default), or bind 127.0.0.1."
        )
    Proxies(settings.forwarded_allow_ips)  # raises InvalidConfig for an entry it cannot read
    if "*" in settings.cors_origins and settings.cors_allow_credentials:
        raise InvalidConfig(
            "refusing CORS '*' with credentials: any web page could act as your users. List the"
            " allowed origins in MEMVAULT_CORS_ORIGINS instead."
        )
