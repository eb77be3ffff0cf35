"""Field encryption and keyed hashes for one scope's data key.

Every field is AES-256-GCM with a fresh 96-bit nonce and associated data that names the key scope,
the row's namespace and owner columns (user, agent, run), the row id and the field, as one
canonical JSON array (format 2). A ciphertext copied into another row, scope or column, or a row
whose owner columns were edited in the database file, fails to decrypt (``IntegrityError``) instead
of showing the text to someone else. Format 1 (older stores) bound only the scope id, row id and
field; such rows are still opened until ``reseal.py`` has moved them to format 2. The data key is
never used directly: HKDF derives one subkey for encryption, one for full-text token hashes and one
for the dedup hash, so that no two purposes share a key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from memvault.errors import IntegrityError

__all__ = [
    "NONCE_BYTES",
    "SEAL_VERSION",
    "Binding",
    "ScopeCipher",
    "canonical",
    "derive_key",
    "open_box",
    "seal_box",
]

NONCE_BYTES = 12
KEY_BYTES = 32
# The associated-data format new rows are sealed with (the rows' ``seal_version`` column).
SEAL_VERSION = 2


_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))  # built once: it is hot


def canonical(value: object) -> str:
    """The one JSON text of ``value``: ASCII, no spaces, so equal values give equal strings and
    different values (strings with any characters, None, numbers) different ones."""
    return _ENCODER.encode(value)


@dataclass(frozen=True, slots=True)
class Binding:
    """The row a sealed field belongs to, bound into the field's associated data."""

    namespace: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    row_id: str


def derive_key(root: bytes, purpose: str) -> bytes:
    """A 256-bit subkey of ``root`` for one named purpose (HKDF-SHA256)."""
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode()
    ).derive(root)


def seal_box(aead: AESGCM, plaintext: bytes, associated: bytes) -> bytes:
    """``nonce || ciphertext+tag``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, plaintext, associated)


def open_box(aead: AESGCM, box: bytes, associated: bytes, what: str) -> bytes:
    """Decrypt a ``seal_box`` result, or raise ``IntegrityError`` naming ``what`` (not the data)."""
    if len(box) < NONCE_BYTES + 16:
        raise IntegrityError(f"{what}: ciphertext is truncated")
    try:
        return aead.decrypt(box[:NONCE_BYTES], box[NONCE_BYTES:], associated)
    except InvalidTag:
        raise IntegrityError(f"{what}: ciphertext failed authentication") from None


@lru_cache(maxsize=1024)
def _row_prefix(scope_id: str, b: Binding) -> str:
    parts = ["memvault/v2", scope_id, b.namespace, b.user_id, b.agent_id, b.run_id, b.row_id]
    return canonical(parts)[:-1] + ","


@dataclass(slots=True)
class ScopeCipher:
    """What one scope's data key does: seal and open fields, hash tokens and texts."""

    scope_id: str
    data_key: bytes = field(repr=False)
    _aead: AESGCM = field(init=False, repr=False)
    _token_mac: hmac.HMAC = field(init=False, repr=False)
    _dedup_key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._aead = AESGCM(derive_key(self.data_key, "memvault/v1/fields"))
        self._token_mac = hmac.new(
            derive_key(self.data_key, "memvault/v1/tokens"), None, hashlib.sha256
        )
        self._dedup_key = derive_key(self.data_key, "memvault/v1/dedup")

    def _associated(self, binding: Binding, field_name: str, seal_version: int) -> bytes:
        if seal_version == 1:  # older stores: scope id, row id and field only
            return f"memvault/v1|{self.scope_id}|{binding.row_id}|{field_name}".encode()
        # canonical(["memvault/v2", key id, namespace, user, agent, run, row id, field]), with
        # the part shared by a row's fields encoded once per row.
        return (_row_prefix(self.scope_id, binding) + canonical(field_name) + "]").encode()

    def seal(self, binding: Binding, field_name: str, plaintext: bytes) -> bytes:
        return seal_box(self._aead, plaintext, self._associated(binding, field_name, SEAL_VERSION))

    def open(
        self, binding: Binding, field_name: str, box: bytes, seal_version: int = SEAL_VERSION
    ) -> bytes:
        associated = self._associated(binding, field_name, seal_version)
        return open_box(self._aead, box, associated, f"{field_name} of {binding.row_id}")

    def seal_file(self, associated: list[object], plaintext: bytes) -> bytes:
        """A box for a file derived from the scope's rows (its HNSW graph): ``associated`` (a
        format tag first, never ``memvault/v1`` or ``memvault/v2``) is bound with the key id."""
        return seal_box(self._aead, plaintext, canonical([self.scope_id, *associated]).encode())

    def open_file(self, associated: list[object], box: bytes, what: str) -> bytes:
        return open_box(self._aead, box, canonical([self.scope_id, *associated]).encode(), what)

    def token(self, word: str) -> str:
        """The keyed hash that stands for ``word`` in the full-text index (64 bits, hex)."""
        mac = self._token_mac.copy()
        mac.update(word.encode())
        return "t" + mac.hexdigest()[:16]

    def text_hash(self, normalized_text: str) -> str:
        """Keyed hash of a memory's normalized text, for dedup inside the scope."""
        return hmac.new(self._dedup_key, normalized_text.encode(), hashlib.sha256).hexdigest()
