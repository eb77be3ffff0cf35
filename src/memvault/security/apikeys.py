"""API keys: high-entropy, shown once, stored only as a keyed hash, checked in constant time.

A key reads ``mvk_<id>_<secret><check>``: ``id`` (12 characters) finds the row, ``secret`` is 256
random bits (43 base64url characters), ``check`` is 6 characters of a CRC so that a mistyped key is
told apart from a wrong one before any lookup. The store keeps ``HMAC-SHA256(pepper, secret)``,
with a pepper derived from the master key: a leaked database does not yield usable keys, and
because the secret has 256 bits a fast keyed hash is as safe as a slow password hash while costing
microseconds, so junk keys cannot exhaust the CPU (SelfMemory spends 100 ms of Argon2id on each).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from memvault.clock import iso, now_iso
from memvault.errors import InvalidInput, NotFound, TooManyKeys, Unauthorized
from memvault.storage.base import ApiKeyRecords
from memvault.storage.rows import ApiKeyRow
from memvault.validation import check_id, check_namespace, check_utf8

__all__ = ["ApiKey", "ApiKeyStore", "NewKey", "Role"]

Role = Literal["admin", "write", "read"]
ROLES: tuple[Role, ...] = ("admin", "write", "read")
PREFIX = "mvk_"
_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
_ID_LENGTH = 12
_SECRET_LENGTH = 43
_CHECK_LENGTH = 6


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as the server knows it: never the secret."""

    id: str
    namespace: str
    role: Role
    name: str | None
    user_id: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None

    def can(self, needed: Role) -> bool:
        return ROLES.index(self.role) <= ROLES.index(needed)

    def public(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "role": self.role,
            "name": self.name,
            "user_id": self.user_id,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
        }


@dataclass(frozen=True, slots=True)
class NewKey:
    key: str
    info: ApiKey


def _check(body: str) -> str:
    return f"{zlib.crc32(body.encode()) & 0xFFFFFF:06x}"


def _split(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    if not token.isascii() or not token.startswith(PREFIX):  # compare_digest: ASCII only
        return None
    rest = token[len(PREFIX) :]
    key_id, sep, tail = rest.partition("_")
    if sep != "_" or len(key_id) != _ID_LENGTH or len(tail) != _SECRET_LENGTH + _CHECK_LENGTH:
        return None
    secret, check = tail[:_SECRET_LENGTH], tail[_SECRET_LENGTH:]
    if not hmac.compare_digest(check, _check(PREFIX + key_id + "_" + secret)):
        return None
    return key_id, secret


class ApiKeyStore:
    """Keys in the data store (table ``api_keys``), usable by the CLI while a server runs."""

    def __init__(self, store: ApiKeyRecords, pepper: bytes) -> None:
        self._store = store
        self._pepper = pepper

    def _digest(self, secret: str) -> str:
        return hmac.new(self._pepper, secret.encode(), hashlib.sha256).hexdigest()

    def create(
        self,
        namespace: str,
        role: str,
        *,
        name: str | None = None,
        user_id: str | None = None,
        expires_in_days: float | None = None,
        max_live: int | None = None,
    ) -> NewKey:
        """Make a key; the returned ``key`` is the only time the secret exists outside a hash.

        ``max_live``: refuse (``TooManyKeys``) when the namespace already has that many live
        (neither revoked nor expired) keys; counted in the same transaction as the insert."""
        check_namespace(namespace)
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
        if user_id is not None:
            user_id = check_id("user_id", user_id)
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            raise InvalidInput("name must be a string of at most 200 characters")
        if name is not None:
            check_utf8(name, "name")
        expires_at = None
        if expires_in_days is not None:
            if not 0 < expires_in_days <= 3650:
                raise InvalidInput("expires_in_days must be between 0 and 3650")
            expires_at = iso(datetime.now(UTC) + timedelta(days=expires_in_days))
        key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        body = f"{PREFIX}{key_id}_{secret}"
        info = ApiKey(key_id, namespace, role, name, user_id, now_iso(), expires_at, None, None)
        row = ApiKeyRow(
            key_id,
            namespace,
            role,
            name,
            user_id,
            self._digest(secret),
            info.created_at,
            expires_at,
            None,
            None,
        )
        if not self._store.insert_api_key(row, max_live=max_live, now=now_iso()):
            raise TooManyKeys(
                f"this namespace has {max_live} live API keys, the most it may hold:"
                " revoke one first"
            )
        return NewKey(body + _check(body), info)

    def authenticate(self, token: str | None) -> ApiKey:
        """The key's record, or ``Unauthorized`` (one message for every reason)."""
        parts = _split(token) if token else None
        row = None
        if parts is not None:
            row = self._row(parts[0])
        # Compare even when there is no row, so a missing id costs what a wrong secret costs.
        expected = row.secret_hash if row is not None else "0" * 64
        ok = hmac.compare_digest(expected, self._digest(parts[1] if parts else ""))
        if row is None or not ok:
            raise Unauthorized("missing or invalid API key")
        info = _info(row)
        now = now_iso()
        if info.revoked_at is not None or (info.expires_at is not None and info.expires_at <= now):
            raise Unauthorized("missing or invalid API key")
        return info

    def touch(self, key_id: str) -> None:
        self._store.touch_api_key(key_id, now_iso())

    def _row(self, key_id: str) -> ApiKeyRow | None:
        return self._store.api_key(key_id)

    def list(self, namespace: str | None = None) -> list[ApiKey]:
        return [_info(row) for row in self._store.api_keys(namespace)]

    def revoke(self, key_id: str, namespace: str | None = None) -> ApiKey:
        if not isinstance(key_id, str) or not key_id.isascii():
            raise NotFound("no such API key")  # ids are ASCII: this one names no key
        if not self._store.revoke_api_key(key_id, namespace, now_iso()):
            raise NotFound(f"no API key {key_id}")
        row = self._row(key_id)
        assert row is not None
        return _info(row)

    def count(self) -> int:
        return self._store.count_api_keys()


def _info(row: ApiKeyRow) -> ApiKey:
    role: Role = row.role  # type: ignore[assignment]  # written from ROLES only
    return ApiKey(
        row.id,
        row.namespace,
        role,
        row.name,
        row.user_id,
        row.created_at,
        row.expires_at,
        row.revoked_at,
        row.last_used_at,
    )
