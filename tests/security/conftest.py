from tests.server.conftest import server, start_server

__all__ = ["server", "start_server"]
