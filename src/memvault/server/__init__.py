"""The REST server (``pip install 'memvault[server]'``): ``create_app`` and ``serve``."""

from memvault.server.app import check_settings, create_app
from memvault.server.run import serve

__all__ = ["check_settings", "create_app", "serve"]
