"""Rate limits with the ``limits`` library: in memory by default, in Redis when configured.

Three budgets: requests per API key, requests per namespace (over all its keys, so a tenant
admin who mints keys does not multiply its budget), and failed authentications per client address
(so guessing keys is slow, and a client without a valid key can never spend another client's
budget: the address comes from the connection, never from a header the client chooses). One
limiter serves REST and ``/mcp`` alike. Two global budgets cap how many failed attempts and
lockouts are audited, so no number of addresses can grow the audit log faster than that.

When Redis does not answer (down, unreachable, slower than ``REDIS_TIMEOUT_SECONDS``) every
request is refused with ``rate_limiter_unavailable`` (503, ``Retry-After``) rather than let
through uncounted: failing open would lift the failed-authentication budget, the brake on
guessing keys, exactly when someone has knocked the counter store over. ``/readyz`` reports it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

from limits import RateLimitItem, parse
from limits.errors import StorageError as CounterStoreError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from memvault.errors import InvalidConfig, RateLimited, RateLimiterUnavailable

__all__ = ["AUDITED", "RateLimiter"]

# Audit entries about failed authentication, per kind, over all addresses.
AUDITED = {"unauthorized": "600/minute", "lockout": "600/minute"}
# A request waits no longer than this for Redis (connecting, or one command).
REDIS_TIMEOUT_SECONDS = 1.0


@contextmanager
def _counters() -> Iterator[None]:
    """The counter store's failures (wrapped by ``limits``) as ``RateLimiterUnavailable``."""
    try:
        yield
    except CounterStoreError:
        raise RateLimiterUnavailable(
            "the rate-limit counters (Redis) do not answer; retry shortly"
        ) from None


class RateLimiter:
    def __init__(
        self,
        per_key: str,
        auth_failures: str,
        redis_url: str | None = None,
        per_namespace: str | None = None,
    ) -> None:
        try:
            self._per_key: RateLimitItem = parse(per_key)
            self._failures: RateLimitItem = parse(auth_failures)
            self._per_namespace: RateLimitItem = (
                parse(per_namespace)
                if per_namespace
                else type(self._per_key)(self._per_key.amount * 2, self._per_key.multiples)
            )
        except ValueError:
            raise InvalidConfig("rate limits look like '600/minute' or '10/second'") from None
        uri = redis_url or "memory://"
        if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise InvalidConfig("MEMVAULT_REDIS_URL must be a redis:// or rediss:// URL")
        options: dict[str, float] = {}
        if redis_url:
            options = {
                "socket_timeout": REDIS_TIMEOUT_SECONDS,
                "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
            }
        self._storage = storage_from_string(uri, wrap_exceptions=True, **options)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._audited = {outcome: parse(limit) for outcome, limit in AUDITED.items()}

    def check(self) -> None:
        """For ``/readyz``: raise ``RateLimiterUnavailable`` when the counters do not answer."""
        with _counters():
            answered = self._storage.check()
        if not answered:
            raise RateLimiterUnavailable("the rate-limit counters (Redis) do not answer")

    def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        with _counters():
            reset, _ = self._limiter.get_window_stats(item, *identifiers)
        return max(1, math.ceil(reset - time.time()))

    def spend(self, key_id: str, namespace: str | None = None) -> None:
        """One request of a valid key, from its budget and its namespace's; ``RateLimited``
        once either is spent."""
        with _counters():
            spent = not self._limiter.hit(self._per_key, "key", key_id)
        if spent:
            raise RateLimited(
                "too many requests for this key", self._retry_after(self._per_key, "key", key_id)
            )
        if namespace is None:
            return
        with _counters():
            spent = not self._limiter.hit(self._per_namespace, "namespace", namespace)
        if spent:
            raise RateLimited(
                "too many requests for this namespace",
                self._retry_after(self._per_namespace, "namespace", namespace),
            )

    def check_address(self, address: str) -> None:
        """Refuse an address that has failed authentication too often, before checking its key."""
        with _counters():
            allowed = self._limiter.test(self._failures, "auth-failure", address)
        if not allowed:
            raise RateLimited(
                "too many failed authentications from this address",
                self._retry_after(self._failures, "auth-failure", address),
            )

    def fail(self, address: str) -> bool:
        """Count a failed authentication; True when it used up the address's budget."""
        with _counters():
            self._limiter.hit(self._failures, "auth-failure", address)
            return not self._limiter.test(self._failures, "auth-failure", address)

    def may_audit(self, outcome: str) -> bool:
        """Whether one more ``unauthorized`` or ``lockout`` entry fits the global budget."""
        with _counters():
            return self._limiter.hit(self._audited[outcome], "audited", outcome)
