"""Field encryption and keyed hashes for one scope's data key.

Every field is AES-256-GCM with a fresh 96-bit nonce and associated data that names the row, the
scope and the field, so a ciphertext copied into another row, scope or column fails to decrypt
instead of showing the wrong text. The data key is never used directly: HKDF derives one subkey for
encryption, one for full-text token hashes and one for the dedup hash, so that no two purposes share
a key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from memvault.errors import IntegrityError

__all__ = ["NONCE_BYTES", "ScopeCipher", "derive_key", "open_box", "seal_box"]

NONCE_BYTES = 12
KEY_BYTES = 32


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

    def _associated(self, row_id: str, field_name: str) -> bytes:
        return f"memvault/v1|{self.scope_id}|{row_id}|{field_name}".encode()

    def seal(self, row_id: str, field_name: str, plaintext: bytes) -> bytes:
        return seal_box(self._aead, plaintext, self._associated(row_id, field_name))

    def open(self, row_id: str, field_name: str, box: bytes) -> bytes:
        return open_box(
            self._aead, box, self._associated(row_id, field_name), f"{field_name} of {row_id}"
        )

    def token(self, word: str) -> str:
        """The keyed hash that stands for ``word`` in the full-text index (64 bits, hex)."""
        mac = self._token_mac.copy()
        mac.update(word.encode())
        return "t" + mac.hexdigest()[:16]

    def text_hash(self, normalized_text: str) -> str:
        """Keyed hash of a memory's normalized text, for dedup inside the scope."""
        return hmac.new(self._dedup_key, normalized_text.encode(), hashlib.sha256).hexdigest()
