"""memvault's errors: one tree, each class with a stable ``code`` and an ``http_status``.

Front ends translate these at the edge (one handler each); nothing else turns exceptions into
responses. Never match on message text: match on the class or on ``code``.

    MemvaultError                      internal         500
    ├── InvalidInput                   invalid_input    422
    │   ├── EmptyText                  empty_text
    │   ├── TextTooLong                text_too_long    413
    │   ├── MissingScope               missing_scope
    │   ├── InvalidId                  invalid_id
    │   ├── InvalidMetadata            invalid_metadata
    │   ├── InvalidFilter              invalid_filter
    │   │   └── FilterTooExpensive     filter_too_expensive
    │   ├── InvalidConfig              invalid_config
    │   ├── UnsupportedOption          unsupported_option
    │   ├── DestinationRefused         destination_refused
    │   └── SecretDetected             secret_detected
    ├── Unauthorized                   unauthorized     401
    ├── Forbidden                      forbidden        403
    │   └── OriginNotAllowed           origin_not_allowed
    ├── HostNotAllowed                 host_not_allowed 421
    ├── NotFound                       not_found        404
    ├── TooManyKeys                    too_many_keys    409
    ├── JobNotRetryable                job_not_retryable 409
    ├── DeliveryNotRetryable           delivery_not_retryable 409
    ├── PayloadTooLarge                payload_too_large 413
    ├── RateLimited                    rate_limited     429
    ├── EmbeddingModelMismatch         embedding_model_mismatch 409
    ├── EmbedderError                  embedder_error   502
    │   └── EmbedderUnavailable        embedder_unavailable 503
    ├── LLMError                       llm_error        502
    │   ├── LLMUnavailable             llm_unavailable
    │   └── LLMBadOutput               llm_bad_output
    ├── RateLimiterUnavailable         rate_limiter_unavailable 503
    ├── MissingDependency              missing_dependency 500
    ├── AddressUnavailable             address_unavailable 500
    ├── CryptoError                    crypto_error     500
    │   ├── WrongMasterKey             wrong_master_key
    │   └── IntegrityError             integrity_error
    └── StorageError                   storage_error    500
        └── StorageBusy                storage_busy     503

Every 503 carries ``retry_after`` (seconds), which the server sends as ``Retry-After``: the
fault is expected to clear by itself (a lock released, a database back, disk space freed).

Messages never contain memory text or key material: they name fields, limits and ids only.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AddressUnavailable",
    "CryptoError",
    "DeliveryNotRetryable",
    "DestinationRefused",
    "EmbedderError",
    "EmbedderUnavailable",
    "EmbeddingModelMismatch",
    "EmptyText",
    "FilterTooExpensive",
    "Forbidden",
    "HostNotAllowed",
    "IntegrityError",
    "InvalidConfig",
    "InvalidFilter",
    "InvalidId",
    "InvalidInput",
    "InvalidMetadata",
    "JobNotRetryable",
    "LLMBadOutput",
    "LLMError",
    "LLMUnavailable",
    "MemvaultError",
    "MissingDependency",
    "MissingScope",
    "NotFound",
    "OriginNotAllowed",
    "PayloadTooLarge",
    "RateLimited",
    "RateLimiterUnavailable",
    "SecretDetected",
    "StorageBusy",
    "StorageError",
    "TextTooLong",
    "TooManyKeys",
    "Unauthorized",
    "UnsupportedOption",
    "WrongMasterKey",
]


class MemvaultError(Exception):
    """Base of every error memvault raises on purpose."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    # Which item of a batch (``Memory.add_many``) was refused, counted from 0; None otherwise.
    item: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def for_item(self, index: int) -> MemvaultError:
        """The same error (class and code) about item ``index`` of a batch."""
        named = type(self)(f"{item_prefix(index)}{self.message}")
        named.item = index
        return named

    def to_dict(self) -> dict[str, str]:
        """The error as the JSON body front ends return: ``{"code", "message"}``."""
        return {"code": self.code, "message": self.message}


def item_prefix(index: int) -> str:
    """How an error about one item of a batch begins (``MemvaultError.for_item``)."""
    return f"item {index}: "


class InvalidInput(MemvaultError):
    """The caller sent something memvault will not store or cannot read."""

    code = "invalid_input"
    http_status = 422


class EmptyText(InvalidInput):
    code = "empty_text"


class TextTooLong(InvalidInput):
    code = "text_too_long"
    http_status = 413


class MissingScope(InvalidInput):
    """No user_id, agent_id or run_id: every memory and every query belongs to a scope."""

    code = "missing_scope"


class InvalidId(InvalidInput):
    code = "invalid_id"


class InvalidMetadata(InvalidInput):
    code = "invalid_metadata"


class InvalidFilter(InvalidInput):
    code = "invalid_filter"


