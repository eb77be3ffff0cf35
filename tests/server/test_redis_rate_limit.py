"""Rate-limit counters shared through a real Redis: two server processes, one budget per key."""

from __future__ import annotations

import uuid

import pytest
import redis

from .conftest import RunningServer

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def redis_available() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")


def test_two_servers_share_one_budget(start_server, redis_available) -> None:  # type: ignore[no-untyped-def]
    limit = "4/minute"
    first: RunningServer = start_server(rate_limit=limit, redis_url=REDIS_URL)
    second: RunningServer = start_server(rate_limit=limit, redis_url=REDIS_URL)
    key = first.key("read", name=f"redis-{uuid.uuid4().hex}")
    codes = []
    for server in (first, second, first, second, first, second):
        with server.http(key) as http:
            codes.append(http.get("/v1/memories/", params={"user_id": "u"}).status_code)
    assert codes == [200, 200, 200, 200, 429, 429]
