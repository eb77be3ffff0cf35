"""Dashboard sessions: a sealed cookie, its expiry and its CSRF token.

The cookie holds the API key the user signed in with, sealed with AES-256-GCM under a key
derived from a data key the master key wraps (``Memory.sealing_key``): every node of a store
opens it, and nobody without the master key reads the API key out of a stolen cookie. The key is
not trusted from the cookie: every request hands it to the same ``Gate`` the REST API uses, so a
revoked or expired key ends the session at once, on every node.

A session ends ``session_seconds`` after sign-in, or ``idle_seconds`` after its last request
(the cookie is sealed again, with the new time, as it is used). Signing out forgets the cookie in
the browser and lists its id as ended on this node until it would have expired anyway.

The CSRF token is an HMAC of the session id: each form carries it, and a state-changing request
whose token does not match is refused before anything is done.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from memvault.security.crypto import NONCE_BYTES, derive_key

__all__ = ["COOKIE", "LOGIN_COOKIE", "Session", "Sessions"]

COOKIE = "memvault_session"
LOGIN_COOKIE = "memvault_login"  # the pre-session token of the sign-in form (login CSRF)
_AD = b"memvault/v1/dashboard-session"
_MAX_COOKIE = 4096
# The cookie is sealed again (its idle clock restarted) at most this often.
RESEAL_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    key: str  # the API key ("" when the server runs without auth)
    issued: float
    seen: float


class Sessions:
    """Seal, open and end sessions; ``clock`` is injectable so tests need not wait."""

    def __init__(
        self,
        secret: bytes,
        *,
        session_seconds: float,
        idle_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._aead = AESGCM(derive_key(secret, "memvault/v1/dashboard/seal"))
        self._csrf_key = derive_key(secret, "memvault/v1/dashboard/csrf")
        self.session_seconds = session_seconds
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._ended: dict[str, float] = {}  # sid -> when it would expire
        self._lock = threading.Lock()

    def start(self, key: str) -> Session:
        now = self.clock()
        return Session(base64.urlsafe_b64encode(os.urandom(18)).decode(), key, now, now)

    def seal(self, session: Session) -> str:
        plain = json.dumps([session.sid, session.key, session.issued, session.seen]).encode()
        nonce = os.urandom(NONCE_BYTES)
        box = nonce + self._aead.encrypt(nonce, plain, _AD)
        return base64.urlsafe_b64encode(box).decode().rstrip("=")

    def open(self, cookie: str | None) -> Session | None:
        """The live session a cookie holds, or None (absent, forged, expired or ended)."""
        if not cookie or len(cookie) > _MAX_COOKIE:
            return None
        try:
            box = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            plain = self._aead.decrypt(box[:NONCE_BYTES], box[NONCE_BYTES:], _AD)
            sid, key, issued, seen = json.loads(plain)
        except (binascii.Error, ValueError, InvalidTag, TypeError):
            return None
        if not (isinstance(sid, str) and isinstance(key, str)):
            return None
        session = Session(sid, key, float(issued), float(seen))
        now = self.clock()
        if now >= self.expires(session) or now < session.issued:
            return None
        with self._lock:
            if sid in self._ended:
                return None
        return session

    def expires(self, session: Session) -> float:
        return min(session.issued + self.session_seconds, session.seen + self.idle_seconds)

    def touched(self, session: Session) -> Session | None:
        """The session with its idle clock restarted, when it is worth a new cookie."""
        now = self.clock()
        if now - session.seen < RESEAL_SECONDS:
            return None
        return Session(session.sid, session.key, session.issued, now)

    def end(self, session: Session) -> None:
        now = self.clock()
        with self._lock:
            self._ended = {sid: at for sid, at in self._ended.items() if at > now}
            self._ended[session.sid] = session.issued + self.session_seconds

    def csrf_token(self, sid: str) -> str:
        return hmac.new(self._csrf_key, sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(self.csrf_token(sid), token)