class FilterTooExpensive(InvalidFilter):
    """The filter ran past ``max_filter_seconds`` over the scope (its cost is conditions x rows)."""

    code = "filter_too_expensive"


class InvalidConfig(InvalidInput):
    code = "invalid_config"


class UnsupportedOption(InvalidInput):
    """An option of mem0's API that memvault cannot honour: the message names it and says why
    (refused rather than ignored, so a caller never believes it took effect)."""

    code = "unsupported_option"


class Unauthorized(MemvaultError):
    """No API key, or one that is malformed, unknown, revoked or expired (one message for all)."""

    code = "unauthorized"
    http_status = 401


class Forbidden(MemvaultError):
    """The key is valid but its role or user binding does not allow this."""

    code = "forbidden"
    http_status = 403


class OriginNotAllowed(Forbidden):
    """A browser request from a web origin the server was not told to serve (CORS, own host)."""

    code = "origin_not_allowed"


class HostNotAllowed(MemvaultError):
    """The ``Host`` header names a server this is not (DNS rebinding): 421 Misdirected Request."""

    code = "host_not_allowed"
    http_status = 421


class PayloadTooLarge(MemvaultError):
    code = "payload_too_large"
    http_status = 413


class TooManyKeys(MemvaultError):
    """The namespace already has ``max_keys_per_namespace`` live API keys: revoke one first."""

    code = "too_many_keys"
    http_status = 409


class JobNotRetryable(MemvaultError):
    """Only a dead (or failed) job is queued again; this one is queued, running or done."""

    code = "job_not_retryable"
    http_status = 409


class DeliveryNotRetryable(MemvaultError):
    """Only a dead webhook delivery is sent again; this one is pending, sending or delivered."""

    code = "delivery_not_retryable"
    http_status = 409


class DestinationRefused(InvalidInput):
    """A webhook URL the operator's allow-list does not permit (its host, or an address it
    resolves to: private, loopback, link-local and metadata addresses unless listed)."""

    code = "destination_refused"


class RateLimited(MemvaultError):
    """Too many requests for this key (or client address); retry after ``retry_after`` seconds."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SecretDetected(InvalidInput):
    """The text holds a secret and the namespace's policy is to refuse it."""

    code = "secret_detected"


class NotFound(MemvaultError):
    """No such memory in the caller's namespace (another tenant's id looks the same)."""

    code = "not_found"
    http_status = 404


class EmbeddingModelMismatch(MemvaultError):
    """The store was built with another embedding model or dimension: vectors would not compare."""

    code = "embedding_model_mismatch"
    http_status = 409


class EmbedderError(MemvaultError):
    """The embedding model or endpoint failed or answered something unusable."""

    code = "embedder_error"
    http_status = 502


class EmbedderUnavailable(EmbedderError):
    """The embedding endpoint timed out, was unreachable or answered 429/5xx: a retry may work.

    Nothing of the request was applied (texts are embedded before the write begins)."""

    code = "embedder_unavailable"
    http_status = 503
    retry_after = 5


class LLMError(MemvaultError):
    """The LLM endpoint failed or answered something unusable (never carries prompt text)."""

    code = "llm_error"
    http_status = 502


class LLMUnavailable(LLMError):
    """The LLM endpoint stayed unreachable, slow or failing after every attempt."""

    code = "llm_unavailable"


class LLMBadOutput(LLMError):
    """The model's answer stayed unparseable (or off-schema) after the repair retry."""

    code = "llm_bad_output"


class RateLimiterUnavailable(MemvaultError):
    """The shared rate-limit counters (Redis) do not answer. Requests are refused rather than
    let through unlimited: the failed-authentication budget is what makes guessing keys slow,
    and it must not lapse because someone knocked the counter store over."""

    code = "rate_limiter_unavailable"
    http_status = 503
    retry_after = 2


class MissingDependency(MemvaultError):
    """An optional dependency is not installed; the message says which extra to install."""

    code = "missing_dependency"


class AddressUnavailable(MemvaultError):
    """``memvault serve`` cannot listen on its host and port (in use, not permitted, no such
    address); the message names them and says how to choose others."""

    code = "address_unavailable"


class CryptoError(MemvaultError):
    code = "crypto_error"


class WrongMasterKey(CryptoError):
    """The master key does not open this store's key ring; nothing was touched."""

    code = "wrong_master_key"


class IntegrityError(CryptoError):
    """A ciphertext or wrapped key failed authentication: it was altered or moved."""

    code = "integrity_error"


class StorageError(MemvaultError):
    """The database failed; the driver's error is chained as ``__cause__``."""

    code = "storage_error"


class StorageBusy(StorageError):
    """The database is unreachable, locked or shedding load for now: retry after a moment.

    Nothing of the request was applied (its transaction rolled back)."""

    code = "storage_busy"
    http_status = 503
    retry_after = 1
