"""Rate limits with the ``limits`` library: in memory by default, in Redis when configured.

Three budgets: requests per API key, requests per namespace (over all its keys, so a tenant
admin who mints keys does not multiply its budget), and failed authentications per client address
(so guessing keys is slow, and a client without a valid key can never spend another client's
budget: the address comes from the connection, never from a header the client chooses). One
limiter serves REST and ``/mcp`` alike. Two global budgets cap how many failed attempts and
lockouts are audited, so no number of addresses can grow the audit log faster than that.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from memvault.errors import InvalidConfig, RateLimited

__all__ = ["AUDITED", "RateLimiter"]

# Audit entries about failed authentication, per kind, over all addresses.
AUDITED = {"unauthorized": "600/minute", "lockout": "600/minute"}


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
        self._limiter = MovingWindowRateLimiter(storage_from_string(uri))
        self._audited = {outcome: parse(limit) for outcome, limit in AUDITED.items()}

    def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        reset, _ = self._limiter.get_window_stats(item, *identifiers)
        return max(1, math.ceil(reset - time.time()))

    def spend(self, key_id: str, namespace: str | None = None) -> None:
        """One request of a valid key, from its budget and its namespace's; ``RateLimited``
        once either is spent."""
        if not self._limiter.hit(self._per_key, "key", key_id):
            raise RateLimited(
                "too many requests for this key", self._retry_after(self._per_key, "key", key_id)
            )
        if namespace is not None and not self._limiter.hit(
            self._per_namespace, "namespace", namespace
        ):
            raise RateLimited(
                "too many requests for this namespace",
                self._retry_after(self._per_namespace, "namespace", namespace),
            )

    def check_address(self, address: str) -> None:
        """Refuse an address that has failed authentication too often, before checking its key."""
        if not self._limiter.test(self._failures, "auth-failure", address):
            raise RateLimited(
                "too many failed authentications from this address",
                self._retry_after(self._failures, "auth-failure", address),
            )

    def fail(self, address: str) -> bool:
        """Count a failed authentication; True when it used up the address's budget."""
        self._limiter.hit(self._failures, "auth-failure", address)
        return not self._limiter.test(self._failures, "auth-failure", address)

    def may_audit(self, outcome: str) -> bool:
        """Whether one more ``unauthorized`` or ``lockout`` entry fits the global budget."""
        return self._limiter.hit(self._audited[outcome], "audited", outcome)
