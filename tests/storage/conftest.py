"""Postgres fixtures: one embedded server per session, a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg import fresh_database_url, start_server, stop_server


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("pg") / "data"
    data.mkdir()
    url = start_server(data)
    yield url
    stop_server()


@pytest.fixture
def pg_url(pg_server: str) -> str:
    return fresh_database_url()
