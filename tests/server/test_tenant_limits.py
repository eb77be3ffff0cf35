"""A tenant's budgets: one request budget per namespace over all its keys, and a cap on live keys."""

from __future__ import annotations

import pytest

from memvault.errors import RateLimited, TooManyKeys
from memvault.server.ratelimit import RateLimiter


def test_a_namespace_has_a_live_key_cap(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(max_keys_per_namespace=3)
    admin_key = server.key("admin", namespace="acme")  # live key 1
    with server.http(admin_key) as admin:
        made = [admin.post("/v1/keys/", json={"role": "read"}) for _ in range(3)]
        assert [r.status_code for r in made] == [201, 201, 409]
        assert made[2].json()["error"]["code"] == TooManyKeys.code
        revoked = made[0].json()["info"]["id"]
        assert admin.delete(f"/v1/keys/{revoked}/").status_code == 200
        assert admin.post("/v1/keys/", json={"role": "read"}).status_code == 201  # room again


def test_the_namespace_budget_is_shared_by_its_keys_only() -> None:
    limiter = RateLimiter("2/minute", "30/minute", per_namespace="3/minute")
    limiter.spend("k1", "acme")
    limiter.spend("k1", "acme")
    limiter.spend("k2", "acme")
    with pytest.raises(RateLimited):
        limiter.spend("k3", "acme")
    limiter.spend("k4", "other")  # another tenant's budget is untouched


def test_the_default_namespace_budget_is_twice_the_key_budget() -> None:
    limiter = RateLimiter("2/minute", "30/minute")
    for key in ("a", "a", "b", "b"):
        limiter.spend(key, "acme")
    with pytest.raises(RateLimited):
        limiter.spend("c", "acme")
